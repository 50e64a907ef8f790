"""Small models for 28x28 grey images, sized for a 2-core CPU."""

import keras

from tf_asap.errors import ConfigurationError
from tf_asap.zoo.blocks import (
    INITIALIZER,
    SMALL_SHAPE,
    batch_norm,
    check_spatial_size,
    classifier,
    vgg_features,
)
from tf_asap.zoo.cifar import resnet_cifar


def small_cnn(
    input_shape=SMALL_SHAPE,
    num_classes=10,
    hidden_units=128,
    classifier_activation="softmax",
    name="small_cnn",
):
    """A small CNN for 28x28 images.

    conv32-conv32-maxpool-conv64-conv64-maxpool-Flatten-Dense(hidden)-
    classifier, every convolution and the hidden dense layer followed by
    BatchNormalization and ReLU. 468,138 trainable parameters (86% of them
    in the hidden dense layer), about 19M multiply-adds per 28x28 image.

    Args:
        input_shape: Image shape, channels last, at least 4x4.
            Defaults to `(28, 28, 1)`.
        num_classes: Number of classes. Defaults to `10`.
        hidden_units: Units of the hidden dense layer. Defaults to `128`.
        classifier_activation: Activation of the last layer. Defaults to
            `"softmax"`.
        name: Model name. Defaults to `"small_cnn"`.

    Returns:
        A `keras.Model`.
    """
    check_spatial_size(input_shape, 2, name)
    inputs = keras.Input(shape=input_shape, name="image")
    x = vgg_features(inputs, (32, 32, "M", 64, 64, "M"))
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(
        hidden_units, use_bias=False, kernel_initializer=INITIALIZER,
        name="fc1",
    )(x)
    x = batch_norm(x, "fc1_bn")
    x = keras.layers.ReLU(name="fc1_relu")(x)
    outputs = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name=name)


def vgg_small(
    input_shape=SMALL_SHAPE,
    num_classes=10,
    widths=(16, 32, 64),
    classifier_activation="softmax",
    name="vgg_small",
):
    """A small VGG for 28x28 images on a CPU.

    Two conv-BN-ReLU layers per width, a 2x2 max-pooling after each pair,
    global average pooling and the classifier.

    Args:
        input_shape: Image shape, channels last. Defaults to `(28, 28, 1)`.
        num_classes: Number of classes. Defaults to `10`.
        widths: Filters of each pair of convolutions. Defaults to
            `(16, 32, 64)`.
        classifier_activation: Activation of the last layer. Defaults to
            `"softmax"`.
        name: Model name. Defaults to `"vgg_small"`.

    Returns:
        A `keras.Model`.
    """
    if not widths:
        raise ConfigurationError("widths must have at least one entry.")
    check_spatial_size(input_shape, len(widths), name)
    config = []
    for width in widths:
        config += [width, width, "M"]
    inputs = keras.Input(shape=input_shape, name="image")
    x = vgg_features(inputs, config)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name=name)


def resnet_small(
    input_shape=SMALL_SHAPE,
    num_classes=10,
    widths=(16, 32, 64),
    classifier_activation="softmax",
    name="resnet_small",
):
    """ResNet-8 for 28x28 images on a CPU: one basic block per stage.

    Args:
        input_shape: Image shape, channels last. Defaults to `(28, 28, 1)`.
        num_classes: Number of classes. Defaults to `10`.
        widths: Filters of the three stages. Defaults to `(16, 32, 64)`.
        classifier_activation: Activation of the last layer. Defaults to
            `"softmax"`.
        name: Model name. Defaults to `"resnet_small"`.

    Returns:
        A `keras.Model`.
    """
    return resnet_cifar(
        8, input_shape, num_classes, widths, classifier_activation, name
    )
