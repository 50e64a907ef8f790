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

from tf_asap.checks import check_int
from tf_asap.errors import DataError

DEFAULT_BATCH_SIZE = 128


def _is_tensor_like(value):
    return isinstance(value, (np.ndarray, tf.Tensor, np.generic)) or (
        hasattr(value, "shape") and hasattr(value, "dtype")
    )


def _input_shapes(model):
    """{input name: shape (batch axis included)} in input order, or None without a model."""
    if model is None:
        return None
    return {tensor.name: tuple(tensor.shape) for tensor in model.inputs}


def _parts(x, shapes):
    """The arrays (or specs) of `x` in the order of the model inputs.

    `tf.nest.flatten` orders a dict by key; a dict keyed by the input names is
    put in the model's order instead.
    """
    if isinstance(x, dict) and shapes is not None and set(shapes) <= set(x):
        return [x[name] for name in shapes]
    return tf.nest.flatten(x)


def _is_flat_inputs(element, num_inputs):
    """Whether a tuple is `x` itself: one array per input of a multi-input model."""
    return (
        num_inputs is not None
        and num_inputs > 1
        and len(element) == num_inputs
        and all(_is_tensor_like(part) for part in element)
    )


def _features(element, num_inputs):
    """The `x` part of one element (see the module docstring)."""
    if isinstance(element, dict):
        return element
    if isinstance(element, (tuple, list)):
        if not element:
            raise DataError("Received an empty tuple as a data element; expected x or (x, y).")
        if _is_flat_inputs(element, num_inputs):
            return tuple(element)
        first = element[0]
        return tuple(first) if isinstance(first, list) else first
    return element


def _fits(found, expected):
    """Whether a shape fits an expected one, `None` (unknown) fitting anything."""
    return len(found) == len(expected) and all(
        want is None or got is None or want == got for got, want in zip(found, expected)
    )


def _check_shapes(x, shapes, batched, description):
    """Whether `x` (structure of specs or arrays) is batched, checked against `shapes`.

    An element is a batch when every part has its input's rank, a single
    sample when every part has one axis less; the dimensions other than the
    batch one must match the model's where both are known.
    """
    if shapes is None:
        return batched
    parts = _parts(x, shapes)
    shapes = list(shapes.values())
    if len(parts) != len(shapes):
        raise DataError(
            f"The {description} yields {len(parts)} input array(s) per element, "
            f"but the model has {len(shapes)} input(s). Pass x as one array per "
            "model input (a tuple or dict for several inputs), optionally "
            "followed by labels: (x, y)."
        )
    found = [tuple(part.shape) for part in parts]
    if all(_fits(got, want) for got, want in zip(found, shapes)):
        return True
    if all(_fits(got, want[1:]) for got, want in zip(found, shapes)):
        return False
    raise DataError(
        f"The {description} yields inputs of shape {_describe(found)} (rank "
        f"{[len(shape) for shape in found]}); the model expects batches of shape "
        f"{_describe(shapes)} (rank {[len(shape) for shape in shapes]}) or single "
        f"samples of shape {_describe([shape[1:] for shape in shapes])}. Reshape "
        "x to match, e.g. add a missing channel axis with x[..., None]."
    )


def _describe(shapes):
    """One shape as itself, several as a list (for error messages)."""
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


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


def _select(element, num_inputs, keep_labels):
    """The part of one element the result keeps: `x`, or the whole element."""
    if keep_labels:
        return tuple(element) if isinstance(element, list) else element
    return _features(element, num_inputs)


def _is_array_data(data):
    return _is_tensor_like(data) or (
        isinstance(data, (tuple, list, dict))
        and bool(data)
        and all(_is_tensor_like(part) for part in tf.nest.flatten(data))
    )


def _from_dataset(data, shapes, keep_labels):
    """(dataset, batched) for a `tf.data.Dataset`."""
    num_inputs = None if shapes is None else len(shapes)
    dataset = data.map(
        lambda *parts: _select(parts[0] if len(parts) == 1 else parts, num_inputs, keep_labels)
    )
    x_spec = dataset.element_spec
    if keep_labels:
        x_spec = _features(x_spec, num_inputs)
    leading = tf.nest.flatten(x_spec)[0].shape
    guess = leading.rank is not None and leading.rank > 0 and leading[0] is None
    return dataset, _check_shapes(x_spec, shapes, guess, "tf.data.Dataset")


def _from_arrays(data, shapes, keep_labels, limit):
    """(dataset of single samples, False) for arrays, the first `limit` kept."""
    num_inputs = None if shapes is None else len(shapes)
    parts = tuple(data) if isinstance(data, list) else data
    lengths = {int(np.shape(part)[0]) if np.ndim(part) else -1 for part in tf.nest.flatten(parts)}
    if len(lengths) != 1 or -1 in lengths:
        raise DataError(
            "The arrays passed as data must all have the same first (sample) "
            f"dimension; received first dimensions {sorted(lengths)}. Pass x "
            "or (x, y) with one row per sample."
        )
    parts = _select(parts, num_inputs, keep_labels)
    if limit is not None:
        parts = tf.nest.map_structure(lambda part: part[:limit], parts)
    features = _features(parts, num_inputs) if keep_labels else parts
    found = [tuple(np.shape(part)) for part in _parts(features, shapes)]
    if not _check_shapes(features, shapes, True, "array data"):
        raise DataError(
            f"Array data must hold a batch of samples of the model's input "
            f"shape {_describe(list(shapes.values()))}; received arrays of shape {_describe(found)} "
            "(a single sample?). Add the sample axis, e.g. x[None]."
        )
    return tf.data.Dataset.from_tensor_slices(parts), False


