"""Loading through tensorflow-datasets (optional), and split names.

`tensorflow_datasets` is imported only when a data set needs it, so
Fashion-MNIST from IDX files works without it.
"""

import re

import numpy as np

from tf_asap.errors import ConfigurationError, DataError


def import_tfds():
    """`tensorflow_datasets`, or None when it is not installed."""
    try:
        import tensorflow_datasets
    except ImportError:
        return None
    return tensorflow_datasets


def tfds_load(source, split, data_dir, download, shuffle_files, seed, looked):
    """A tfds dataset of (image, label), or None (reason added to looked)."""
    tfds = import_tfds()
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


def dataset_to_arrays(dataset):
    images, labels = [], []
    for image_batch, label_batch in dataset.batch(4096).as_numpy_iterator():
        images.append(image_batch)
        labels.append(label_batch)
    if not images:
        return None
    return np.concatenate(images), np.concatenate(labels)


def not_found(info, source, split, looked):
    places = "\n".join(f"  - {place}" for place in looked)
    return DataError(
        f"Cannot find the '{split}' split of data set '{info.name}'. "
        f"Looked in:\n{places}\nHow to get it: {source.how_to_get}"
    )


_SPLIT_PATTERN = re.compile(
    r"^(?P<base>\w+)(?:\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$"
)


def parse_split(info, split):
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


def slice_bound(bound, size):
    if bound is None:
        return None
    if bound.endswith("%"):
        return int(round(size * int(bound[:-1]) / 100))
    return int(bound)


def tfds_split(base, start, stop):
    if start is None and stop is None:
        return base
    return f"{base}[{start or ''}:{stop or ''}]"

