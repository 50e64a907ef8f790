"""Feeding float data to a `.tflite` interpreter and reading its outputs back.

Shared by the LiteRT and TFLite Micro runners: inputs are checked against the
flatbuffer's input tensors, quantized with their scale and zero point when the
model takes int8/uint8, run in fixed-size chunks, and outputs dequantized, so
the same float data can be fed to every quantization mode. Top-1 accuracy is
computed here too, the figure both runtimes report.
"""

import numpy as np

from tf_asap.errors import DataError
from tf_asap.export.serving import model_inputs, ordered_inputs
from tf_asap.inputs import as_arrays

INSTALL_HINT = "Install the runtimes with `pip install tf_asap[tflite]`."
"""What to do when a runtime (`ai-edge-litert`, `tflite-micro`) is missing."""


def quantize(array, info):
    """Casts a float array to the input tensor's type, quantizing for int8/uint8."""
    if info.dtype not in ("int8", "uint8"):
        return array.astype(info.dtype, copy=False)
    limits = np.iinfo(info.dtype)
    quantized = np.round(array / info.scale) + info.zero_point
    return np.clip(quantized, limits.min, limits.max).astype(info.dtype)


def dequantize(array, info):
    """Returns an output tensor's values as float32, dequantizing int8/uint8."""
    if info.dtype in ("int8", "uint8") and info.scale:
        return (array.astype(np.float32) - info.zero_point) * info.scale
    return array.astype(np.float32, copy=False)


def input_arrays(x, infos):
    """Checks float inputs `x` against the model's input tensors; returns a list.

    Args:
        x: One array of shape `(n,) + input_shape`, or a list with one such
            array per input.
        infos: The model's input `TensorInfo`s.

    Raises:
        DataError: If the number of arrays or their sample shapes differ
            from the model's inputs, or there are no samples.
    """
    arrays = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(arrays) != len(infos):
        raise DataError(
            f"The model has {len(infos)} inputs, received {len(arrays)} arrays. Pass a list with one array per input."
        )
    arrays = [np.asarray(array, dtype=np.float32) for array in arrays]
    if not arrays[0].shape or arrays[0].shape[0] == 0:
        raise DataError("No samples to run: `x` is empty. Pass at least one sample.")
    for array, info in zip(arrays, infos):
        if array.shape[1:] != info.shape[1:]:
            raise DataError(
                f"Input '{info.key}' expects samples of shape {info.shape[1:]}"
                f", received an array of shape {array.shape}. Pass a batch "
                f"of shape (n,) + {info.shape[1:]}."
            )
    return arrays


def run_in_chunks(arrays, infos, chunk, run_chunk):
    """Runs `run_chunk` on quantized chunks of `chunk` samples; concatenates.

    The last chunk is zero-padded to full size (a static batch must be
    filled) and the padding's outputs dropped.

    Args:
        arrays: Float input arrays, as from `input_arrays`.
        infos: The model's input `TensorInfo`s.
        chunk: Samples per call.
        run_chunk: Function from a list of quantized input arrays to a list
            of float output arrays.

    Returns:
        A list with one float array per output, over all samples.
    """
    count = arrays[0].shape[0]
    pieces = []
    for start in range(0, count, chunk):
        parts = [array[start : start + chunk] for array in arrays]
        used = parts[0].shape[0]
        if used < chunk:
            parts = [np.concatenate([part, np.zeros((chunk - used,) + part.shape[1:], part.dtype)]) for part in parts]
        parts = [quantize(part, info) for part, info in zip(parts, infos)]
        pieces.append([output[:used] for output in run_chunk(parts)])
    return [np.concatenate(outputs) for outputs in zip(*pieces)]


def first_output(outputs):
    """The first output of a runner's result (one array, or a list of them)."""
    return outputs[0] if isinstance(outputs, list) else outputs


def _labels(y):
    y = np.asarray(y)
    if y.ndim >= 2 and y.shape[-1] > 1:
        return np.argmax(y, axis=-1)
    return y.reshape(len(y), -1)[:, 0].astype(np.int64)


def top1_accuracy(outputs, y):
    """Fraction of rows of `outputs` whose largest entry is at the label `y`.

    Args:
        outputs: Scores of shape `(n, classes)`.
        y: Integer labels of shape `(n,)` or `(n, 1)`, or one-hot labels.

    Raises:
        DataError: If `outputs` is not `(batch, classes)` or the counts differ.
    """
    outputs = np.asarray(outputs)
    if outputs.ndim < 2 or outputs.shape[-1] < 2:
        raise DataError(
            "Accuracy is computed as top-1 over the last axis of the first "
            f"output, which has shape {outputs.shape}; a multi-class output "
            "of shape (batch, classes) is needed."
        )
    labels = _labels(y)
    if len(labels) != len(outputs):
        raise DataError(
            f"{len(outputs)} samples were run but {len(labels)} labels given. Pass one label per sample of x."
        )
    return float(np.mean(np.argmax(outputs, axis=-1) == labels))


def evaluation_arrays(data, model, argument="evaluation_data"):
    """Reads labelled evaluation data into `(list of input arrays, labels)`.

    `data` is anything `tf_asap.inputs.as_arrays` accepts that holds labels:
    `(x, y)` arrays, a `tf.data.Dataset` of `(x, y)`, a generator of `(x, y)`
    batches.

    Raises:
        DataError: If the data does not fit the model or holds no labels.
    """
    try:
        x, y = as_arrays(data, model)
    except DataError as error:
        raise DataError(f"`{argument}` does not fit model '{model.name}': {error}") from error
    if y is None:
        raise DataError(
            f"`{argument}` holds inputs but no labels; accuracy needs both. Pass "
            "(x, y) arrays or a tf.data.Dataset of (x, y)."
        )
    return ordered_inputs(x, model_inputs(model)), y
