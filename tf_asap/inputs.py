"""Turning whatever data a user holds into batches a model can be called on.

The core (activation statistics, callbacks, the round controller) accepts the
same kinds of data as `keras.Model.fit`; this module is the one place that
normalises them. It depends on TensorFlow and NumPy only, so every core module
may import it (`tf_asap.data`, which downloads and augments named data sets,
sits on top of the core and is never imported by it).

Accepted kinds of `data`:

- a NumPy array or tensor `x`;
- a tuple or list `(x,)`, `(x, y)` or `(x, y, sample_weight)` of arrays
  with the same first dimension; `x` may itself be a tuple or dict of arrays
  for a model with several inputs;
- a `tf.data.Dataset` of such elements, batched or not;
- a Python generator or iterator (including a `keras.utils.PyDataset`) of
  such elements, or a function with no arguments returning one.

What counts as `x` in an element: a dict is `x`; in a tuple or list, the
first entry is `x`, except that for a model with `n > 1` inputs a flat tuple
of exactly `n` arrays is `x` itself (Keras' own convention for `fit(x=[a, b])`).
"""

import numpy as np
import tensorflow as tf

from tf_asap.errors import ConfigurationError, DataError

DEFAULT_BATCH_SIZE = 128


def _is_tensor_like(value):
    return isinstance(value, (np.ndarray, tf.Tensor, np.generic)) or (
        hasattr(value, "shape") and hasattr(value, "dtype")
    )


def _input_ranks(model):
    """Ranks (batch axis included) of each model input, or None without a model."""
    if model is None:
        return None
    return [len(tensor.shape) for tensor in model.inputs]


def _features(element, num_inputs):
    """The `x` part of one element (see the module docstring)."""
    if isinstance(element, dict):
        return element
    if isinstance(element, (tuple, list)):
        if not element:
            raise DataError("Received an empty tuple as a data element; expected x or (x, y).")
        if (
            num_inputs is not None
            and num_inputs > 1
            and len(element) == num_inputs
            and all(_is_tensor_like(part) for part in element)
        ):
            return tuple(element)
        first = element[0]
        return tuple(first) if isinstance(first, list) else first
    return element


def _check_rank(x, ranks, batched, description):
    """Whether `x` (structure of specs or arrays) is batched, checked against `ranks`."""
    parts = tf.nest.flatten(x)
    if ranks is None:
        return batched
    if len(parts) != len(ranks):
        raise DataError(
            f"The {description} yields {len(parts)} input array(s) per element, "
            f"but the model has {len(ranks)} input(s). Pass x as one array per "
            "model input (a tuple or dict for several inputs), optionally "
            "followed by labels: (x, y)."
        )
    found = [len(part.shape) for part in parts]
    if all(r == rank for r, rank in zip(found, ranks)):
        return True
    if all(r == rank - 1 for r, rank in zip(found, ranks)):
        return False
    raise DataError(
        f"The {description} yields inputs of rank {found}; the model expects "
        f"batches of rank {ranks} (or single samples of rank "
        f"{[rank - 1 for rank in ranks]}). Check the shape of x."
    )


def _take_samples(dataset, limit):
    """Keeps the first `limit` samples of a batched dataset, cutting the last batch.

    Done with `scan` + `take_while` rather than `unbatch().take().batch()` so
    that batches keep their size and nothing is copied sample by sample.
    """

    def batch_size(x):
        return tf.shape(tf.nest.flatten(x)[0], out_type=tf.int64)[0]

    def count(seen, x):
        return seen + batch_size(x), (seen, x)

    def cut(seen, x):
        keep = tf.minimum(batch_size(x), limit - seen)
        return tf.nest.map_structure(lambda part: part[:keep], x)

    return (
        dataset.scan(tf.constant(0, tf.int64), count)
        .take_while(lambda seen, x: seen < limit)
        .map(cut)
    )


def _peek_generator(make_iterator, description):
    iterator = iter(make_iterator())
    try:
        first = next(iterator)
    except StopIteration:
        raise DataError(f"The {description} yields no elements.") from None
    return first, iterator


def _spec(value, batched_dimension):
    value = np.asarray(value) if not isinstance(value, tf.Tensor) else value
    shape = list(value.shape)
    if batched_dimension and shape:
        shape[0] = None
    return tf.TensorSpec(shape, tf.as_dtype(value.dtype))


