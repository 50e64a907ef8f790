"""Training helpers of the rounds: data as batches, held-out splits, compiling, epochs.

Shared by `train_baseline` and `RoundController`:

- `labelled_batches` and `training_batches` turn arrays, datasets and
  generators into batched `(x, y)` datasets (`tf_asap.inputs.as_batches`);
- `split_validation` holds a seeded part of the training data out for the
  policy's decisions, disjoint from what is retrained on;
- `compile_model`, `fresh_optimizer`, `default_optimizer` compile a model with
  the paper's recipe or the user's optimizer;
- `check_epochs`, `steps_per_epoch` check and measure the training length.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tf_asap import defaults
from tf_asap.checks import check_fraction, check_int
from tf_asap.errors import ConfigurationError, DataError
from tf_asap.inputs import DEFAULT_BATCH_SIZE, as_batches

# Imported here, not lazily: it registers the recipe's optimizer and schedule
# with Keras, which the `.keras` files of runs reference when loaded.
from tf_asap.recipe import outputs_logits, paper_optimizer

__all__ = [
    "RoundData",
    "DEFAULT_CALIBRATION_SAMPLES",
    "DEFAULT_REWIND_FRACTION",
    "DEFAULT_VALIDATION_SPLIT",
    "check_epochs",
    "compile_model",
    "default_optimizer",
    "fresh_optimizer",
    "labelled_batches",
    "prepare_round_data",
    "require_data",
    "split_validation",
    "steps_per_epoch",
    "training_batches",
]

DEFAULT_REWIND_FRACTION = 0.6
"""Rewind epoch as a fraction of training (appendix A.1: "roughly 60%")."""

DEFAULT_CALIBRATION_SAMPLES = defaults.CALIBRATION_SAMPLES
DEFAULT_VALIDATION_SPLIT = defaults.VALIDATION_SPLIT


def check_epochs(epochs, rewind_epoch):
    """Returns `(epochs, rewind_epoch)` as ints, `rewind_epoch` defaulting to 60%.

    Raises:
        ConfigurationError: For `epochs < 1` or a rewind epoch outside `[0, epochs)`.
    """
    epochs = check_int(
        "epochs", epochs, minimum=1,
        fix="It is the length of one full training, T in Algorithm 1.",
    )
    if rewind_epoch is None:
        rewind_epoch = min(epochs - 1, max(0, round(DEFAULT_REWIND_FRACTION * epochs)))
    rewind_epoch = check_int(
        "rewind_epoch", rewind_epoch, minimum=0, maximum=epochs - 1,
        fix=f"It is an epoch before the end of the {epochs}-epoch training, so that "
        "a round retrains for epochs - rewind_epoch >= 1 epochs. Omit it for the "
        "paper's 60% of training.",
    )
    return epochs, rewind_epoch


def check_verbose(verbose):
    """Returns `verbose` as an int `>= 0` (`True`/`False` count as 1/0)."""
    if isinstance(verbose, bool):
        return int(verbose)
    return check_int("verbose", verbose, minimum=0, fix="Pass 0, 1 or 2.")


def require_data(data, name, purpose):
    """Raises `ConfigurationError` when `data` is `None`, saying what it is for."""
    if data is None:
        raise ConfigurationError(
            f"{name} is missing: {purpose}. Pass arrays (x, y), a tf.data.Dataset "
            "or a generator."
        )


def labelled_batches(data, model, batch_size=None, name="data"):
    """`data` as a batched dataset of `(x, y[, sample_weight])`, for fit and evaluate.

    Raises:
        DataError: If `data` cannot be read, does not fit the model, or has
            no labels.
    """
    dataset = as_batches(data, model, batch_size=batch_size, keep_labels=True)
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise DataError(
            f"{name} must have labels: pass (x, y) arrays or a dataset of (x, y) "
            "elements; received inputs only."
        )
    return dataset


def _is_arrays(data):
    return isinstance(data, (tuple, list)) and all(
        hasattr(part, "shape") for part in tf.nest.flatten(data)
    )


def training_batches(data, model, batch_size, name, seed=None):
    """Labelled training batches, reshuffled every epoch when `data` is arrays.

    A `tf.data.Dataset` or a generator is used as given (it is expected to
    shuffle itself, as `keras.Model.fit` expects too); arrays are shuffled
    here, as `fit` would shuffle them, with the op seed `seed` (`None`: from
    the global seed only).
    """
    dataset = labelled_batches(data, model, batch_size, name)
    if _is_arrays(data):
        parts = tuple(data)
        count = int(np.shape(tf.nest.flatten(parts)[0])[0])
        dataset = (
            tf.data.Dataset.from_tensor_slices(parts)
            .shuffle(count, seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size or DEFAULT_BATCH_SIZE)
            .prefetch(tf.data.AUTOTUNE)
        )
    return dataset


def split_validation(data, validation_split, seed=0):
    """Holds a seeded share of training data out: `(train part, validation part)`.

    The two parts are disjoint, so the policy decides on data the rounds never
    retrain on.

    - Arrays `(x, y[, w])`: a permutation seeded with `seed` chooses the
      validation samples; the rest, in their original order, is the training
      part.
    - A `tf.data.Dataset` of known, finite size: its first
      `round(validation_split x size)` elements (batches, if it is batched)
      are the validation part, `skip` of them the training part. A dataset
      that reshuffles itself on every iteration would mix the two, so shuffle
      after splitting (or pass `validation_data`).

    Args:
        data: Labelled training data.
        validation_split: The share held out, in `(0, 1)`.
        seed: Seed of the permutation of arrays. Defaults to `0`.

    Returns:
        `(train_data, validation_data)` of the same kind as `data`.

    Raises:
        ConfigurationError: If `validation_split` is not in `(0, 1)`.
        DataError: If the size of `data` is unknown or infinite, or too small
            to hold out one element and keep one.
    """
    percent = isinstance(validation_split, (int, float)) and 1 < validation_split <= 100
    fraction = check_fraction(
        "validation_split", validation_split, allow_zero=False, allow_one=False,
        # Empty for percent-like values, so the validator's percent hint shows.
        fix="" if percent else "Pass a share such as 0.1, or pass validation_data.",
    )
    if _is_arrays(data):
        parts = tuple(data)
        count = int(np.shape(tf.nest.flatten(parts)[0])[0])
        held = _held_out_count(fraction, count, "samples")
        order = np.random.default_rng(seed).permutation(count)
        validation_index = np.sort(order[:held])
        train_index = np.sort(order[held:])
        return _rows(parts, train_index), _rows(parts, validation_index)
    if isinstance(data, tf.data.Dataset):
        size = int(data.cardinality())
        if size < 0:
            raise DataError(
                "validation_split cannot hold out a share of a tf.data.Dataset of "
                f"{'infinite' if size == -1 else 'unknown'} size. Pass "
                "validation_data, or a dataset of known size (for example with "
                "dataset.apply(tf.data.experimental.assert_cardinality(n)))."
            )
        held = _held_out_count(fraction, size, "elements")
        return data.skip(held), data.take(held)
    raise DataError(
        f"validation_split cannot split training data of type {type(data).__name__} "
        "(only arrays and tf.data.Dataset). Pass validation_data."
    )


@dataclasses.dataclass
class RoundData:
    """The batched data of a pruning run.

    Attributes:
        train: Labelled training batches (reshuffled per epoch for arrays).
        validation: Labelled held-out batches every decision is made on.
        test: Labelled test batches, only reported; `None` without test data.
        calibration: What the calibration set is chosen from
            (`tf_asap.rounds.calibration.pin_calibration`).
        calibration_samples: How many samples it keeps (`None`: all).
        steps_per_epoch: Batches in one pass over `train`.
        validation_source: `"given"` or how the split was made, for the run
            settings.
        train_arrays: The training part as arrays `(x, y[, w])`, or `None`
            when the training data is not arrays (for cached teacher outputs).
        batch_size: The batch size of array data.
        seed: The seed of the split and of the shuffling of arrays.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset | None
    calibration: object
    calibration_samples: int | None
    steps_per_epoch: int
    validation_source: str
    train_arrays: tuple | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = 0


