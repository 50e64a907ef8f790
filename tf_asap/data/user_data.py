"""The user's own data: image folders, `.npz` files, any tensorflow-datasets name.

What a Keras project usually keeps on disk is read into memory as arrays,
checked, and fitted to the model that will use it:

- `load_image_folder`: one sub-folder of images per class (the convention of
  `keras.utils.image_dataset_from_directory`: classes are the sub-folder
  names in alphabetical order, labels their indices);
- `load_npz`: arrays `x_train`, `y_train` and optionally `x_val`/`y_val`,
  `x_test`/`y_test`;
- `load_tfds_arrays`: a split of any tensorflow-datasets name;
- `fit_images_to_model`: resize to the model's input and convert channels
  (grayscale <-> RGB, RGBA -> RGB);
- `holdout`: a seeded, disjoint split of indices into training and validation;
- `pixel_scaling` and `batches`: `tf.data` batches scaled as the model expects.

Images are decoded once, at the model's input size, into uint8 arrays: that
keeps the held-out split, shuffling and every pruning round cheap, and bounds
a folder by memory (224x224 RGB is 150 kB an image). Larger collections are
better served as a tensorflow-datasets set.

Every problem raises `DataError` naming the path and how to fix it.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from tf_asap.checks import check_fraction, check_int
from tf_asap.data.tfds_source import dataset_to_arrays, import_tfds
from tf_asap.errors import DataError
from tf_asap.inputs import DEFAULT_BATCH_SIZE

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
"""File types read from image folders (those `tf.io.decode_image` reads)."""

NPZ_SPLITS = {"train": ("x_train", "y_train"), "validation": ("x_val", "y_val"),
              "test": ("x_test", "y_test")}
"""The `.npz` keys of each split."""


@dataclasses.dataclass
class LabelledImages:
    """Images and labels read from disk.

    Attributes:
        images: uint8 (or, from `.npz`, any dtype) array `(N, H, W, C)`.
        labels: int32 array `(N,)`.
        class_names: names of the classes, label `i` is `class_names[i]`
            (folders: the sub-folder names; otherwise `None`).
        source: the path or name read, for messages.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list = None
    source: str = ""


def _class_folders(path):
    if not os.path.isdir(path):
        raise DataError(
            f"'{path}' is not a folder. Pass a folder with one sub-folder of images "
            "per class (e.g. data/cat/*.png, data/dog/*.png)."
        )
    folders = sorted(
        name for name in os.listdir(path)
        if os.path.isdir(os.path.join(path, name)) and not name.startswith(".")
    )
    files = {}
    for name in folders:
        directory = os.path.join(path, name)
        files[name] = sorted(
            os.path.join(root, file)
            for root, _, names in os.walk(directory) for file in names
            if file.lower().endswith(IMAGE_EXTENSIONS)
        )
    files = {name: paths for name, paths in files.items() if paths}
    if not files:
        raise DataError(
            f"'{path}' holds no images in class sub-folders. Put the images of each "
            f"class in a sub-folder named after it ({', '.join(IMAGE_EXTENSIONS)} files)."
        )
    if len(files) == 1:
        only = next(iter(files))
        raise DataError(
            f"'{path}' holds one class only ('{only}'); a classifier needs at least "
            "two. Put the images of each class in its own sub-folder."
        )
    return files


def _decode(path):
    try:
        image = tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
    except (tf.errors.OpError, ValueError) as error:
        raise DataError(
            f"Cannot read the image '{path}': {' '.join(str(error).split())[:200]}. "
            "Remove or replace the file."
        ) from None
    return image.numpy()


def load_image_folder(path, image_size=None):
    """Reads a folder with one sub-folder of images per class.

    Args:
        path: the folder.
        image_size: `(height, width)` every image is resized to. Defaults to
            `None`: the size of the first image (all are resized to it).

    Returns:
        A `LabelledImages` of uint8 images with the images' own channel count.

    Raises:
        DataError: for a missing or empty folder, a single class, an
            unreadable image, or images of different channel counts.

    Example:

    >>> data = load_image_folder("flowers/train", image_size=(64, 64))
    >>> data.class_names[:2], data.images.shape
    (['daisy', 'rose'], (200, 64, 64, 3))
    """
    path = os.fspath(path)
    files = _class_folders(path)
    images, labels, first_of_channels = [], [], {}
    for label, (name, paths) in enumerate(files.items()):
        for file in paths:
            image = _decode(file)
            first_of_channels.setdefault(image.shape[-1], file)
            if image_size is None:
                image_size = image.shape[:2]
            images.append(_resize(image, image_size))
            labels.append(label)
    if len(first_of_channels) > 1:
        examples = "; ".join(f"'{file}' has {count}" for count, file in first_of_channels.items())
        raise DataError(
            f"The images of '{path}' have different channel counts ({examples}). "
            "Convert them all to one mode (all RGB or all grayscale), e.g. with "
            "PIL's Image.convert('RGB')."
        )
    return LabelledImages(
        np.stack(images), np.asarray(labels, np.int32), list(files), path
    )