def as_batches(data, model=None, batch_size=None, limit=None, keep_labels=False):
    """Returns `data` as a batched `tf.data.Dataset`.

    By default each element of the result is the model input `x` only (labels
    and sample weights dropped), as activation statistics need. With
    `keep_labels=True` elements keep their `(x, y[, sample_weight])` form.

    Args:
        data: Arrays, a `tf.data.Dataset`, a generator or iterator, or a
            function returning one; see the module docstring.
        model: The model the batches are for. Its inputs tell single samples
            from batches (by rank) and flat multi-input tuples from `(x, y)`.
            Without it, a `tf.data.Dataset` whose leading dimension is `None`
            is taken as batched (otherwise as single samples) and generators
            are taken to yield batches. Defaults to `None`.
        batch_size: Size of the batches. Defaults to `None`: batched data
            keeps its batches; arrays and single samples are batched by
            `128`.
        limit: Keep at most this many samples (the last batch is cut).
            Defaults to `None` (all).
        keep_labels: Keep labels and sample weights in each element.
            Defaults to `False`.

    Returns:
        A batched `tf.data.Dataset`. A generator can be iterated once only;
        pass a function returning a new generator to iterate it again.

    Raises:
        DataError: If `data` is none of the accepted kinds, its arrays have
            different lengths, or its inputs do not fit the model.
        ConfigurationError: If `batch_size` or `limit` is not a positive
            integer.

    Example:

    >>> for x in as_batches((x_train, y_train), model, limit=2000):
    ...     ...
    """
    for name, value in (("batch_size", batch_size), ("limit", limit)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
        ):
            raise ConfigurationError(f"{name} must be a positive integer or None; received {value!r}.")
    ranks = _input_ranks(model)
    num_inputs = None if ranks is None else len(ranks)

    def select(element):
        if keep_labels:
            return tuple(element) if isinstance(element, list) else element
        return _features(element, num_inputs)

    if isinstance(data, tf.data.Dataset):
        dataset = data.map(lambda *parts: select(parts[0] if len(parts) == 1 else parts))
        x_spec = dataset.element_spec
        if keep_labels:
            x_spec = _features(x_spec, num_inputs)
        leading = tf.nest.flatten(x_spec)[0].shape
        guess = leading.rank is not None and leading.rank > 0 and leading[0] is None
        batched = _check_rank(x_spec, ranks, guess, "tf.data.Dataset")
    elif _is_tensor_like(data) or (
        isinstance(data, (tuple, list, dict))
        and data
        and all(_is_tensor_like(part) for part in tf.nest.flatten(data))
    ):
        parts = tuple(data) if isinstance(data, list) else data
        lengths = {int(np.shape(part)[0]) if np.ndim(part) else -1 for part in tf.nest.flatten(parts)}
        if len(lengths) != 1 or -1 in lengths:
            raise DataError(
                "The arrays passed as data must all have the same first (sample) "
                f"dimension; received first dimensions {sorted(lengths)}. Pass x "
                "or (x, y) with one row per sample."
            )
        parts = select(parts)
        if limit is not None:
            parts = tf.nest.map_structure(lambda part: part[:limit], parts)
            limit = None  # already applied
        features = _features(parts, num_inputs) if keep_labels else parts
        if not _check_rank(features, ranks, True, "array data"):
            shapes = [tuple(np.shape(part)) for part in tf.nest.flatten(features)]
            raise DataError(
                f"Array data must hold a batch of samples of the model's input "
                f"rank {ranks}; received arrays of shapes {shapes} (rank one "
                "less: a single sample?). Add the sample axis, e.g. x[None]."
            )
        dataset = tf.data.Dataset.from_tensor_slices(parts)
        batched = False
    else:
        if callable(data) and not hasattr(data, "__next__") and not hasattr(data, "__getitem__"):
            make_iterator, description = data, "function's generator"
            first, _ = _peek_generator(make_iterator, description)
        elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            # A keras.utils.PyDataset or any other sequence of batches.
            def make_iterator():
                return (data[index] for index in range(len(data)))

            description = f"{type(data).__name__} sequence"
            first, _ = _peek_generator(make_iterator, description)
        elif hasattr(data, "__iter__"):
            first, iterator = _peek_generator(lambda: data, "generator")
            description = "generator"
            consumed = [first]

            def make_iterator():
                # The peeked element is yielded first, then the rest.
                while consumed:
                    yield consumed.pop()
                yield from iterator
        else:
            raise DataError(
                f"Cannot use an object of type {type(data).__name__} as data. "
                "Expected NumPy arrays (x or (x, y)), a tf.data.Dataset, a "
                "generator of batches, or a function returning one."
            )
        first = select(first)
        x_first = _features(first, num_inputs) if keep_labels else first
        batched = _check_rank(x_first, ranks, True, description)
        signature = tf.nest.map_structure(lambda value: _spec(value, batched), first)

        def generate():
            for element in make_iterator():
                yield tf.nest.map_structure(
                    lambda value: value if isinstance(value, tf.Tensor) else np.asarray(value),
                    select(element),
                )

        dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)

    if batched and batch_size is not None:
        dataset = dataset.unbatch().batch(batch_size)
    elif not batched:
        dataset = dataset.batch(batch_size or DEFAULT_BATCH_SIZE)
    if limit is not None:
        dataset = _take_samples(dataset, limit)
    return dataset.prefetch(tf.data.AUTOTUNE)
