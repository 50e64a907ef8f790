"""Reference models of the paper, built from plain Keras layers.

Every model here is a functional, channels-last `keras.Model` made only of
stock layers (Conv2D, DepthwiseConv2D, BatchNormalization, ReLU,
MaxPooling2D, GlobalAveragePooling2D, Flatten, Dense, Add), so tf_asap's
channel-group analysis can read it like any user model. Layers carry
descriptive names (`stage2_block1_conv1`) so that pruning reports are
readable.

Conventions shared by all models:

* Convolutions before a BatchNormalization have no bias; kernels use
  `he_normal` initialisation.
* BatchNormalization uses PyTorch's defaults (`momentum=0.9`,
  `epsilon=1e-5`), as the paper trained in PyTorch. Keras' default
  momentum of 0.99 makes the running statistics lag far behind the weights
  in the short retraining runs of iterative pruning.
* No weight regularisers: the paper's weight decay is applied by the
  optimizer of `tf_asap.recipe` (see `CoupledWeightDecaySGD`), so it works
  on any model, including users' own.
* The classifier ends with a softmax (`classifier_activation="softmax"`);
  pass `classifier_activation=None` for logits.

Models:

* `resnet20`, `resnet32`, `resnet56`, `resnet110`: the CIFAR ResNets of He
  et al. (2016, section 4.2): a 3x3 convolution with 16 filters, three
  stages of `n = (depth - 2) / 6` basic blocks with 16, 32 and 64 filters,
  global average pooling and a dense classifier. Shortcuts are identities
  inside a stage and 1x1 convolution + BatchNormalization projections
  where the shape changes ("option B"); He et al.'s CIFAR "option A"
  (subsample and zero-pad) has no parameters but no stock Keras layer
  either, and pruning needs a real layer to carry the channel change.
  The two projections add 2,752 trainable parameters: ResNet-20 has
  272,474 trainable parameters instead of option A's 269,722 ("0.27M");
  `count_params()`, which also counts BatchNormalization's moving
  statistics, gives 274,042.
* `vgg16`, `vgg19`: VGG with BatchNormalization for 32x32 inputs: the
  ImageNet convolution stacks (conv-BN-ReLU, five max-poolings), then
  Flatten, Dense(512)-BN-ReLU and the classifier (the classifier of the
  CIFAR VGG used by network slimming and HRank).
* `mobilenet_v2`: MobileNetV2 (Sandler et al., 2018) for 32x32 inputs:
  the first convolution and the second stage use stride 1 instead of 2,
  so 32x32 images reach the last stage at 4x4. `alpha` is the width
  multiplier.
* `small_cnn`: conv32-conv32-pool-conv64-conv64-pool-Dense128-classifier,
  every convolution followed by BN and ReLU; for 28x28 grey images.
* `vgg_small`: a 6-convolution VGG (widths 16, 32, 64, two convolutions
  each, a max-pool after each pair) with global average pooling, sized for
  Fashion-MNIST on a 2-core CPU.
* `resnet_small`: ResNet-8 (one basic block per stage, widths 16, 32, 64),
  sized likewise.
"""

import keras

from tf_asap.checks import check_int
from tf_asap.errors import ConfigurationError

_CIFAR_SHAPE = (32, 32, 3)
_SMALL_SHAPE = (28, 28, 1)

# PyTorch's BatchNorm2d defaults; see the module docstring.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5
_INITIALIZER = "he_normal"


def _conv(x, filters, kernel_size, strides, name):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=_INITIALIZER,
        name=name,
    )(x)


def _batch_norm(x, name):
    return keras.layers.BatchNormalization(
        momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name
    )(x)


def _conv_bn_relu(x, filters, name, kernel_size=3, strides=1, max_value=None):
    x = _conv(x, filters, kernel_size, strides, f"{name}_conv")
    x = _batch_norm(x, f"{name}_bn")
    return keras.layers.ReLU(max_value=max_value, name=f"{name}_relu")(x)


def _classifier(x, num_classes, activation):
    return keras.layers.Dense(
        num_classes,
        activation=activation,
        kernel_initializer=_INITIALIZER,
        name="classifier",
    )(x)


