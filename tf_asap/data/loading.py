"""`load_dataset` and `load_arrays`: named data sets, ready for a model."""

import numpy as np

from tf_asap.data.catalogue import DATASETS, dataset_info
from tf_asap.data.idx import read_idx_split
from tf_asap.data.pipelines import array_pipeline, normalise_numpy, stream_pipeline
from tf_asap.data.user_data import holdout
from tf_asap.data.tfds_source import (
    dataset_to_arrays,
    not_found,
    parse_split,
    slice_bound,
    tfds_load,
    tfds_split,
)
from tf_asap.checks import check_choice, check_int
from tf_asap.errors import ConfigurationError
from tf_asap.inputs import DEFAULT_BATCH_SIZE


def _load_raw_arrays(info, source, split, data_dir, download):
    """uint8 images (N, H, W, C) and int32 labels of a fixed-size data set."""
    base, start, stop = parse_split(info, split)
    looked = []
    arrays = None
    if source.kind == "idx":
        arrays = read_idx_split(info, source, base, data_dir, looked)
        if arrays is not None:
            images, labels = arrays
            size = len(images)
            window = slice(slice_bound(start, size), slice_bound(stop, size))
            arrays = images[window], labels[window]
    if arrays is None:
        dataset = tfds_load(
            source, tfds_split(base, start, stop), data_dir, download,
            shuffle_files=False, seed=0, looked=looked,
        )
        if dataset is not None:
            arrays = dataset_to_arrays(dataset)
            if arrays is None:
                looked.append(
                    f"tensorflow-datasets '{source.tfds_name}' (split is empty)"
                )
    if arrays is None:
        raise not_found(info, source, split, looked)
    images, labels = arrays
    return images, labels.astype(np.int32)



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
    _, source = DATASETS[info.name]
    check_int("limit", limit, minimum=1, allow_none=True)
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
        images, labels = dataset_to_arrays(dataset.unbatch())
        return images, labels.astype(np.int32)
    images, labels = _load_raw_arrays(info, source, split, data_dir, download)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if normalize:
        return normalise_numpy(images, info), labels
    return images.copy(), labels



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
    validation_split=None,
    subset=None,
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
        validation_split: Fraction of the split held out for validation,
            chosen by a permutation seeded with `seed` (as in
            `keras.utils.image_dataset_from_directory`); with `subset`.
            Applied before `limit`, so the held-out images do not depend on
            it. In-memory data sets only. Defaults to `None` (no hold-out).
        subset: "training" (the rest) or "validation" (the held-out
            images), with `validation_split`. Defaults to `None`.

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
    _, source = DATASETS[info.name]
    check_int("batch_size", batch_size, minimum=1)
    check_int("limit", limit, minimum=1, allow_none=True)
    base, start, stop = parse_split(info, split)
    training = base == "train"
    shuffle = training if shuffle is None else bool(shuffle)
    augment = training if augment is None else bool(augment)
    flip = info.flip if flip is None else bool(flip)

    if (validation_split is None) != (subset is None):
        raise ConfigurationError(
            f"validation_split={validation_split!r} and subset={subset!r} go together: "
            "pass both (subset='training' or 'validation') or neither."
        )
    if subset is not None:
        check_choice("subset", subset, ("training", "validation"))
        if source.kind == "tfds_stream":
            raise ConfigurationError(
                f"validation_split holds out images of in-memory data sets; "
                f"'{info.name}' is streamed. Slice its split instead, e.g. "
                "split='train[:90%]' and split='train[90%:]'."
            )
    if source.kind != "tfds_stream":
        images, labels = _load_raw_arrays(info, source, split, data_dir, download)
        if subset is not None:
            kept = holdout(len(labels), validation_split, seed)[subset == "validation"]
            images, labels = images[kept], labels[kept]
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        return array_pipeline(
            images, labels, info, batch_size, shuffle, augment, flip, seed,
            normalize,
        )

    looked = []
    dataset = tfds_load(
        source, tfds_split(base, start, stop), data_dir, download,
        shuffle_files=shuffle and limit is None, seed=seed, looked=looked,
    )
    if dataset is None:
        raise not_found(info, source, split, looked)
    if limit is not None:
        dataset = dataset.take(limit)
    return stream_pipeline(
        dataset, info, batch_size, shuffle, augment, flip, seed, normalize
    )
