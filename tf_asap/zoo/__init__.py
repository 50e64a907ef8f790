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

The package: `blocks` (shared layers and conventions), `cifar` (the CIFAR
models), `small` (the 28x28 models); this module holds the registry.
"""

from tf_asap.checks import check_int
from tf_asap.errors import ConfigurationError
from tf_asap.zoo.blocks import CIFAR_SHAPE, SMALL_SHAPE
from tf_asap.zoo.cifar import mobilenet_v2_cifar, resnet_cifar, vgg_cifar
from tf_asap.zoo.small import resnet_small, small_cnn, vgg_small

__all__ = [
    "available_models",
    "build_model",
    "mobilenet_v2_cifar",
    "resnet_cifar",
    "resnet_small",
    "small_cnn",
    "vgg_cifar",
    "vgg_small",
]


def _fixed_depth(builder, depth):
    def build(**kwargs):
        return builder(depth, **kwargs)

    return build


# name -> (builder, default input shape, one-line description)
_REGISTRY = {
    "resnet20": (_fixed_depth(resnet_cifar, 20), CIFAR_SHAPE,
                 "CIFAR ResNet-20, projection shortcuts"),
    "resnet32": (_fixed_depth(resnet_cifar, 32), CIFAR_SHAPE,
                 "CIFAR ResNet-32, projection shortcuts"),
    "resnet56": (_fixed_depth(resnet_cifar, 56), CIFAR_SHAPE,
                 "CIFAR ResNet-56, projection shortcuts"),
    "resnet110": (_fixed_depth(resnet_cifar, 110), CIFAR_SHAPE,
                  "CIFAR ResNet-110, projection shortcuts"),
    "vgg16": (_fixed_depth(vgg_cifar, 16), CIFAR_SHAPE,
              "VGG-16 with BN, CIFAR classifier"),
    "vgg19": (_fixed_depth(vgg_cifar, 19), CIFAR_SHAPE,
              "VGG-19 with BN, CIFAR classifier"),
    "mobilenet_v2": (mobilenet_v2_cifar, CIFAR_SHAPE,
                     "MobileNetV2 for 32x32 inputs (alpha=width multiplier)"),
    "small_cnn": (small_cnn, SMALL_SHAPE, "4-conv CNN for 28x28 inputs"),
    "vgg_small": (vgg_small, SMALL_SHAPE, "6-conv VGG for 28x28 inputs"),
    "resnet_small": (resnet_small, SMALL_SHAPE, "ResNet-8 for 28x28 inputs"),
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

