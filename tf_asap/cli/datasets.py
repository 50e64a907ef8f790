"""The data of a command: `--data`, `--validation-split`, `--test-data`, for one model.

`--data` names where the data is:

- a folder with one sub-folder of images per class;
- a `.npz` file with `x_train`, `y_train` (optionally `x_val`/`y_val`,
  `x_test`/`y_test`);
- `tfds:NAME` for any tensorflow-datasets name (its "train", "validation"
  and "test" splits where present);
- a name of `tf_asap.data`'s catalogue (`fashion_mnist`, `cifar10`, ...),
  loaded with the paper's preprocessing and augmentation.

Decisions never see the test data: validation is the data's own validation
split where it has one, else a seeded `--validation-split` of the training
data, disjoint from what is trained on; the test split (or `--test-data`) is
only evaluated and reported.

TensorFlow is imported by the functions that load data, not at import time
(command-line start-up speed).
"""

import dataclasses
import os

from tf_asap import defaults
from tf_asap.cli.flags import UsageError

TFDS_PREFIX = "tfds:"


@dataclasses.dataclass
class CommandData:
    """Everything a command needs from its data, ready for one model.

    Attributes:
        description: what the data is, for the user ("fashion_mnist",
            "folder 'pics'").
        notes: sentences saying how images were fitted to the model.
        train: batched, shuffled training `tf.data.Dataset` (validation
            images excluded), or `None` when not asked for.
        validation: batched validation `tf.data.Dataset`, or `None`.
        validation_label: where validation comes from, for the user.
        calibration: `(x, y)` arrays of training images (filter scoring,
            int8 calibration), or `None`.
        test: `(x, y)` arrays of the test data, or `None` when there is none.
        scale: the factor pixels were multiplied by (1 for catalogue sets,
            which are normalised instead).
    """

    description: str
    notes: list
    train: object = None
    validation: object = None
    validation_label: str = ""
    calibration: tuple = None
    test: tuple = None
    scale: float = 1.0


def kind_of(spec):
    """("tfds", name), ("npz", path), ("folder", path) or ("named", name) of `--data`."""
    if spec.startswith(TFDS_PREFIX):
        name = spec[len(TFDS_PREFIX):]
        if not name:
            raise UsageError("--data tfds:NAME needs a name, e.g. tfds:beans.")
        return "tfds", name
    if spec.lower().endswith(".npz"):
        if not os.path.isfile(spec):
            raise UsageError(f"--data: the file '{spec}' does not exist. Check the path.")
        return "npz", spec
    if os.path.isdir(spec):
        return "folder", spec
    from tf_asap.data import catalogue

    names = catalogue.available_datasets()
    try:
        return "named", catalogue.dataset_info(spec).name
    except ValueError:
        raise UsageError(
            f"--data {spec}: not a folder, a .npz file or a known data set. Pass a "
            f"folder of class sub-folders, FILE.npz, tfds:NAME, or one of {', '.join(names)}."
        ) from None


def _model_classes(model):
    outputs = model.outputs[0].shape[-1]
    return 2 if outputs == 1 else int(outputs)


def check_named_matches(model, name, flag="--data"):
    """Raises a usage error when catalogue set `name` does not fit `model`."""
    from tf_asap.data import dataset_info

    info = dataset_info(name)
    expected = tuple(model.inputs[0].shape[1:])
    if tuple(info.input_shape) != expected:
        raise UsageError(
            f"{flag} {info.name} gives images of shape {info.input_shape} but model "
            f"'{model.name}' expects {expected}. Pass the data the model was trained on."
        )
    if _model_classes(model) != info.num_classes:
        raise UsageError(
            f"{flag} {info.name} has {info.num_classes} classes but model '{model.name}' "
            f"has {_model_classes(model)} outputs. Pass the data the model was trained on."
        )
    return info


