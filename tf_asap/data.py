"""Data sets with the paper's preprocessing, read offline first.

`load_dataset` returns batched `tf.data` pipelines of `(image, label)` with
the preprocessing of the paper (appendix A.1): per-channel normalisation
with the training set's mean and standard deviation, and, for training, a
random crop from a zero-padded image plus a random horizontal flip.

Where the data comes from, in order:

* Fashion-MNIST and MNIST are read directly from their IDX files (gzipped
  or raw), from the `data_dir` argument, then `$TF_ASAP_DATA_DIR`, then the
  Debian/Ubuntu package location (`apt install dataset-fashion-mnist` puts
  the files in `/usr/share/datasets/fashion-mnist/`), then Keras' download
  cache (`~/.keras/datasets/fashion-mnist/`, filled by
  `keras.datasets.fashion_mnist.load_data()`), and only then through
  `tensorflow-datasets`, which downloads where there is internet. In a
  directory, the data set's own subdirectory (`fashion-mnist/`,
  `fashion_mnist/` or `mnist/`) is searched before the directory itself.
* CIFAR-10, CIFAR-100, Imagenette and ImageNet (ILSVRC 2012) go through
  `tensorflow-datasets` (an optional dependency, imported only when needed).

A data set that cannot be found raises `DataError` listing every place
looked and how to get the data.

Augmentation choices (the paper only says "random crop and random
horizontal flip" for its CIFAR and ImageNet images):

* CIFAR: 4-pixel zero padding, random 32x32 crop, horizontal flip.
* 28x28 sets (MNIST and Fashion-MNIST): 2-pixel zero padding and a random
  28x28 crop, no flip. A flipped digit is not the same digit; a flipped
  shirt is still a shirt, but Fashion-MNIST keeps the flip off by default
  so that the two 28x28 sets behave alike ("none of the flip for
  digits-like data"). Pass `flip=True` to turn it on.
* ImageNet-style: shorter side resized to 256/224 of the crop size, a
  random crop (training) or the centre crop (evaluation), horizontal flip
  for training.

Padding is zero in pixel space, before normalisation, as PyTorch's
`RandomCrop(padding=...)` followed by `Normalize` does.

Data a user already holds (NumPy arrays, `(x, y)` tuples, `tf.data`
datasets batched or not, generators, `keras.utils.PyDataset`) needs no
loader: every tf_asap entry point takes it as it is, through the core's
`tf_asap.inputs.as_batches`.
"""

import dataclasses
import gzip
import os
import re
import zlib

import numpy as np
import tensorflow as tf

from tf_asap.errors import ConfigurationError
from tf_asap.errors import DataError

DATA_DIR_ENV = "TF_ASAP_DATA_DIR"
"""Environment variable naming a directory searched for IDX files."""

SYSTEM_DATA_DIRS = ("/usr/share/datasets",)
"""Where Debian's `dataset-*` packages install their files."""

DEFAULT_BATCH_SIZE = 128
"""The paper's batch size (appendix A.1), used wherever none is given."""

