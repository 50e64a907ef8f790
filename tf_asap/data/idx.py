"""Reading MNIST-style IDX files and finding them on disk.

Fashion-MNIST and MNIST are read directly from their IDX files (gzipped or
raw), searched in the `data_dir` argument, then `$TF_ASAP_DATA_DIR`, then the
Debian/Ubuntu package location, then Keras' download cache.
"""

import gzip
import os
import zlib

import numpy as np

from tf_asap.data.catalogue import DATA_DIR_ENV
from tf_asap.errors import DataError

SYSTEM_DATA_DIRS = ("/usr/share/datasets",)
"""Where Debian's `dataset-*` packages install their files."""

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


def read_idx_split(info, source, split, data_dir, looked):
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