def _user_splits(kind, where, image_size):
    """The splits ("train", "validation", "test") of a folder, `.npz` or tfds set."""
    from tf_asap import data

    if kind == "folder":
        return {"train": data.load_image_folder(where, image_size)}
    if kind == "npz":
        return data.load_npz(where)
    splits = {}
    for split in ("train", "validation", "test"):
        loaded = data.load_tfds_arrays(where, split, image_size=image_size)
        if loaded is not None:
            splits[split] = loaded
    if "train" not in splits:
        raise UsageError(f"--data tfds:{where} has no 'train' split.")
    return splits


def data_shape(spec, image_size=None):
    """What a new model needs for `--data` (for `train`).

    Args:
        spec: the `--data` value.
        image_size: `(height, width)` images are resized to. Defaults to
            `None`: the data's own size (a folder's first image).

    Returns:
        `(input_shape, num_classes, loaded)`: `loaded` holds the splits read
        to find out, for `load_for_model` to reuse (`None` for named sets).
    """
    kind, where = kind_of(spec)
    if kind == "named":
        from tf_asap.data import dataset_info

        info = dataset_info(where)
        return tuple(info.input_shape), info.num_classes, None
    loaded = _user_splits(kind, where, image_size)
    train = loaded["train"]
    classes = len(train.class_names) if train.class_names else int(train.labels.max()) + 1
    height, width, channels = (int(side) for side in train.images.shape[1:])
    if image_size is not None:  # .npz arrays are resized to it when fitted to the model
        height, width = image_size
    return (height, width, channels), max(classes, 2), loaded


def load_for_model(model, spec, settings, need_train=True, loaded=None):
    """The `CommandData` of `--data spec` for `model`.

    Args:
        model: the Keras model the data feeds.
        spec: the `--data` value.
        settings: a dict with `validation_split`, `test_data`, `seed`,
            `batch_size`, `limit`, `validation_limit`, `test_limit` and
            `calibration_samples` (each may be `None`).
        need_train: whether to build the training and validation pipelines.
            Defaults to `True`.
        loaded: the splits `data_shape` read, reused instead of reading the
            files again. Defaults to `None`.
    """
    kind, where = kind_of(spec)
    if kind == "named" and settings.get("test_data"):
        raise UsageError(
            f"--test-data is for folders, .npz files and tfds data; {where} has its own "
            "test split. Omit --test-data."
        )
    split = settings.get("validation_split") or defaults.VALIDATION_SPLIT
    seed = settings.get("seed") or 0
    if kind == "named":
        result = _named(model, where, split, seed, settings, need_train)
    else:
        result = _arrays(model, kind, where, split, seed, settings, need_train, loaded)
    if settings.get("test_data"):
        result.test = _folder_test(model, settings["test_data"], result, settings)
    return result


# Test images evaluated by default from a streamed (ImageNet-style) set, whose
# split does not fit in memory.
STREAMED_TEST_IMAGES = 2000


def _named(model, name, split, seed, settings, need_train):
    from tf_asap import data
    from tf_asap.data import catalogue

    info = check_named_matches(model, name)
    batch_size = settings.get("batch_size") or data.DEFAULT_BATCH_SIZE
    if catalogue.is_streamed(info):
        # Streamed sets cannot be permuted: tfds slicing holds out the end of the split.
        percent = max(1, int(round(100 * split)))
        splits = {"subset": None, "validation_split": None}
        train_split, validation_split = f"train[:{100 - percent}%]", f"train[{100 - percent}%:]"
        label = f"the last {percent}% of the training split (a streamed set: sliced, not shuffled)"
        test_limit = settings.get("test_limit") or STREAMED_TEST_IMAGES
    else:
        splits = {"validation_split": split, "seed": seed}
        train_split = validation_split = "train"
        label = f"{100 * split:g}% of the training split, held out with seed {seed}"
        test_limit = settings.get("test_limit")
    training = dict(splits, subset="training") if splits["validation_split"] else {}
    held_out = dict(splits, subset="validation") if splits["validation_split"] else {}
    result = CommandData(
        name, [f"images normalised with {name}'s mean and standard deviation (the paper's preprocessing)"],
        validation_label=label,
    )
    if need_train:
        result.train = data.load_dataset(
            name, train_split, batch_size=batch_size, limit=settings.get("limit"), **training,
        )
        result.validation = data.load_dataset(
            name, validation_split, batch_size=batch_size, shuffle=False, augment=False,
            limit=settings.get("validation_limit"), **held_out,
        )
    samples = settings.get("calibration_samples")
    if samples:
        calibration = data.load_dataset(
            name, train_split, batch_size=samples, shuffle=False, augment=False, limit=samples,
            **training,
        )
        result.calibration = tuple(part.numpy() for part in next(iter(calibration)))
    result.test = data.load_arrays(name, "test", limit=test_limit)
    return result