def prepare_round_data(
    model, train_data, *, validation_data=None, validation_split=DEFAULT_VALIDATION_SPLIT,
    seed=0, test_data=None, calibration_data=None, batch_size=None,
):
    """Batches a run's data, holding a validation split out when none is given.

    Args:
        model: The prunable model the data must fit.
        train_data: Labelled training data.
        validation_data: Labelled held-out data. Defaults to `None`: a
            `split_validation` of `train_data`.
        validation_split: The share held out then. Defaults to `0.1`.
        seed: Seed of the split. Defaults to `0`.
        test_data: Labelled data that is only reported. Defaults to `None`.
        calibration_data: Data the filters are scored on. Defaults to `None`:
            2048 samples of the (remaining) training data, chosen once per
            run (`tf_asap.rounds.calibration`).
        batch_size: Batch size for arrays. Defaults to `None` (128).

    Returns:
        A `RoundData`.

    Raises:
        ConfigurationError: Without validation data and without a split.
        DataError: For data that cannot be read, split or batched.
    """
    if validation_data is None:
        if validation_split is None or validation_split == 0:
            raise ConfigurationError(
                f"validation_data is missing and validation_split is {validation_split!r}: "
                "every round is measured on held-out data, and the policy decides on "
                "it. Pass validation_data=(x_val, y_val), or a validation_split such as 0.1."
            )
        train_data, validation_data = split_validation(train_data, validation_split, seed)
        source = f"split {validation_split:g} of train_data, seed {seed}"
    else:
        source = "given"
    train = training_batches(train_data, model, batch_size, "train_data", seed=seed)
    calibration_samples = None
    if calibration_data is None:
        # Chosen once per run by tf_asap.rounds.calibration (seeded), never
        # "the first N" of a pipeline that may shuffle or augment.
        calibration_data, calibration_samples = train_data, DEFAULT_CALIBRATION_SAMPLES
    return RoundData(
        train=train,
        validation=labelled_batches(validation_data, model, batch_size, "validation_data"),
        test=(
            None if test_data is None
            else labelled_batches(test_data, model, batch_size, "test_data")
        ),
        calibration=calibration_data,
        calibration_samples=calibration_samples,
        steps_per_epoch=steps_per_epoch(train, "train_data"),
        validation_source=source,
        train_arrays=tuple(train_data) if _is_arrays(train_data) else None,
        batch_size=batch_size or DEFAULT_BATCH_SIZE,
        seed=seed,
    )