# Examples kept in the shuffle buffer of streamed (ImageNet-style) data sets.
# Array-backed data sets are shuffled completely, by index.
_STREAM_SHUFFLE_BUFFER = 10_000


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
class _Source:
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
_DATASETS = {
    "fashion_mnist": (
        DatasetInfo(
            "fashion_mnist", (28, 28, 1), 10, (0.2860,), (0.3530,),
            ("train", "test"), crop_padding=2, flip=False,
        ),
        _Source(
            "idx", "fashion_mnist", ("fashion-mnist", "fashion_mnist"),
            _FASHION_HOW_TO_GET,
        ),
    ),
    "mnist": (
        DatasetInfo(
            "mnist", (28, 28, 1), 10, (0.1307,), (0.3081,),
            ("train", "test"), crop_padding=2, flip=False,
        ),
        _Source("idx", "mnist", ("mnist",), _MNIST_HOW_TO_GET),
    ),
    "cifar10": (
        DatasetInfo(
            "cifar10", (32, 32, 3), 10, (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616), ("train", "test"),
            crop_padding=4, flip=True,
        ),
        _Source("tfds_arrays", "cifar10", how_to_get=_tfds_how_to_get("cifar10")),
    ),
    "cifar100": (
        DatasetInfo(
            "cifar100", (32, 32, 3), 100, (0.5071, 0.4865, 0.4409),
            (0.2673, 0.2564, 0.2762), ("train", "test"),
            crop_padding=4, flip=True,
        ),
        _Source(
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
        _Source(
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
        _Source(
            "tfds_stream", "imagenet2012",
            how_to_get=_tfds_how_to_get("imagenet2012", manual=True),
        ),
    ),
}

_ALIASES = {"imagenet": "imagenet2012", "fmnist": "fashion_mnist"}


def available_datasets():
    """Names `load_dataset` accepts, sorted."""
    return sorted(_DATASETS)


def _canonical_name(name):
    if not isinstance(name, str):
        raise ConfigurationError(
            f"A data set name must be a string; received {name!r} of type "
            f"{type(name).__name__}. Available: {', '.join(available_datasets())}."
        )
    squashed = name.lower().replace("-", "").replace("_", "")
    for canonical in _DATASETS:
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
    info, source = _DATASETS[_canonical_name(name)]
    if image_size is None:
        return info
    if source.kind != "tfds_stream":
        raise ConfigurationError(
            f"image_size applies only to ImageNet-style data sets; "
            f"'{info.name}' images are always {info.input_shape[:2]}. "
            "Leave image_size unset."
        )
    if not isinstance(image_size, int) or image_size < 8:
        raise ConfigurationError(
            f"image_size must be an integer of at least 8; received "
            f"{image_size!r}."
        )
    return dataclasses.replace(info, input_shape=(image_size, image_size, 3))


# --------------------------------------------------------------------------
# IDX files

# Type codes of the IDX format (third byte of the magic number).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path):
    """Read one IDX file (gzipped or raw) into a NumPy array.

    The IDX format (used by MNIST and Fashion-MNIST) is a 4-byte magic
    number (two zero bytes, a type code, the number of dimensions), one
    big-endian 32-bit size per dimension, then the data in C order. Gzip
    is recognised by its magic bytes, not the file name.

    Args:
        path: Path of the file.

    Returns:
        A read-only NumPy array with the file's shape and dtype.

    Raises:
        DataError: If the file cannot be read, is not IDX, or its size does
            not match its header (a truncated download, for instance).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            raw = file.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"Cannot read IDX file {path}: {error}. The file is damaged or "
            "truncated; download it again."
        ) from error
    if len(raw) < 4:
        raise DataError(
            f"{path} is not an IDX file: it has {len(raw)} bytes, fewer than "
            "the 4-byte magic number. The file is truncated; download it "
            "again."
        )
    zero_a, zero_b, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero_a != 0 or zero_b != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path} is not an IDX file: its magic number is "
            f"0x{raw[:4].hex()}, expected 0x0000TTNN with a type code TT in "
            f"{{{', '.join(f'{code:02x}' for code in _IDX_DTYPES)}}} and "
            "NN >= 1 dimensions."
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(
            f"{path} is truncated: its header announces {ndim} dimensions "
            f"({header_size} header bytes) but the file has {len(raw)} bytes."
        )
    shape = tuple(int(size) for size in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    received = len(raw) - header_size
    if received != expected:
        raise DataError(
            f"{path} has {received} data bytes but its header announces "
            f"shape {shape} of {dtype.name} ({expected} bytes). The file is "
            "truncated or corrupt; download it again."
        )
    data = np.frombuffer(raw, dtype, offset=header_size).reshape(shape)
    # Big-endian types become native so that TensorFlow accepts them.
    return data.astype(dtype.newbyteorder("="), copy=False)


def _idx_file_names(split, kind):
    prefix = "train" if split == "train" else "t10k"
    dims = 3 if kind == "images" else 1
    return (
        f"{prefix}-{kind}-idx{dims}-ubyte.gz",
        f"{prefix}-{kind}-idx{dims}-ubyte",
        f"{prefix}-{kind}.idx{dims}-ubyte",
    )


def _find_file(directory, names):
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def _idx_search_places(source, data_dir):
    """(directory, why it is searched) in search order."""
    roots = []
    if data_dir is not None:
        roots.append((os.fspath(data_dir), "data_dir argument"))
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir:
        roots.append((env_dir, f"${DATA_DIR_ENV}"))
    places = []
    for root, why in roots:
        for directory_name in source.directory_names:
            places.append((os.path.join(root, directory_name), why))
        places.append((root, why))
    for root in SYSTEM_DATA_DIRS:
        places.append(
            (os.path.join(root, source.directory_names[0]),
             "Debian/Ubuntu package location")
        )
    keras_home = os.environ.get(
        "KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")
    )
    places.append(
        (os.path.join(keras_home, "datasets", source.directory_names[0]),
         "Keras download cache")
    )
    return places, bool(env_dir)


def _read_idx_split(info, source, split, data_dir, looked):
    """Images (N, H, W, 1) uint8 and labels (N,) from IDX files, or None."""
    image_names = _idx_file_names(split, "images")
    label_names = _idx_file_names(split, "labels")
    places, env_set = _idx_search_places(source, data_dir)
    if not env_set:
        looked.append(f"${DATA_DIR_ENV} (not set)")
    for directory, why in places:
        images_path = _find_file(directory, image_names)
        labels_path = _find_file(directory, label_names)
        if images_path is None or labels_path is None:
            looked.append(f"{directory} ({why})")
            continue
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        _check_idx_pair(info, images, labels, images_path, labels_path)
        return images[..., np.newaxis], labels
    return None


def _check_idx_pair(info, images, labels, images_path, labels_path):
    height, width, _ = info.input_shape
    if images.ndim != 3 or images.shape[1:] != (height, width):
        raise DataError(
            f"{images_path} holds an array of shape {images.shape}; "
            f"{info.name} images must have shape (N, {height}, {width}). "
            "Check that the file is the right one."
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{labels_path} holds labels of shape {labels.shape} but "
            f"{images_path} holds {images.shape[0]} images; the two files "
            "must belong to the same split."
        )
    if labels.size and int(labels.max()) >= info.num_classes:
        raise DataError(
            f"{labels_path} has label {int(labels.max())}; {info.name} has "
            f"{info.num_classes} classes (labels 0..{info.num_classes - 1})."
        )


# --------------------------------------------------------------------------
# tensorflow-datasets


def _import_tfds():
    """`tensorflow_datasets`, or None when it is not installed."""
    try:
        import tensorflow_datasets
    except ImportError:
        return None
    return tensorflow_datasets


def _tfds_load(source, split, data_dir, download, shuffle_files, seed, looked):
    """A tfds dataset of (image, label), or None (reason added to looked)."""
    tfds = _import_tfds()
    if tfds is None:
        looked.append(
            f"tensorflow-datasets '{source.tfds_name}' (not installed)"
        )
        return None
    read_config = tfds.ReadConfig(shuffle_seed=seed)
    try:
        return tfds.load(
            source.tfds_name,
            split=split,
            as_supervised=True,
            data_dir=data_dir,
            download=download,
            shuffle_files=shuffle_files,
            read_config=read_config,
        )
    except Exception as error:  # tfds raises many unrelated types offline.
        reason = " ".join(str(error).split())[:300]
        looked.append(
            f"tensorflow-datasets '{source.tfds_name}' "
            f"(download={download}; failed: {type(error).__name__}: {reason})"
        )
        return None


def _dataset_to_arrays(dataset):
    images, labels = [], []
    for image_batch, label_batch in dataset.batch(4096).as_numpy_iterator():
        images.append(image_batch)
        labels.append(label_batch)
    if not images:
        return None
    return np.concatenate(images), np.concatenate(labels)


def _not_found(info, source, split, looked):
    places = "\n".join(f"  - {place}" for place in looked)
    return DataError(
        f"Cannot find the '{split}' split of data set '{info.name}'. "
        f"Looked in:\n{places}\nHow to get it: {source.how_to_get}"
    )


# --------------------------------------------------------------------------
# Splits

_SPLIT_PATTERN = re.compile(
    r"^(?P<base>\w+)(?:\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$"
)


def _parse_split(info, split):
    """(base split, start, stop) with start/stop as strings or None."""
    match = _SPLIT_PATTERN.match(split) if isinstance(split, str) else None
    if match is None:
        raise ConfigurationError(
            f"Cannot parse split {split!r}. Expected a split name of "
            f"'{info.name}' ({', '.join(info.splits)}), optionally sliced "
            "like 'train[:90%]' or 'train[1000:2000]'."
        )
    base = match.group("base")
    if base == "test" and "test" not in info.splits:
        base = "validation"  # ImageNet-style sets evaluate on validation.
    if base not in info.splits:
        raise ConfigurationError(
            f"Data set '{info.name}' has no split '{base}'; its splits are "
            f"{', '.join(info.splits)}."
        )
    return base, match.group("start"), match.group("stop")


def _slice_bound(bound, size):
    if bound is None:
        return None
    if bound.endswith("%"):
        return int(round(size * int(bound[:-1]) / 100))
    return int(bound)


def _tfds_split(base, start, stop):
    if start is None and stop is None:
        return base
    return f"{base}[{start or ''}:{stop or ''}]"


# --------------------------------------------------------------------------
# Arrays


def _load_raw_arrays(info, source, split, data_dir, download):
    """uint8 images (N, H, W, C) and int32 labels of a fixed-size data set."""
    base, start, stop = _parse_split(info, split)
    looked = []
    arrays = None
    if source.kind == "idx":
        arrays = _read_idx_split(info, source, base, data_dir, looked)
        if arrays is not None:
            images, labels = arrays
            size = len(images)
            window = slice(_slice_bound(start, size), _slice_bound(stop, size))
            arrays = images[window], labels[window]
    if arrays is None:
        dataset = _tfds_load(
            source, _tfds_split(base, start, stop), data_dir, download,
            shuffle_files=False, seed=0, looked=looked,
        )
        if dataset is not None:
            arrays = _dataset_to_arrays(dataset)
            if arrays is None:
                looked.append(
                    f"tensorflow-datasets '{source.tfds_name}' (split is empty)"
                )
    if arrays is None:
        raise _not_found(info, source, split, looked)
    images, labels = arrays
    return images, labels.astype(np.int32)


def _normalise_numpy(images, info):
    # A 256-entry table per channel: three times faster than float
    # arithmetic on 47 million pixels, and exactly the same values.
    mean = np.asarray(info.mean, np.float32)
    std = np.asarray(info.std, np.float32)
    table = (np.arange(256, dtype=np.float32)[:, np.newaxis] / 255.0 - mean) / std
    return table[images, np.arange(images.shape[-1])]


def load_arrays(
    name,
    split="test",
    limit=None,
    normalize=True,
    data_dir=None,
    download=True,
    image_size=None,
):
    """Load a split as NumPy arrays, without augmentation.

    Handy for calibration data, representative data sets of int8
    conversion, or a quick `model.evaluate(x, y)`.

    Args:
        name: A name from `available_datasets()`.
        split: Split name, optionally sliced like `"train[:10%]"`.
            Defaults to `"test"` ("validation" for ImageNet-style sets).
        limit: Keep only the first `limit` examples. Required for
            ImageNet-style sets, whose splits do not fit in memory.
            Defaults to `None` (all).
        normalize: Return float32 images normalised with the data set's
            mean and standard deviation; `False` returns the uint8 pixels.
            Defaults to `True`.
        data_dir: A directory searched first (see the module docstring),
            also passed to tensorflow-datasets. Defaults to `None`.
        download: Let tensorflow-datasets download missing data.
            Defaults to `True`.
        image_size: ImageNet-style sets only: side of the centre crop.
            Defaults to `None` (224).

    Returns:
        `(images, labels)`: images of shape `(N,) + input_shape` (channels
        last), int32 labels of shape `(N,)`.

    Raises:
        DataError: If the data cannot be found or read.
        ConfigurationError: For an unknown name or split, a bad `limit`, or
            a missing `limit` on an ImageNet-style set.

    Example:

    >>> x, y = load_arrays("fashion_mnist", "test", limit=1000)
    >>> x.shape, y[:3]
    ((1000, 28, 28, 1), array([9, 2, 1], dtype=int32))
    """
    info = dataset_info(name, image_size)
    _, source = _DATASETS[info.name]
    _check_limit(limit)
    if source.kind == "tfds_stream":
        if limit is None:
            raise ConfigurationError(
                f"load_arrays('{info.name}') needs a limit: the split does "
                "not fit in memory. Pass limit=N, or use load_dataset() for "
                "a streamed pipeline."
            )
        dataset = load_dataset(
            info.name, split, batch_size=limit, shuffle=False, augment=False,
            limit=limit, data_dir=data_dir, download=download,
            image_size=image_size, normalize=normalize,
        )
        images, labels = _dataset_to_arrays(dataset.unbatch())
        return images, labels.astype(np.int32)
    images, labels = _load_raw_arrays(info, source, split, data_dir, download)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if normalize:
        return _normalise_numpy(images, info), labels
    return images.copy(), labels


def _check_limit(limit):
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, (int, np.integer))
        or limit < 1
    ):
        raise ConfigurationError(
            f"limit must be a positive integer or None; received {limit!r}."
        )


# --------------------------------------------------------------------------
# Pipelines


def _normalise(images, info):
    """uint8 or [0, 1] float images -> (x / 255 - mean) / std, float32."""
    mean = tf.constant(info.mean, tf.float32)
    std = tf.constant(info.std, tf.float32)
    return (images - mean) / std


def _random_crop_and_flip(images, seed, padding, flip):
    """Batched random crop from a zero-padded image, plus a random flip.

    Each image of the batch gets its own offset and flip. Cropping is two
    batched gathers (rows, then columns), about ten times faster than a
    per-example `map`; flipping reverses the column indices of the same
    gather, so it is free.
    """
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(
        images, [[0, 0], [padding, padding], [padding, padding], [0, 0]]
    )
    offsets = tf.random.stateless_uniform(
        [batch, 2], seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(height)[tf.newaxis, :]
    columns = tf.range(width)[tf.newaxis, :]
    if flip:
        flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
        flipped = tf.random.stateless_uniform([batch, 1], flip_seed) < 0.5
        columns = tf.where(flipped, width - 1 - columns, columns)
    columns = offsets[:, 1:] + columns
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, columns, axis=2, batch_dims=1)


def _with_seeds(dataset, seed):
    """Zip a dataset with a stream of stateless-op seeds.

    The seeds are reproducible for a given `seed` and differ from epoch to
    epoch (`rerandomize_each_iteration`), so each epoch sees new crops.
    """
    seeds = tf.data.Dataset.random(
        seed=seed, rerandomize_each_iteration=True
    ).batch(2, drop_remainder=True)
    return tf.data.Dataset.zip(dataset, seeds)


def _array_pipeline(
    images, labels, info, batch_size, shuffle, augment, flip, seed, normalize
):
    """Batched pipeline over in-memory uint8 images.

    Shuffling permutes indices and gathers whole batches, so a full shuffle
    of 60,000 images costs nothing and no image is copied into a buffer.
    """
    images = tf.constant(images)
    labels = tf.constant(labels)
    count = int(images.shape[0])
    dataset = tf.data.Dataset.range(count)
    if shuffle:
        dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def take(indices):
        return tf.gather(images, indices), tf.gather(labels, indices)

    dataset = dataset.map(take, num_parallel_calls=tf.data.AUTOTUNE)

    def prepare(batch, seed_pair):
        batch_images, batch_labels = batch
        batch_images = tf.cast(batch_images, tf.float32) / 255.0
        if seed_pair is not None:
            batch_images = _random_crop_and_flip(
                batch_images, seed_pair, info.crop_padding, flip
            )
        if normalize:
            batch_images = _normalise(batch_images, info)
        return batch_images, batch_labels

    dataset = _map_with_optional_seeds(dataset, prepare, augment, seed)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _map_with_optional_seeds(dataset, prepare, augment, seed):
    """Map `prepare(element, seed_pair)`; `seed_pair` is None without augment."""
    if augment:
        return _with_seeds(dataset, seed).map(
            lambda element, seed_pair: prepare(element, seed_pair),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.map(
        lambda *element: prepare(element, None),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _resize_shorter_side(image, size):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.reduce_min(shape)
    new_shape = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    return tf.image.resize(image, new_shape, antialias=True)


def _stream_pipeline(
    dataset, info, batch_size, shuffle, augment, flip, seed, normalize
):
    """Batched pipeline over variable-size images (ImageNet-style)."""
    crop_size = info.input_shape[0]
    # The usual 256 -> 224 ratio of ImageNet evaluation.
    resize_size = int(round(crop_size * 256 / 224))
    if shuffle:
        dataset = dataset.shuffle(
            _STREAM_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True
        )

    def prepare(example, seed_pair):
        image, label = example
        image = tf.cast(image, tf.float32) / 255.0
        image = _resize_shorter_side(image, resize_size)
        if seed_pair is None:
            image = tf.image.resize_with_crop_or_pad(image, crop_size, crop_size)
        else:
            image = tf.image.stateless_random_crop(
                image, [crop_size, crop_size, 3], seed_pair
            )
            if flip:
                flip_seed = tf.random.experimental.stateless_fold_in(seed_pair, 1)
                image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        image = tf.ensure_shape(image, (crop_size, crop_size, 3))
        return image, tf.cast(label, tf.int32)

    dataset = _map_with_optional_seeds(dataset, prepare, augment, seed)
    dataset = dataset.batch(batch_size)
    if normalize:
        dataset = dataset.map(
            lambda images, labels: (_normalise(images, info), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def load_dataset(
    name,
    split="train",
    batch_size=DEFAULT_BATCH_SIZE,
    shuffle=None,
    augment=None,
    flip=None,
    limit=None,
    data_dir=None,
    seed=0,
    download=True,
    image_size=None,
    normalize=True,
):
    """Load a data set as a batched `tf.data` pipeline with the paper's preprocessing.

    Images are float32, channels last, normalised per channel with the
    training set's mean and standard deviation (`dataset_info(name)`);
    labels are int32 class indices, ready for sparse categorical
    cross-entropy. Training splits are shuffled and augmented by default
    (see the module docstring for the augmentation of each data set);
    evaluation splits are not. Shuffling and augmentation are reproducible
    for a given `seed` and change from epoch to epoch.

    Args:
        name: A name from `available_datasets()`: "fashion_mnist", "mnist",
            "cifar10", "cifar100", "imagenette", "imagenet2012" (case, `-`
            and `_` are ignored).
        split: "train" or "test" ("validation" for ImageNet-style sets;
            "test" is mapped to it), optionally sliced like
            `"train[:90%]"` or `"train[:5000]"`. Defaults to `"train"`.
        batch_size: Examples per batch. Defaults to `128` (the paper's).
        shuffle: Shuffle the examples. Defaults to `None`: on for the
            training split, off otherwise.
        augment: Random crop (and flip where the data set allows it).
            Defaults to `None`: on for the training split, off otherwise.
        flip: Random horizontal flip within the augmentation. Defaults to
            `None`: on for CIFAR and ImageNet-style sets, off for the 28x28
            sets.
        limit: Keep only the first `limit` examples of the split (before
            shuffling), for quick runs. Defaults to `None` (all).
        data_dir: A directory searched first for IDX files (then
            `$TF_ASAP_DATA_DIR`, Debian's location, Keras' cache), also
            passed to tensorflow-datasets. Defaults to `None`.
        seed: Seed of shuffling and augmentation. Defaults to `0`.
        download: Let tensorflow-datasets download missing data.
            Defaults to `True`.
        image_size: ImageNet-style sets only: side of the square crop.
            Defaults to `None` (224).
        normalize: Normalise with the data set's mean and standard
            deviation; `False` gives [0, 1] pixels. Defaults to `True`.

    Returns:
        A `tf.data.Dataset` of `(images, labels)` batches.

    Raises:
        DataError: If the data cannot be found or read; the message lists
            every place looked and how to get the data.
        ConfigurationError: For an unknown name or split, or a bad
            `batch_size` or `limit`.

    Example:

    >>> train = load_dataset("fashion_mnist", "train", batch_size=128)
    >>> test = load_dataset("fashion_mnist", "test")
    >>> model.fit(train, validation_data=test, epochs=10)
    """
    info = dataset_info(name, image_size)
    _, source = _DATASETS[info.name]
    if isinstance(batch_size, bool) or not isinstance(
        batch_size, (int, np.integer)
    ) or batch_size < 1:
        raise ConfigurationError(
            f"batch_size must be a positive integer; received {batch_size!r}."
        )
    _check_limit(limit)
    base, start, stop = _parse_split(info, split)
    training = base == "train"
    shuffle = training if shuffle is None else bool(shuffle)
    augment = training if augment is None else bool(augment)
    flip = info.flip if flip is None else bool(flip)

    if source.kind != "tfds_stream":
        images, labels = _load_raw_arrays(info, source, split, data_dir, download)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        return _array_pipeline(
            images, labels, info, batch_size, shuffle, augment, flip, seed,
            normalize,
        )

    looked = []
    dataset = _tfds_load(
        source, _tfds_split(base, start, stop), data_dir, download,
        shuffle_files=shuffle and limit is None, seed=seed, looked=looked,
    )
    if dataset is None:
        raise _not_found(info, source, split, looked)
    if limit is not None:
        dataset = dataset.take(limit)
    return _stream_pipeline(
        dataset, info, batch_size, shuffle, augment, flip, seed, normalize
    )