def _arrays(model, kind, where, split, seed, settings, need_train, loaded):
    from tf_asap import data

    shape = tuple(int(side) for side in model.inputs[0].shape[1:])
    classes = _model_classes(model)
    splits = dict(loaded) if loaded else _user_splits(kind, where, shape[:2])
    notes = []
    for name in list(splits):
        splits[name], fitted = data.fit_images_to_model(splits[name], shape, classes)
        notes.extend(note for note in fitted if note not in notes)
    train = splits["train"]
    scale, scaling = data.pixel_scaling(model, train.images)
    notes.insert(0, scaling)
    description = {"folder": f"folder '{where}'", "npz": f"file '{where}'"}.get(kind, f"tfds:{where}")
    if "validation" in splits:
        validation = splits["validation"]
        label = "the data's own validation split"
    else:
        kept, held = data.holdout(len(train.labels), split, seed)
        validation = _subset(train, held)
        train = _subset(train, kept)
        label = f"{100 * split:g}% of the training data, held out with seed {seed}"
    result = CommandData(description, notes, validation_label=label)
    batch_size = settings.get("batch_size") or data.DEFAULT_BATCH_SIZE
    if need_train:
        limited = _subset(train, slice(0, settings.get("limit")))
        result.train = data.batches(limited, batch_size, shuffle=True, seed=seed, scale=scale)
        result.validation = data.batches(
            _subset(validation, slice(0, settings.get("validation_limit"))), batch_size, scale=scale
        )
    samples = settings.get("calibration_samples")
    if samples:
        result.calibration = (train.images[:samples] * scale).astype("float32"), train.labels[:samples]
    if "test" in splits:
        test = _subset(splits["test"], slice(0, settings.get("test_limit")))
        result.test = (test.images * scale).astype("float32"), test.labels
    result.scale = scale
    return result


def _subset(images, index):
    return dataclasses.replace(images, images=images.images[index], labels=images.labels[index])


def _folder_test(model, path, result, settings):
    from tf_asap import data

    if not os.path.isdir(path):
        raise UsageError(f"--test-data: '{path}' is not a folder of class sub-folders.")
    shape = tuple(int(side) for side in model.inputs[0].shape[1:])
    test = data.load_image_folder(path, shape[:2])
    test, _ = data.fit_images_to_model(test, shape, _model_classes(model))
    test = _subset(test, slice(0, settings.get("test_limit")))
    scale, _ = data.pixel_scaling(model, test.images)
    return (test.images * scale).astype("float32"), test.labels



def accuracy(model, arrays, batch_size=256):
    """Top-1 accuracy of `model` on `(x, y)` arrays."""
    import numpy as np

    x, y = arrays
    predictions = model.predict(x, batch_size=batch_size, verbose=0)
    if predictions.shape[-1] == 1:  # one sigmoid output: two classes
        return float(np.mean((predictions[..., 0] > 0.5).astype(y.dtype) == y))
    return float(np.mean(np.argmax(predictions, axis=-1) == y))


def default_learning_rate(input_shape):
    """The recipe's advice for short CPU runs of 28x28 models; the paper's 0.1 elsewhere."""
    from tf_asap import recipe

    return 0.05 if tuple(input_shape[:2]) == (28, 28) else recipe.PAPER_LEARNING_RATE
