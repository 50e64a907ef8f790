"""The calibration set of a pruning run: chosen once, stored, re-used on resume.

Filters are scored on calibration data every round (Algorithm 1, line 5),
and the scores of different rounds are only comparable when they are measured
on the same samples. "The first N samples of the training data" is not a
fixed set when the training data is a shuffled, augmented or sharded
`tf.data` pipeline: every pass yields other samples. So a run chooses its
calibration set once:

- from arrays, `samples` rows chosen by a permutation seeded with `seed`
  (all rows, in order, when `samples` is `None`);
- from a `tf.data.Dataset`, a generator or a function returning one, the
  first `samples` samples of *one* pass (all of one pass when `samples` is
  `None`; a dataset that repeats forever then has no end, which is an error);

and stores it as `calibration.npz` in the run directory. A resumed run reads
that file instead of choosing again, so it scores on exactly the same samples
whatever the pipeline does. Only the model inputs are kept (labels are never
used for scoring).
"""

import io
import os

import numpy as np
import tensorflow as tf

from tf_asap.checks import check_int
from tf_asap.errors import DataError, RunDirectoryError
from tf_asap.files import atomic_write_bytes
from tf_asap.inputs import as_arrays, as_batches

__all__ = ["choose_calibration", "pin_calibration"]

_POSITION = "input_"
_NAMED = "named_input:"


def _is_arrays(data):
    """NumPy data held in memory: an array, or a tuple, list or dict of them."""
    if not isinstance(data, (np.ndarray, tuple, list, dict)):
        return False
    parts = tf.nest.flatten(data)
    return bool(parts) and all(isinstance(part, np.ndarray) for part in parts)


def _sample_count(data):
    return int(np.shape(tf.nest.flatten(data)[0])[0])


def choose_calibration(data, model, samples=None, seed=0):
    """Chooses the calibration inputs of a run (see the module docstring).

    Args:
        data: Arrays `x` or `(x, y)`, a `tf.data.Dataset` (batched or not), a
            generator or a function returning one. Labels are dropped.
        model: The model the inputs are for (it tells single samples from
            batches; see `tf_asap.inputs.as_batches`).
        samples: How many samples to keep. Defaults to `None`: all of them
            (one pass of a dataset).
        seed: Seed of the choice among arrays. Defaults to `0`.

    Returns:
        The inputs `x` as NumPy arrays (one array, or a tuple or dict of
        arrays for a model with several inputs).

    Raises:
        DataError: If `data` repeats forever and `samples` is `None`, holds no
            samples, or does not fit the model.
        ConfigurationError: If `samples` is not a positive integer.
    """
    samples = check_int("samples", samples, minimum=1, allow_none=True)
    if isinstance(data, tf.data.Dataset) and samples is None:
        if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise DataError(
                "The calibration data is a tf.data.Dataset that repeats forever, and no "
                "sample count was given, so choosing it would never end. Pass a finite "
                "dataset (e.g. dataset.take(2048)) or the number of calibration samples."
            )
    if _is_arrays(data):
        total = _sample_count(data)
        if samples is not None and samples < total:
            rows = np.sort(np.random.default_rng(seed).permutation(total)[:samples])
            data = tf.nest.map_structure(lambda part: np.asarray(part)[rows], data)
    x, _ = as_arrays(data, model, limit=samples)
    return x


def _save(path, x):
    """Writes the inputs: one array per model input, named by position or by dict key."""
    if isinstance(x, dict):
        arrays = {f"{_NAMED}{name}": np.asarray(part) for name, part in x.items()}
    else:
        parts = tf.nest.flatten(x)
        arrays = {f"{_POSITION}{index}": np.asarray(part) for index, part in enumerate(parts)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _load(path):
    """Reads what `_save` wrote, in the same structure."""
    try:
        with np.load(path) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError) as error:
        raise RunDirectoryError(
            f"Cannot read the calibration set '{path}' ({error}). Delete it to choose a "
            "new one (later rounds then score other samples), or use a new run_dir."
        ) from error
    if any(key.startswith(_NAMED) for key in arrays):
        return {key[len(_NAMED):]: value for key, value in arrays.items()}
    parts = [arrays[f"{_POSITION}{index}"] for index in range(len(arrays))]
    return parts[0] if len(parts) == 1 else tuple(parts)


def pin_calibration(path, data, model, samples=None, seed=0, batch_size=None):
    """The run's calibration batches: read from `path`, or chosen and saved there.

    Args:
        path: The run directory's `calibration.npz`.
        data: Where to choose from (see `choose_calibration`).
        model: The model the inputs are for.
        samples: How many samples. Defaults to `None`: all.
        seed: Seed of the choice among arrays. Defaults to `0`.
        batch_size: Batch size of the returned dataset. Defaults to `None`
            (128).

    Returns:
        A batched `tf.data.Dataset` of the calibration inputs.

    Raises:
        DataError: See `choose_calibration`.
        RunDirectoryError: If the stored set cannot be read.
    """
    if os.path.exists(path):
        x = _load(path)
    else:
        x = choose_calibration(data, model, samples=samples, seed=seed)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        _save(path, x)
    return as_batches(x, model, batch_size=batch_size)