def _resize(image, size):
    size = tuple(int(side) for side in size)
    if tuple(image.shape[:2]) == size:
        return image
    resized = tf.image.resize(image, size, antialias=True)
    if image.dtype == np.uint8:
        return np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
    return resized.numpy().astype(image.dtype)


def load_npz(path):
    """Reads the splits of an `.npz` file.

    Args:
        path: a file written by `np.savez` with `x_train`, `y_train` and
            optionally `x_val`, `y_val`, `x_test`, `y_test`.

    Returns:
        A dict from split name ("train", "validation", "test") to
        `LabelledImages`, for the splits present.

    Raises:
        DataError: if the file cannot be read, a key is missing, or a split's
            arrays have different lengths.
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise DataError(f"Cannot read '{path}' as an .npz file: {error}.") from None
    splits = {}
    for split, (x_key, y_key) in NPZ_SPLITS.items():
        present = [key in arrays for key in (x_key, y_key)]
        if not any(present) and split != "train":
            continue
        if not all(present):
            missing = x_key if not present[0] else y_key
            raise DataError(
                f"'{path}' has no array '{missing}' (it has {', '.join(sorted(arrays))}). "
                f"Save the {split} split as {x_key} and {y_key}: "
                f"np.savez(path, {x_key}=images, {y_key}=labels, ...)."
            )
        x, y = arrays[x_key], np.asarray(arrays[y_key]).reshape(-1)
        if len(x) != len(y):
            raise DataError(
                f"'{path}': {x_key} holds {len(x)} samples but {y_key} holds {len(y)}; "
                "they must have one label per sample."
            )
        if x.ndim == 3:
            x = x[..., np.newaxis]  # (N, H, W) grayscale
        splits[split] = LabelledImages(x, y.astype(np.int32), None, f"{path}:{x_key}")
    return splits


def load_tfds_arrays(name, split, limit=None, image_size=None, data_dir=None):
    """Reads a split of any tensorflow-datasets data set as arrays.

    Args:
        name: the tensorflow-datasets name (e.g. "beans" or "mnist:3.0.1").
        split: the split, tfds slicing allowed ("train[:80%]").
        limit: keep at most this many examples. Defaults to `None` (all).
        image_size: `(height, width)` images are resized to (needed when they
            differ in size). Defaults to `None`.
        data_dir: passed to `tfds.load`. Defaults to `None`.

    Returns:
        A `LabelledImages`, or `None` when the data set has no such split.

    Raises:
        DataError: when tensorflow-datasets is missing or cannot load it.
    """
    check_int("limit", limit, minimum=1, allow_none=True)
    tfds, known = import_tfds(), None
    if tfds is None:
        raise DataError(
            f"--data tfds:{name} needs tensorflow-datasets: pip install tensorflow-datasets."
        )
    try:
        known = tfds.builder(name, data_dir=data_dir).info.splits
        if known and split.split("[", 1)[0] not in known:
            return None  # without metadata (mock data), every split is tried
        dataset = tfds.load(name, split=split, as_supervised=True, data_dir=data_dir)
    except Exception as error:  # tfds raises many unrelated types (offline, unknown name)
        if not known:
            return None
        raise DataError(
            f"tensorflow-datasets cannot load '{name}' split '{split}': "
            f"{' '.join(str(error).split())[:300]}. Check the name in the tfds catalog, "
            "and run once with internet access to download it."
        ) from None
    if limit is not None:
        dataset = dataset.take(limit)
    if image_size is not None:
        size = tuple(int(side) for side in image_size)
        dataset = dataset.map(
            lambda image, label: (tf.cast(tf.image.resize(image, size, antialias=True), image.dtype), label)
        )
    arrays = dataset_to_arrays(dataset)
    if arrays is None:
        raise DataError(f"tensorflow-datasets '{name}' split '{split}' is empty.")
    images, labels = arrays
    return LabelledImages(images, labels.astype(np.int32), None, f"tfds:{name}[{split}]")


def fit_images_to_model(data, input_shape, num_classes):
    """Resizes and converts `data`'s images to a model's input; checks its labels.

    Args:
        data: a `LabelledImages`.
        input_shape: the model's input shape without the batch axis, channels last.
        num_classes: the number of classes the model predicts.

    Returns:
        `(LabelledImages, notes)`: the fitted data, and sentences saying what
        was changed (for the user).

    Raises:
        DataError: for labels outside `[0, num_classes)`, or channels that
            cannot be converted.
    """
    images, notes = data.images, []
    height, width, channels = (int(side) for side in input_shape)
    if images.ndim != 4:
        raise DataError(
            f"{data.source}: expected images of shape (N, height, width[, channels]); "
            f"received shape {images.shape}."
        )
    have = images.shape[-1]
    if have != channels:
        images = _convert_channels(images, have, channels, data.source)
        notes.append(f"converted {have}-channel images to {channels} channel(s)")
    if tuple(images.shape[1:3]) != (height, width):
        notes.append(f"resized {images.shape[1]}x{images.shape[2]} images to {height}x{width}")
        images = np.stack([_resize(image, (height, width)) for image in images])
    labels = data.labels
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.max() if labels.max() >= num_classes else labels.min())
        names = f" ({len(data.class_names)} class folders)" if data.class_names else ""
        raise DataError(
            f"{data.source}: label {bad} is outside the model's {num_classes} classes "
            f"(0..{num_classes - 1}){names}. Pass data with the classes the model was "
            "trained on, or a model with as many outputs as classes."
        )
    return dataclasses.replace(data, images=images), notes


def _convert_channels(images, have, want, source):
    if have == 4 and want in (1, 3):
        images, have = images[..., :3], 3  # alpha dropped
    if have == want:
        return images
    if have == 1 and want == 3:
        return np.repeat(images, 3, axis=-1)
    if have == 3 and want == 1:
        gray = tf.image.rgb_to_grayscale(images.astype(np.float32)).numpy()
        return np.round(gray).astype(images.dtype) if images.dtype == np.uint8 else gray
    raise DataError(
        f"{source}: images with {have} channels cannot feed a model that takes {want}. "
        "Convert the images, or use a model whose input matches them."
    )


def holdout(count, fraction, seed=0):
    """Splits `range(count)` into seeded, disjoint training and validation indices.

    Args:
        count: the number of samples.
        fraction: the share held out for validation, in (0, 1).
        seed: the permutation's seed. Defaults to `0`.

    Returns:
        `(train_indices, validation_indices)`, each sorted.
    """
    fraction = check_fraction("validation_split", fraction, allow_zero=False, allow_one=False)
    held = max(1, int(round(count * fraction)))
    if held >= count:
        raise DataError(
            f"validation_split={fraction:g} of {count} samples leaves none to train on. "
            "Pass more data or a smaller split."
        )
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[held:]), np.sort(order[:held])


def has_input_scaling(model):
    """Whether the model's first layer rescales or normalises its input itself."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    return bool(layers) and isinstance(
        layers[0], (keras.layers.Rescaling, keras.layers.Normalization)
    )


