"""The CIFAR models of the paper: ResNet-20/32/56/110, VGG-16/19, MobileNetV2."""

import keras

from tf_asap.errors import ConfigurationError
from tf_asap.zoo.blocks import (
    INITIALIZER,
    CIFAR_SHAPE,
    basic_block,
    batch_norm,
    check_spatial_size,
    classifier,
    conv,
    conv_bn_relu,
    vgg_features,
)


def resnet_cifar(
    depth,
    input_shape=CIFAR_SHAPE,
    num_classes=10,
    widths=(16, 32, 64),
    classifier_activation="softmax",
    name=None,
):
    """A CIFAR-style ResNet of `depth = 6n + 2` layers.

    Args:
        depth: Number of weighted layers, `6n + 2` (8, 20, 32, 56, 110...).
        input_shape: Image shape, channels last. Defaults to `(32, 32, 3)`.
        num_classes: Number of classes. Defaults to `10`.
        widths: Filters of the three stages. Defaults to `(16, 32, 64)`.
        classifier_activation: Activation of the last layer. Defaults to
            `"softmax"`.
        name: Model name. Defaults to `None` (`f"resnet{depth}"`).

    Returns:
        A `keras.Model`.

    Raises:
        ConfigurationError: If `depth` is not `6n + 2`, `widths` does not
            have three entries, or the input is smaller than 4x4.
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ConfigurationError(
            f"A CIFAR ResNet has 6n + 2 layers (8, 14, 20, 32, 44, 56, "
            f"110...); received depth={depth!r}."
        )
    if len(widths) != 3:
        raise ConfigurationError(
            f"widths must give the filters of the 3 stages; received "
            f"{widths!r}."
        )
    name = name or f"resnet{depth}"
    check_spatial_size(input_shape, 2, name)
    blocks_per_stage = (depth - 2) // 6
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_bn_relu(inputs, widths[0], "stem")
    for stage, filters in enumerate(widths, start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = basic_block(x, filters, strides, f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name=name)


# "M" is a 2x2 max-pooling; numbers are convolution filters.
_VGG_CONFIGS = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
         512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
         512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def vgg_cifar(
    depth,
    input_shape=CIFAR_SHAPE,
    num_classes=10,
    hidden_units=512,
    classifier_activation="softmax",
    name=None,
):
    """VGG-16 or VGG-19 with BatchNormalization, for 32x32 images.

    Args:
        depth: 16 or 19.
        input_shape: Image shape, channels last, at least 32x32.
            Defaults to `(32, 32, 3)`.
        num_classes: Number of classes. Defaults to `10`.
        hidden_units: Units of the hidden dense layer. Defaults to `512`.
        classifier_activation: Activation of the last layer. Defaults to
            `"softmax"`.
        name: Model name. Defaults to `None` (`f"vgg{depth}"`).

    Returns:
        A `keras.Model`.

    Raises:
        ConfigurationError: If `depth` is not 16 or 19, or the input is
            smaller than 32x32.
    """
    if depth not in _VGG_CONFIGS:
        raise ConfigurationError(
            f"VGG depth must be 16 or 19; received {depth!r}."
        )
    name = name or f"vgg{depth}"
    check_spatial_size(input_shape, 5, name)
    inputs = keras.Input(shape=input_shape, name="image")
    x = vgg_features(inputs, _VGG_CONFIGS[depth])
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(
        hidden_units, use_bias=False, kernel_initializer=INITIALIZER,
        name="fc1",
    )(x)
    x = batch_norm(x, "fc1_bn")
    x = keras.layers.ReLU(name="fc1_relu")(x)
    outputs = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name=name)


def _make_divisible(value, divisor=8):
    """Round channels to a multiple of 8 (MobileNetV2's reference code)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


# (expansion t, output channels c, repeats n, first stride s) of Table 2 of
# Sandler et al. (2018), with the second stage's stride 2 -> 1 for 32x32.
_MOBILENET_V2_CIFAR_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _inverted_residual(x, expansion, filters, strides, name):
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = conv_bn_relu(
            y, in_channels * expansion, f"{name}_expand", kernel_size=1,
            max_value=6.0,
        )
    y = keras.layers.DepthwiseConv2D(
        3, strides=strides, padding="same", use_bias=False,
        depthwise_initializer=INITIALIZER, name=f"{name}_depthwise",
    )(y)
    y = batch_norm(y, f"{name}_depthwise_bn")
    y = keras.layers.ReLU(max_value=6.0, name=f"{name}_depthwise_relu")(y)
    # The projection is linear: no activation after its BN.
    y = conv(y, filters, 1, 1, f"{name}_project_conv")
    y = batch_norm(y, f"{name}_project_bn")
    if strides == 1 and in_channels == filters:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def mobilenet_v2_cifar(
    input_shape=CIFAR_SHAPE,
    num_classes=10,
    alpha=1.0,
    classifier_activation="softmax",
    name="mobilenet_v2",
):
    """MobileNetV2 for 32x32 images.

    Args:
        input_shape: Image shape, channels last, at least 8x8.
            Defaults to `(32, 32, 3)`.
        num_classes: Number of classes. Defaults to `10`.
        alpha: Width multiplier; every layer's channels are multiplied by
            it and rounded to a multiple of 8 (the last 1x1 convolution
            keeps 1280 channels for `alpha <= 1`, as in the reference
            implementation). Defaults to `1.0`.
        classifier_activation: Activation of the last layer. Defaults to
            `"softmax"`.
        name: Model name. Defaults to `"mobilenet_v2"`.

    Returns:
        A `keras.Model`.

    Raises:
        ConfigurationError: If `alpha` is not positive, or the input is
            smaller than 8x8.
    """
    if not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ConfigurationError(
            f"alpha (the width multiplier) must be a positive number; "
            f"received {alpha!r}."
        )
    check_spatial_size(input_shape, 3, name)
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_bn_relu(
        inputs, _make_divisible(32 * alpha), "stem", max_value=6.0
    )
    for stage, (expansion, channels, repeats, stride) in enumerate(
        _MOBILENET_V2_CIFAR_STAGES, start=1
    ):
        filters = _make_divisible(channels * alpha)
        for block in range(1, repeats + 1):
            x = _inverted_residual(
                x, expansion, filters, stride if block == 1 else 1,
                f"stage{stage}_block{block}",
            )
    last_channels = _make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = conv_bn_relu(x, last_channels, "head", kernel_size=1, max_value=6.0)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name=name)