def _check_spatial_size(input_shape, downsampling, model_name):
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


def _basic_block(x, filters, strides, name):
    """Two 3x3 conv-BN with a shortcut (He et al. 2016, figure 2 left).

    The shortcut is the identity when the shape is unchanged and a 1x1
    convolution + BN projection ("option B") otherwise.
    """
    shortcut = x
    y = _conv_bn_relu(x, filters, f"{name}_1", strides=strides)
    y = _conv(y, filters, 3, 1, f"{name}_2_conv")
    y = _batch_norm(y, f"{name}_2_bn")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(x, filters, 1, strides, f"{name}_shortcut_conv")
        shortcut = _batch_norm(shortcut, f"{name}_shortcut_bn")
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet_cifar(
    depth,
    input_shape=_CIFAR_SHAPE,
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
    _check_spatial_size(input_shape, 2, name)
    blocks_per_stage = (depth - 2) // 6
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn_relu(inputs, widths[0], "stem")
    for stage, filters in enumerate(widths, start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(x, filters, strides, f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = _classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name=name)


# "M" is a 2x2 max-pooling; numbers are convolution filters.
_VGG_CONFIGS = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
         512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
         512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def _vgg_features(x, config):
    block, index = 1, 1
    for item in config:
        if item == "M":
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
            block, index = block + 1, 1
        else:
            x = _conv_bn_relu(x, item, f"block{block}_{index}")
            index += 1
    return x


def vgg_cifar(
    depth,
    input_shape=_CIFAR_SHAPE,
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
    _check_spatial_size(input_shape, 5, name)
    inputs = keras.Input(shape=input_shape, name="image")
    x = _vgg_features(inputs, _VGG_CONFIGS[depth])
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(
        hidden_units, use_bias=False, kernel_initializer=_INITIALIZER,
        name="fc1",
    )(x)
    x = _batch_norm(x, "fc1_bn")
    x = keras.layers.ReLU(name="fc1_relu")(x)
    outputs = _classifier(x, num_classes, classifier_activation)
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
        y = _conv_bn_relu(
            y, in_channels * expansion, f"{name}_expand", kernel_size=1,
            max_value=6.0,
        )
    y = keras.layers.DepthwiseConv2D(
        3, strides=strides, padding="same", use_bias=False,
        depthwise_initializer=_INITIALIZER, name=f"{name}_depthwise",
    )(y)
    y = _batch_norm(y, f"{name}_depthwise_bn")
    y = keras.layers.ReLU(max_value=6.0, name=f"{name}_depthwise_relu")(y)
    # The projection is linear: no activation after its BN.
    y = _conv(y, filters, 1, 1, f"{name}_project_conv")
    y = _batch_norm(y, f"{name}_project_bn")
    if strides == 1 and in_channels == filters:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def mobilenet_v2_cifar(
    input_shape=_CIFAR_SHAPE,
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
    _check_spatial_size(input_shape, 3, name)
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn_relu(
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
    x = _conv_bn_relu(x, last_channels, "head", kernel_size=1, max_value=6.0)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = _classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name=name)


def small_cnn(
    input_shape=_SMALL_SHAPE,
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
    _check_spatial_size(input_shape, 2, name)
    inputs = keras.Input(shape=input_shape, name="image")
    x = _vgg_features(inputs, (32, 32, "M", 64, 64, "M"))
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(
        hidden_units, use_bias=False, kernel_initializer=_INITIALIZER,
        name="fc1",
    )(x)
    x = _batch_norm(x, "fc1_bn")
    x = keras.layers.ReLU(name="fc1_relu")(x)
    outputs = _classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name=name)


def vgg_small(
    input_shape=_SMALL_SHAPE,
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
    _check_spatial_size(input_shape, len(widths), name)
    config = []
    for width in widths:
        config += [width, width, "M"]
    inputs = keras.Input(shape=input_shape, name="image")
    x = _vgg_features(inputs, config)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = _classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name=name)


def resnet_small(
    input_shape=_SMALL_SHAPE,
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


def _fixed_depth(builder, depth):
    def build(**kwargs):
        return builder(depth, **kwargs)

    return build


# name -> (builder, default input shape, one-line description)
_REGISTRY = {
    "resnet20": (_fixed_depth(resnet_cifar, 20), _CIFAR_SHAPE,
                 "CIFAR ResNet-20, projection shortcuts"),
    "resnet32": (_fixed_depth(resnet_cifar, 32), _CIFAR_SHAPE,
                 "CIFAR ResNet-32, projection shortcuts"),
    "resnet56": (_fixed_depth(resnet_cifar, 56), _CIFAR_SHAPE,
                 "CIFAR ResNet-56, projection shortcuts"),
    "resnet110": (_fixed_depth(resnet_cifar, 110), _CIFAR_SHAPE,
                  "CIFAR ResNet-110, projection shortcuts"),
    "vgg16": (_fixed_depth(vgg_cifar, 16), _CIFAR_SHAPE,
              "VGG-16 with BN, CIFAR classifier"),
    "vgg19": (_fixed_depth(vgg_cifar, 19), _CIFAR_SHAPE,
              "VGG-19 with BN, CIFAR classifier"),
    "mobilenet_v2": (mobilenet_v2_cifar, _CIFAR_SHAPE,
                     "MobileNetV2 for 32x32 inputs (alpha=width multiplier)"),
    "small_cnn": (small_cnn, _SMALL_SHAPE, "4-conv CNN for 28x28 inputs"),
    "vgg_small": (vgg_small, _SMALL_SHAPE, "6-conv VGG for 28x28 inputs"),
    "resnet_small": (resnet_small, _SMALL_SHAPE, "ResNet-8 for 28x28 inputs"),
}


def available_models():
    """Names `build_model` accepts, sorted."""
    return sorted(_REGISTRY)


def _registry_key(name):
    if isinstance(name, str):
        squashed = name.lower().replace("-", "").replace("_", "")
        for key in _REGISTRY:
            if key.replace("_", "") == squashed:
                return key
    listing = ", ".join(
        f"{key} ({_REGISTRY[key][2]})" for key in available_models()
    )
    raise ConfigurationError(
        f"Unknown model {name!r}. Available models: {listing}."
    )


def build_model(name, input_shape=None, num_classes=10, **kwargs):
    """Build a reference model by name.

    Args:
        name: A name from `available_models()` (case, `-` and `_` are
            ignored: "ResNet-20" works).
        input_shape: Image shape, channels last, without the batch
            dimension. Defaults to `None`: `(32, 32, 3)` for the CIFAR
            models, `(28, 28, 1)` for small_cnn, vgg_small and
            resnet_small.
        num_classes: Number of classes. Defaults to `10`.
        **kwargs: Passed to the model's builder (`alpha` for mobilenet_v2,
            `widths` for the ResNets and vgg_small, `hidden_units`,
            `classifier_activation`, `name`).

    Returns:
        An uncompiled `keras.Model`; compile it with
        `tf_asap.recipe.compile_with_recipe`.

    Raises:
        ConfigurationError: For an unknown name, an invalid argument, or an
            input too small for the model.

    Example:

    >>> model = build_model("resnet20", input_shape=(32, 32, 3), num_classes=10)
    >>> model.count_params()  # 272,474 trainable + BN moving statistics
    274042
    """
    builder, default_shape, _ = _REGISTRY[_registry_key(name)]
    input_shape = tuple(default_shape if input_shape is None else input_shape)
    if len(input_shape) != 3:
        raise ConfigurationError(
            f"input_shape must be (height, width, channels); received "
            f"{input_shape!r}."
        )
    num_classes = check_int("num_classes", num_classes, minimum=2)
    try:
        return builder(input_shape=input_shape, num_classes=num_classes, **kwargs)
    except TypeError as error:
        message = str(error)
        if "keyword argument" not in message and "multiple values" not in message:
            raise
        raise ConfigurationError(
            f"Model '{name}' does not accept the arguments "
            f"{sorted(kwargs)}: {error}. The depth of named models is fixed; "
            "see the docstring of tf_asap.zoo for each model's arguments."
        ) from error

