"""Tiny models and data shared by the export tests."""

import gzip
import os

import keras
import numpy as np

import tf_asap

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def residual_model(width=16, classes=10, input_shape=(16, 16, 3)):
    """A small ResNet-style model: conv/BN/ReLU, two residual blocks, head."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for block in range(2):
        y = keras.layers.Conv2D(width, 3, padding="same", name=f"b{block}_conv1")(x)
        y = keras.layers.BatchNormalization(name=f"b{block}_bn1")(y)
        y = keras.layers.ReLU(name=f"b{block}_relu1")(y)
        y = keras.layers.Conv2D(width, 3, padding="same", name=f"b{block}_conv2")(y)
        y = keras.layers.BatchNormalization(name=f"b{block}_bn2")(y)
        x = keras.layers.Add(name=f"b{block}_add")([x, y])
        x = keras.layers.ReLU(name=f"b{block}_out")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="tiny_resnet")
    _randomize_batch_norm(model)
    return model


def _randomize_batch_norm(model):
    """Gives BatchNormalization non-trivial statistics, as after training."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape),
                    rng.uniform(0.5, 1.5, variance.shape),
                ]
            )


def slimmed_residual_model():
    """The residual model with half the channels of each group removed."""
    prunable = tf_asap.make_prunable(residual_model(width=16))
    masks = {}
    for group in tf_asap.channel_groups(prunable):
        if group.prunable:
            keep = np.zeros(group.size, bool)
            keep[::2] = True
            masks[group.name] = keep
    tf_asap.apply_masks(prunable, masks)
    return tf_asap.slim(prunable)


def two_input_model():
    image = keras.Input((8, 8, 3), name="image")
    extra = keras.Input((4,), name="extra")
    x = keras.layers.Conv2D(4, 3, activation="relu")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Concatenate()([x, extra])
    class_scores = keras.layers.Dense(3, activation="softmax", name="scores")(x)
    value = keras.layers.Dense(1, name="value")(x)
    return keras.Model([image, extra], [class_scores, value])


def random_images(count, shape=(16, 16, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (count,) + shape).astype(
        np.float32
    )


def read_idx(name):
    with gzip.open(os.path.join(FASHION_MNIST_DIR, name), "rb") as file:
        data = file.read()
    if "images" in name:
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)
    return np.frombuffer(data, np.uint8, offset=8)


def keras_accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
