"""Building blocks shared by the zoo's models, and their conventions.

Convolutions before a BatchNormalization have no bias; kernels use
`he_normal`; BatchNormalization uses PyTorch's defaults (see `tf_asap.zoo`).
"""

import keras

from tf_asap.errors import ConfigurationError

CIFAR_SHAPE = (32, 32, 3)
SMALL_SHAPE = (28, 28, 1)

# PyTorch's BatchNorm2d defaults; see the module docstring.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5
INITIALIZER = "he_normal"


def conv(x, filters, kernel_size, strides, name):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=INITIALIZER,
        name=name,
    )(x)


def batch_norm(x, name):
    return keras.layers.BatchNormalization(
        momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name
    )(x)


def conv_bn_relu(x, filters, name, kernel_size=3, strides=1, max_value=None):
    x = conv(x, filters, kernel_size, strides, f"{name}_conv")
    x = batch_norm(x, f"{name}_bn")
    return keras.layers.ReLU(max_value=max_value, name=f"{name}_relu")(x)


def classifier(x, num_classes, activation):
    return keras.layers.Dense(
        num_classes,
        activation=activation,
        kernel_initializer=INITIALIZER,
        name="classifier",
    )(x)


def check_spatial_size(input_shape, downsampling, model_name):
    """Raise when `downsampling` halvings would shrink the image to nothing."""
    height, width = input_shape[0], input_shape[1]
    smallest = 2**downsampling
    if height is not None and height < smallest or (
        width is not None and width < smallest
    ):
        raise ConfigurationError(
            f"{model_name} halves the image {downsampling} times, so its "
            f"input must be at least {smallest}x{smallest}; received "
            f"input_shape {tuple(input_shape)}. Resize the images or choose "
            "a model for small inputs (small_cnn, vgg_small, resnet_small)."
        )


def basic_block(x, filters, strides, name):
    """Two 3x3 conv-BN with a shortcut (He et al. 2016, figure 2 left).

    The shortcut is the identity when the shape is unchanged and a 1x1
    convolution + BN projection ("option B") otherwise.
    """
    shortcut = x
    y = conv_bn_relu(x, filters, f"{name}_1", strides=strides)
    y = conv(y, filters, 3, 1, f"{name}_2_conv")
    y = batch_norm(y, f"{name}_2_bn")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv(x, filters, 1, strides, f"{name}_shortcut_conv")
        shortcut = batch_norm(shortcut, f"{name}_shortcut_bn")
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def vgg_features(x, config):
    block, index = 1, 1
    for item in config:
        if item == "M":
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
            block, index = block + 1, 1
        else:
            x = conv_bn_relu(x, item, f"block{block}_{index}")
            index += 1
    return x
