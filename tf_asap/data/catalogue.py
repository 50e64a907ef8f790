"""The catalogue of named data sets: shapes, classes, normalisation, sources.

One entry per data set `load_dataset` knows by name: what a model needs to
know about it (`DatasetInfo`) and where its files come from (`Source`).
Means and standard deviations are those of the training split in [0, 1]
pixel units.
"""

import dataclasses

from tf_asap.checks import check_int
from tf_asap.errors import ConfigurationError

DATA_DIR_ENV = "TF_ASAP_DATA_DIR"
"""Environment variable naming a directory searched for IDX files."""

SYSTEM_DATA_DIRS = ("/usr/share/datasets",)
"""Where Debian's `dataset-*` packages install their files."""
@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set.

    Attributes:
        name: Canonical name, as `load_dataset` accepts it.
        input_shape: Shape of one preprocessed image, channels last.
        num_classes: Number of classes; labels are `0..num_classes - 1`.
        mean: Per-channel mean of the training images in [0, 1] pixel units.
        std: Per-channel standard deviation, same units.
        splits: Split names the data set has.
        crop_padding: Zero padding of the training random crop, in pixels
            (0 for ImageNet-style sets, which crop from a resized image).
        flip: Whether training augmentation flips horizontally by default.
    """

    name: str
    input_shape: tuple
    num_classes: int
    mean: tuple
    std: tuple
    splits: tuple
    crop_padding: int
    flip: bool


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a data set's files are and how to get them."""

    kind: str  # "idx": IDX files, "tfds_arrays": small tfds set, "tfds_stream"
    tfds_name: str
    directory_names: tuple = ()
    how_to_get: str = ""


_FASHION_HOW_TO_GET = (
    "On Debian/Ubuntu run `sudo apt install dataset-fashion-mnist`; "
    "or put the four IDX files (train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz) in a directory and set "
    f"{DATA_DIR_ENV} to it; or `pip install tensorflow-datasets` on a "
    "machine with internet access to download it."
)
_MNIST_HOW_TO_GET = (
    "Put the four MNIST IDX files (train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz) in a directory and set "
    f"{DATA_DIR_ENV} to it, or `pip install tensorflow-datasets` on a "
    "machine with internet access to download it."
)


def _tfds_how_to_get(tfds_name, manual=False):
    if manual:
        return (
            f"`pip install tensorflow-datasets`, then follow the manual "
            f"download instructions of the '{tfds_name}' data set in the "
            "tensorflow-datasets catalog and pass its directory as data_dir."
        )
    return (
        "`pip install tensorflow-datasets` and run once on a machine with "
        "internet access (it downloads the data), or pass as data_dir a "
        f"directory where '{tfds_name}' has already been prepared."
    )


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_DEFAULT_IMAGE_SIZE = 224

# Means and standard deviations are those of the training split in [0, 1]
# pixel units (Fashion-MNIST's were measured on the IDX files: 0.28604,
# 0.35302).
DATASETS = {
    "fashion_mnist": (
        DatasetInfo(
            "fashion_mnist", (28, 28, 1), 10, (0.2860,), (0.3530,),
            ("train", "test"), crop_padding=2, flip=False,
        ),
        Source(
            "idx", "fashion_mnist", ("fashion-mnist", "fashion_mnist"),
            _FASHION_HOW_TO_GET,
        ),
    ),
    "mnist": (
        DatasetInfo(
            "mnist", (28, 28, 1), 10, (0.1307,), (0.3081,),
            ("train", "test"), crop_padding=2, flip=False,
        ),
        Source("idx", "mnist", ("mnist",), _MNIST_HOW_TO_GET),
    ),
    "cifar10": (
        DatasetInfo(
            "cifar10", (32, 32, 3), 10, (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616), ("train", "test"),
            crop_padding=4, flip=True,
        ),
        Source("tfds_arrays", "cifar10", how_to_get=_tfds_how_to_get("cifar10")),
    ),
    "cifar100": (
        DatasetInfo(
            "cifar100", (32, 32, 3), 100, (0.5071, 0.4865, 0.4409),
            (0.2673, 0.2564, 0.2762), ("train", "test"),
            crop_padding=4, flip=True,
        ),
        Source(
            "tfds_arrays", "cifar100", how_to_get=_tfds_how_to_get("cifar100")
        ),
    ),
    # The 320px variant of Imagenette: a 10-class ImageNet subset, a
    # quarter of the full-size download.
    "imagenette": (
        DatasetInfo(
            "imagenette", (_DEFAULT_IMAGE_SIZE, _DEFAULT_IMAGE_SIZE, 3), 10,
            _IMAGENET_MEAN, _IMAGENET_STD, ("train", "validation"),
            crop_padding=0, flip=True,
        ),
        Source(
            "tfds_stream", "imagenette/320px-v2",
            how_to_get=_tfds_how_to_get("imagenette/320px-v2"),
        ),
    ),
    "imagenet2012": (
        DatasetInfo(
            "imagenet2012", (_DEFAULT_IMAGE_SIZE, _DEFAULT_IMAGE_SIZE, 3),
            1000, _IMAGENET_MEAN, _IMAGENET_STD, ("train", "validation"),
            crop_padding=0, flip=True,
        ),
        Source(
            "tfds_stream", "imagenet2012",
            how_to_get=_tfds_how_to_get("imagenet2012", manual=True),
        ),
    ),
}

_ALIASES = {"imagenet": "imagenet2012", "fmnist": "fashion_mnist"}


def available_datasets():
    """Names `load_dataset` accepts, sorted."""
    return sorted(DATASETS)


def canonical_name(name):
    if not isinstance(name, str):
        raise ConfigurationError(
            f"A data set name must be a string; received {name!r} of type "
            f"{type(name).__name__}. Available: {', '.join(available_datasets())}."
        )
    squashed = name.lower().replace("-", "").replace("_", "")
    for canonical in DATASETS:
        if canonical.replace("_", "") == squashed:
            return canonical
    if squashed in _ALIASES:
        return _ALIASES[squashed]
    raise ConfigurationError(
        f"Unknown data set '{name}'. Available: "
        f"{', '.join(available_datasets())}. For other data, build a "
        "tf.data.Dataset or NumPy arrays yourself and pass them to tf_asap "
        "directly."
    )


def dataset_info(name, image_size=None):
    """Describe a data set: input shape, classes and normalisation.

    Args:
        name: A name from `available_datasets()` (case, `-` and `_` are
            ignored: "Fashion-MNIST" works).
        image_size: ImageNet-style data sets only: side of the square
            crop. Defaults to `None` (224).

    Returns:
        A `DatasetInfo`.

    Raises:
        ConfigurationError: For an unknown name, or an `image_size` given
            for a data set whose images have a fixed size.

    Example:

    >>> dataset_info("fashion_mnist").input_shape
    (28, 28, 1)
    """
    info, source = DATASETS[canonical_name(name)]
    if image_size is None:
        return info
    if source.kind != "tfds_stream":
        raise ConfigurationError(
            f"image_size applies only to ImageNet-style data sets; "
            f"'{info.name}' images are always {info.input_shape[:2]}. "
            "Leave image_size unset."
        )
    image_size = check_int("image_size", image_size, minimum=8)
    return dataclasses.replace(info, input_shape=(image_size, image_size, 3))


def source_of(info):
    """The `Source` (where the files are, how to get them) of a catalogued data set."""
    return DATASETS[info.name][1]


def is_streamed(info):
    """Whether the data set is too large for memory and is streamed (ImageNet-style)."""
    return source_of(info).kind == "tfds_stream"