def _element_source(data):
    """(function returning a fresh iterator, first element, description)."""
    if callable(data) and not hasattr(data, "__next__") and not hasattr(data, "__getitem__"):
        first, _ = _peek_generator(data, "function's generator")
        return data, first, "function's generator"
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        # A keras.utils.PyDataset or any other sequence of batches.
        def make_sequence_iterator():
            return (data[index] for index in range(len(data)))

        description = f"{type(data).__name__} sequence"
        first, _ = _peek_generator(make_sequence_iterator, description)
        return make_sequence_iterator, first, description
    if hasattr(data, "__iter__"):
        first, iterator = _peek_generator(lambda: data, "generator")
        consumed = [first]

        def make_iterator():
            # The peeked element is yielded first, then the rest.
            while consumed:
                yield consumed.pop()
            yield from iterator

        return make_iterator, first, "generator"
    raise DataError(
        f"Cannot use an object of type {type(data).__name__} as data. "
        "Expected NumPy arrays (x or (x, y)), a tf.data.Dataset, a "
        "generator of batches, or a function returning one."
    )


def _from_generator(data, shapes, keep_labels):
    """(dataset, batched) for a generator, a sequence or a function returning one."""
    num_inputs = None if shapes is None else len(shapes)
    make_iterator, first, description = _element_source(data)
    first = _select(first, num_inputs, keep_labels)
    x_first = _features(first, num_inputs) if keep_labels else first
    batched = _check_shapes(x_first, shapes, True, description)
    signature = tf.nest.map_structure(lambda value: _spec(value, batched), first)

    def generate():
        for element in make_iterator():
            yield tf.nest.map_structure(
                lambda value: value if isinstance(value, tf.Tensor) else np.asarray(value),
                _select(element, num_inputs, keep_labels),
            )

    return tf.data.Dataset.from_generator(generate, output_signature=signature), batched


def as_batches(data, model=None, batch_size=None, limit=None, keep_labels=False):
    """Returns `data` as a batched `tf.data.Dataset`.

    By default each element of the result is the model input `x` only (labels
    and sample weights dropped), as activation statistics need. With
    `keep_labels=True` elements keep their `(x, y[, sample_weight])` form.

    Data of single samples is cut to `limit` before it is batched, so a
    generator of samples is advanced only `limit` times.

    Args:
        data: Arrays, a `tf.data.Dataset`, a generator or iterator, or a
            function returning one; see the module docstring.
        model: The model the batches are for. Its inputs tell single samples
            from batches (by rank), check the other dimensions, and tell
            flat multi-input tuples from `(x, y)`. Without it, a
            `tf.data.Dataset` whose leading dimension is `None` is taken as
            batched (otherwise as single samples) and generators are taken
            to yield batches. Defaults to `None`.
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
    batch_size = check_int("batch_size", batch_size, minimum=1, allow_none=True)
    limit = check_int("limit", limit, minimum=1, allow_none=True)
    shapes = _input_shapes(model)
    if isinstance(data, tf.data.Dataset):
        dataset, batched = _from_dataset(data, shapes, keep_labels)
    elif _is_array_data(data):
        dataset, batched = _from_arrays(data, shapes, keep_labels, limit)
    else:
        dataset, batched = _from_generator(data, shapes, keep_labels)
    if batched:
        if batch_size is not None:
            dataset = dataset.unbatch().batch(batch_size)
        if limit is not None:
            dataset = _take_samples(dataset, limit)
    else:
        if limit is not None:
            dataset = dataset.take(limit)
        dataset = dataset.batch(batch_size or DEFAULT_BATCH_SIZE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _split_labels(element, num_inputs):
    """(x, y) of one batched element kept with its labels; y is None without."""
    x = _features(element, num_inputs)
    if (
        not isinstance(element, (tuple, list))
        or len(element) < 2
        or _is_flat_inputs(element, num_inputs)
    ):
        return x, None
    return x, element[1]


def as_arrays(data, model=None, limit=None):
    """Returns `data` as NumPy arrays `(x, y)`, every sample in memory.

    The same kinds of data as `as_batches` are accepted; their batches are
    concatenated. This suits evaluation on a few thousand samples (a runtime
    that is fed arrays, an accuracy computed by hand), not training data.

    Args:
        data: Arrays, a `tf.data.Dataset`, a generator or a function
            returning one; see the module docstring.
        model: The model the data is for (see `as_batches`). Defaults to
            `None`.
        limit: Keep at most this many samples. Defaults to `None` (all).

    Returns:
        A pair `(x, y)`: `x` in the structure of one element's inputs (an
        array, or a tuple or dict of arrays for several inputs) and `y` the
        labels array, or `None` when the data holds no labels.

    Raises:
        DataError: If `data` is empty or does not fit the model (see
            `as_batches`).
        ConfigurationError: If `limit` is not a positive integer.

    Example:

    >>> x, y = as_arrays(tf.data.Dataset.from_tensor_slices((x_test, y_test)))
    """
    shapes = _input_shapes(model)
    num_inputs = None if shapes is None else len(shapes)
    xs, ys = [], []
    for element in as_batches(data, model, limit=limit, keep_labels=True):
        x, y = _split_labels(element, num_inputs)
        xs.append(tf.nest.map_structure(np.asarray, x))
        ys.append(None if y is None else np.asarray(y))
    if not xs:
        raise DataError("The data yields no samples; pass at least one (x, y) sample.")
    x = tf.nest.map_structure(lambda *parts: np.concatenate(parts), *xs)
    y = None if any(part is None for part in ys) else np.concatenate(ys)
    return x, y