def pixel_scaling(model, images):
    """The factor images are multiplied by before they reach `model`, and why.

    Preprocessing stays the model's business: a model that starts with
    `Rescaling` or `Normalization` gets raw pixels; otherwise uint8 pixels are
    scaled to [0, 1] and other arrays go in as they are.

    Returns:
        `(factor, sentence)`.
    """
    first = model.layers[1].__class__.__name__ if len(model.layers) > 1 else ""
    if has_input_scaling(model):
        return 1.0, f"raw pixel values (the model starts with {first})"
    if images.dtype == np.uint8:
        return 1.0 / 255.0, "pixels scaled to [0, 1] (the model has no Rescaling layer)"
    return 1.0, f"{images.dtype} arrays as they are"


def batches(data, batch_size=DEFAULT_BATCH_SIZE, shuffle=False, seed=0, scale=1.0):
    """A batched `tf.data` pipeline of `(images * scale, labels)` over in-memory arrays."""
    images, labels = tf.constant(data.images), tf.constant(data.labels)
    count = int(images.shape[0])
    dataset = tf.data.Dataset.range(count)
    if shuffle:
        dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)

    def take(indices):
        return tf.cast(tf.gather(images, indices), tf.float32) * scale, tf.gather(labels, indices)

    dataset = dataset.batch(batch_size).map(take, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
