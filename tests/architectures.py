"""Small models of many shapes, for tests that must hold on every architecture."""

import keras
import numpy as np

layers = keras.layers


def randomize_batchnorm(model, seed=0):
    """Gives every BatchNormalization non-trivial gamma, beta and statistics.

    With beta = 0 and moving mean = 0, a zeroed channel stays zero after
    BatchNormalization and the masked-vs-slimmed trap goes unnoticed.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize_batchnorm(layer, seed)
        if isinstance(layer, layers.BatchNormalization):
            values = []
            for variable in layer.weights:
                name = variable.path.split("/")[-1]
                shape = variable.shape
                if name == "moving_variance":
                    values.append(rng.uniform(0.5, 2.0, shape))
                elif name == "gamma":
                    values.append(rng.uniform(0.5, 1.5, shape))
                else:
                    values.append(rng.normal(0.0, 0.5, shape))
            layer.set_weights([v.astype("float32") for v in values])
    return model


def plain_cnn():
    inputs = keras.Input((12, 12, 1))
    x = layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(12, activation="relu", name="fc1")(x)
    outputs = layers.Dense(4, name="logits")(x)
    return keras.Model(inputs, outputs, name="plain_cnn")


def vgg_bn():
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for index, filters in enumerate((8, 8, 16)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.ReLU(name=f"relu{index}")(x)
        if index != 1:
            x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(10, activation="relu", name="fc")(x)
    outputs = layers.Dense(5, activation="softmax", name="predictions")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="vgg_bn"))


def _basic_block(x, filters, stride, name):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def resnet20(input_shape=(16, 16, 3), blocks=3, widths=(16, 32, 64)):
    """CIFAR ResNet (3 stages x `blocks` basic blocks; 20 layers for 3)."""
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(widths[0], 3, padding="same", name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate(widths):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, stride, f"s{stage}b{block}")
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, name="logits")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="resnet20"))


def densenet_block():
    inputs = keras.Input((10, 10, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    for index in range(3):
        y = layers.BatchNormalization(name=f"d{index}_bn")(x)
        y = layers.ReLU(name=f"d{index}_relu")(y)
        y = layers.Conv2D(4, 3, padding="same", name=f"d{index}_conv")(y)
        x = layers.Concatenate(name=f"d{index}_concat")([x, y])
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(6, 1, name="transition")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.GlobalMaxPooling2D()(x)
    outputs = layers.Dense(3, name="logits")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="densenet_block"))


def bn_offset_model():
    """Conv -> BN with beta != 0 and non-zero moving means -> ReLU -> Add."""
    inputs = keras.Input((8, 8, 2))
    x = layers.Conv2D(6, 3, padding="same", name="a")(inputs)
    x = layers.BatchNormalization(name="a_bn")(x)
    y = layers.Conv2D(6, 3, padding="same", name="b")(x)
    y = layers.BatchNormalization(name="b_bn")(y)
    x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.PReLU(name="prelu")(x)
    x = layers.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs, name="bn_offset")
    randomize_batchnorm(model)
    prelu = model.get_layer("prelu")
    prelu.set_weights([np.random.default_rng(1).uniform(0.1, 0.5, prelu.weights[0].shape).astype("float32")])
    return model


def mobilenet_v2():
    return randomize_batchnorm(
        keras.applications.MobileNetV2(
            weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=7
        )
    )


def resnet50():
    return randomize_batchnorm(
        keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=6)
    )


def nested_backbone():
    """A keras.applications backbone nested inside an outer functional model."""
    backbone = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, include_top=False
    )
    inputs = keras.Input((32, 32, 3))
    x = backbone(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(16, activation="relu", name="head")(x)
    outputs = layers.Dense(4, name="logits")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="nested"))


def sequential_cnn():
    return keras.Sequential(
        [
            keras.Input((10, 10, 1)),
            layers.Conv2D(4, 3, activation="relu", name="c1"),
            layers.Conv2D(6, 3, activation="relu", name="c2"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(3, name="logits"),
        ],
        name="sequential_cnn",
    )


ARCHITECTURES = {
    "plain_cnn": plain_cnn,
    "vgg_bn": vgg_bn,
    "resnet20": resnet20,
    "densenet_block": densenet_block,
    "bn_offset": bn_offset_model,
    "mobilenet_v2": mobilenet_v2,
    "resnet50": resnet50,
    "nested_backbone": nested_backbone,
    "sequential_cnn": sequential_cnn,
}