def _rows(parts, index):
    return tuple(tf.nest.map_structure(lambda array: np.asarray(array)[index], parts))


def _held_out_count(fraction, count, unit):
    held = int(round(fraction * count))
    if held < 1 or held >= count:
        raise DataError(
            f"validation_split={fraction:g} of {count} {unit} leaves "
            f"{'no validation' if held < 1 else 'no training'} data. Pass more data, "
            "another validation_split, or validation_data."
        )
    return held


def steps_per_epoch(dataset, name):
    """Batches in one pass over `dataset`, counted once if its size is unknown.

    Raises:
        DataError: If the dataset repeats forever or is empty.
    """
    steps = int(dataset.cardinality())
    if steps == -1:  # tf.data.INFINITE_CARDINALITY
        raise DataError(
            f"{name} repeats forever; pass a finite data set (one epoch), "
            "since rounds retrain for whole epochs."
        )
    if steps < 0:  # unknown: count once
        steps = sum(1 for _ in dataset)
    if steps == 0:
        raise DataError(f"{name} holds no batches.")
    return steps


def fresh_optimizer(optimizer):
    """A new, unbuilt optimizer with the same configuration (schedule included).

    An optimizer that already trained another model refuses new variables.
    """
    return keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))


def compile_model(model, optimizer, loss, metric="accuracy"):
    """Compiles `model` with `optimizer`, `loss` and the policy's `metric`.

    `loss=None` is sparse categorical cross-entropy, from logits unless the
    model ends in a softmax.
    """
    if loss is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=outputs_logits(model))
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric])


def default_optimizer(epochs, steps):
    """The paper's recipe: `tf_asap.recipe.paper_optimizer(epochs, steps)`."""
    return paper_optimizer(epochs, steps)
