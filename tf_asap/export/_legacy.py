"""Deployment: SavedModel for TF Serving, TFLite for phones and microcontrollers.

This is the last step of the pipeline: a slimmed Keras model is written out in
the formats real runtimes load, and measured there.

- `export_saved_model` writes the TF Serving layout
  `<base_dir>/<name>/<version>/` with one `serving_default` signature whose
  keys do not depend on Keras' automatic layer naming: the inputs are
  `"input_0"`, `"input_1"`, ... and the outputs `"output_0"`, `"output_1"`,
  ... in the order of `model.inputs` and `model.outputs`.
- `convert_tflite` / `export_tflite` produce a `.tflite` flatbuffer in float32,
  float16, dynamic-range or full-integer int8 (int8 input and output, what
  microcontrollers need). The `.tflite` keeps the same signature keys.
- `run_tflite` / `evaluate_tflite` run a `.tflite` in the LiteRT interpreter,
  `run_tflite_micro` / `evaluate_tflite_micro` in the TFLite Micro
  interpreter; both quantize float inputs and dequantize outputs themselves.
- `export_micro` writes a microcontroller bundle: the int8 `.tflite`, a C
  array of its bytes, the operators a `tflite::MicroMutableOpResolver` must
  register and the minimum tensor arena, found by running the model in TFLite
  Micro (`find_arena_size`).
- `latency_report` measures batch-1 LiteRT latency side by side, so that a
  speedup can be read next to the FLOPs ratio that bounds it.

The runtimes (`ai-edge-litert`, `tflite-micro`) are optional dependencies,
imported only inside the functions that need them
(`pip install tf_asap[tflite]`).
"""

import contextlib
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from tf_asap.core.counting import count_cost
from tf_asap.files import atomic_write_bytes, atomic_write_text
from tf_asap.errors import ConfigurationError
from tf_asap.errors import DataError
from tf_asap.errors import ExportError
from tf_asap.errors import UnsupportedLayerError
from tf_asap.errors import UnsupportedModelError

SERVING_SIGNATURE_KEY = "serving_default"
"""Signature key of the single endpoint written by `export_saved_model`."""

QUANTIZATION_MODES = ("none", "float16", "dynamic", "int8")
"""Values accepted by the `quantization` argument of the TFLite functions."""

ARENA_ALIGNMENT = 16
"""TFLite Micro aligns its arena to 16 bytes; arena sizes are multiples."""

_INSTALL_HINT = "Install the runtimes with `pip install tf_asap[tflite]`."
_CONVERTER_LOG_LINES = 30


def input_key(index):
    """Returns the signature key of the model input at `index` ("input_0")."""
    return f"input_{index}"


def output_key(index):
    """Returns the signature key of the model output at `index` ("output_0")."""
    return f"output_{index}"


# ---------------------------------------------------------------------------
# Model checks and the serving function shared by SavedModel and TFLite.
# ---------------------------------------------------------------------------


def _model_inputs(model):
    """Returns `model.inputs`, or raises a clear error when it has none."""
    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(
            "Expected a keras.Model to export, received an object of type "
            f"{type(model).__name__}. Load the model first, e.g. with "
            "keras.saving.load_model(path)."
        )
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise UnsupportedModelError(
            f"Model '{model.name}' has no defined inputs, so its input shape "
            "is unknown (a subclassed model, or a Sequential model that was "
            "never built). Build it as a functional model starting from "
            "keras.Input(shape=...), or give a Sequential model an "
            "keras.Input as its first layer."
        )
    return list(inputs)


def _require_static_shapes(model, inputs):
    """Raises unless every input dimension except the batch one is known."""
    for index, tensor in enumerate(inputs):
        shape = tuple(tensor.shape)
        if any(dim is None for dim in shape[1:]):
            raise UnsupportedModelError(
                f"Input {index} ('{tensor.name}') of model '{model.name}' has "
                f"shape {shape} with unknown non-batch dimensions; TFLite "
                "needs them fixed. Rebuild the model with a fixed input "
                "shape, e.g. keras.Input(shape=(32, 32, 3)), and copy the "
                "weights over with new_model.set_weights(model.get_weights())."
            )


def _input_signature(inputs, batch_size=None):
    return [
        tf.TensorSpec(
            (batch_size or tensor.shape[0],) + tuple(tensor.shape[1:]),
            tensor.dtype,
            name=input_key(i),
        )
        for i, tensor in enumerate(inputs)
    ]


def _write_serving_saved_model(model, inputs, path, batch_size=None):
    """Writes a SavedModel with one signature keyed `input_i` / `output_i`."""
    multiple_inputs = len(inputs) > 1

    def serve(*tensors):
        outputs = model(
            list(tensors) if multiple_inputs else tensors[0], training=False
        )
        return {
            output_key(i): output
            for i, output in enumerate(keras.tree.flatten(outputs))
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SERVING_SIGNATURE_KEY,
        serve,
        input_signature=_input_signature(inputs, batch_size),
    )
    archive.write_out(path, verbose=False)


@contextlib.contextmanager
def _native_output_captured():
    """Sends the C-level stdout/stderr to a temporary file while active.

    The TFLite converter, TF Lite Micro and TensorFlow's SavedModel writer
    print from C++ (MLIR dumps, "fully_quantize: 0, ..." lines, allocation
    failures); `TF_CPP_MIN_LOG_LEVEL` does not silence them. Yields a function
    returning what was captured so far, for error messages.

    File descriptors are process-wide: output other threads write meanwhile
    is captured too (and shown only if the export fails).
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)

            def read():
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                log.seek(0)
                return log.read().decode("utf-8", "replace")

            yield read
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _log_tail(text, lines=_CONVERTER_LOG_LINES):
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


# ---------------------------------------------------------------------------
# SavedModel
# ---------------------------------------------------------------------------


def _check_path_component(value, argument):
    if (
        not isinstance(value, str)
        or not value
        or value in (".", "..")
        or "/" in value
        or os.sep in value
    ):
        raise ConfigurationError(
            f"`{argument}` must be a non-empty name without path separators, "
            f"received {value!r}. Put directories in `base_dir` instead."
        )


def export_saved_model(model, base_dir, name, version=1, overwrite=False):
    """Exports a model as a SavedModel in the TF Serving directory layout.

    The model is written to `<base_dir>/<name>/<version>/` with a single
    signature, `serving_default`, that runs the model in inference mode
    (`training=False`). Its keys are stable and independent of Keras'
    automatic layer names: the inputs are `"input_0"`, `"input_1"`, ... in the
    order of `model.inputs`, the outputs `"output_0"`, `"output_1"`, ... in
    the order of `model.outputs`. The batch dimension is left unknown, and so
    are other dimensions that are unknown in the model.

    The version is written to a hidden temporary directory beside its final
    place and renamed when complete, so TF Serving (which loads only numeric
    directory names) never sees a partial version.

    Args:
        model: A built `keras.Model` (functional or Sequential with an
            `keras.Input`).
        base_dir: Directory TF Serving is pointed at (`--model_base_path` is
            `<base_dir>/<name>`). Created if missing.
        name: Model name, one path component.
        version: Positive integer version. Defaults to `1`.
        overwrite: Whether to replace an existing version directory.
            Defaults to `False`.

    Returns:
        The path of the version directory, as a string.

    Raises:
        UnsupportedModelError: If `model` is not a `keras.Model` with defined
            inputs.
        ConfigurationError: If `name` or `version` is invalid.
        ExportError: If the version directory exists and `overwrite` is
            `False`, or if TensorFlow fails to save the model.

    Example:

    >>> path = export_saved_model(model, "/models", "classifier", version=2)
    >>> serving = tf.saved_model.load(path)
    >>> outputs = serving.signatures["serving_default"](input_0=images)
    >>> probabilities = outputs["output_0"]
    """
    inputs = _model_inputs(model)
    _check_path_component(name, "name")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigurationError(
            "`version` must be a positive integer (TF Serving versions are "
            f"numeric directory names), received {version!r}."
        )
    model_dir = os.path.join(os.fspath(base_dir), name)
    final_dir = os.path.join(model_dir, str(version))
    if os.path.exists(final_dir) and not overwrite:
        raise ExportError(
            f"Version directory {final_dir} already exists. Pass a new "
            "`version`, or `overwrite=True` to replace it."
        )
    os.makedirs(model_dir, exist_ok=True)
    staging_dir = tempfile.mkdtemp(dir=model_dir, prefix=f".{version}.tmp-")
    try:
        with _native_output_captured() as captured:
            try:
                _write_serving_saved_model(model, inputs, staging_dir)
            except Exception as error:
                raise ExportError(
                    f"Saving model '{model.name}' as a SavedModel failed: "
                    f"{error}\nTensorFlow log:\n{_log_tail(captured())}"
                ) from error
        if os.path.exists(final_dir):
            # Move the old version aside first so that a failure between the
            # two renames leaves a complete directory behind.
            retired_dir = tempfile.mkdtemp(
                dir=model_dir, prefix=f".{version}.old-"
            )
            os.rename(final_dir, os.path.join(retired_dir, "version"))
            os.rename(staging_dir, final_dir)
            shutil.rmtree(retired_dir, ignore_errors=True)
        else:
            os.rename(staging_dir, final_dir)
    finally:
        if os.path.exists(staging_dir):
            shutil.rmtree(staging_dir, ignore_errors=True)
    return final_dir


# ---------------------------------------------------------------------------
# Representative and evaluation data
# ---------------------------------------------------------------------------


def _split_features(element, num_inputs):
    """Returns the features of one data element: x, (x,), (x, y) or (x, y, w)."""
    if isinstance(element, dict):
        return element
    if isinstance(element, (tuple, list)):
        if num_inputs == 1:
            return element[0]
        first = element[0] if element else None
        if isinstance(first, (tuple, list, dict)):
            return first
        return element
    return element


def _as_input_list(features, inputs):
    """Orders features as a list matching `inputs` (dicts keyed by name)."""
    if isinstance(features, dict):
        try:
            return [features[tensor.name] for tensor in inputs]
        except KeyError as error:
            raise DataError(
                f"Data is a dict with keys {sorted(features)}, expected the "
                f"model input names {[t.name for t in inputs]}."
            ) from error
    if len(inputs) == 1:
        return [features]
    features = list(features)
    if len(features) != len(inputs):
        raise DataError(
            f"The model has {len(inputs)} inputs but a data element holds "
            f"{len(features)} arrays. Give one array per input, in the order "
            "of model.inputs."
        )
    return features


def _iterate_elements(data):
    if isinstance(data, tf.data.Dataset):
        return data.as_numpy_iterator()
    if isinstance(data, np.ndarray) or tf.is_tensor(data):
        # One array of samples for a single-input model: one batch.
        return iter([np.asarray(data)])
    return iter(data)


_END = object()


def _samples(data, inputs, max_samples, argument):
    """Yields lists (one float array per input, batch 1) from `data`.

    Each element of `data` may hold one sample or a batch; which one is told
    by comparing its rank with the model input's rank.
    """
    count = 0
    if (
        isinstance(data, tuple)
        and len(inputs) == 1
        and 2 <= len(data) <= 3
        and np.ndim(data[0]) == len(inputs[0].shape)
    ):
        # An (x, y) or (x, y, sample_weight) pair of arrays: x is the batch.
        data = [data]
    elements = _iterate_elements(data)
    while count < max_samples:
        # Checked before drawing the next element, so an endless generator
        # is advanced only as far as needed.
        element = next(elements, _END)
        if element is _END:
            return
        arrays = _as_input_list(_split_features(element, len(inputs)), inputs)
        arrays = [np.asarray(array) for array in arrays]
        batched = []
        for index, (tensor, array) in enumerate(zip(inputs, arrays)):
            expected = tuple(tensor.shape)
            received = array.shape
            if array.ndim == len(expected) - 1:
                array = array[None]
            if array.ndim != len(expected) or any(
                want is not None and want != got
                for want, got in zip(expected[1:], array.shape[1:])
            ):
                raise DataError(
                    f"`{argument}` holds an array of shape {received} for "
                    f"input {index} ('{tensor.name}'), which takes batches of "
                    f"shape {expected} or single samples of shape "
                    f"{expected[1:]}. Reshape the data, e.g. add a missing "
                    "channel axis with x[..., None]."
                )
            batched.append(array)
        for row in range(batched[0].shape[0]):
            if count >= max_samples:
                return
            yield [
                array[row : row + 1].astype(tensor.dtype, copy=False)
                for tensor, array in zip(inputs, batched)
            ]
            count += 1


def _as_arrays(data, inputs, max_samples=None):
    """Returns (list of input arrays, labels) from (x, y) or a dataset."""
    if isinstance(data, tf.data.Dataset):
        features, labels = [], []
        for element in data.as_numpy_iterator():
            if not isinstance(element, (tuple, list)) or len(element) < 2:
                raise DataError(
                    "Evaluation data must yield (x, y) pairs; received "
                    f"elements of type {type(element).__name__}."
                )
            features.append(element[0])
            labels.append(element[1])
        if not features:
            raise DataError("The evaluation dataset is empty.")
        first = _as_input_list(features[0], inputs)
        batched = np.asarray(first[0]).ndim == len(inputs[0].shape)
        stack = np.concatenate if batched else np.stack
        x = [
            stack([_as_input_list(f, inputs)[i] for f in features])
            for i in range(len(inputs))
        ]
        y = stack(labels)
    else:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise DataError(
                "Evaluation data must be an (x, y) pair of arrays or a "
                f"tf.data.Dataset of (x, y); received {type(data).__name__}."
            )
        x = [np.asarray(a) for a in _as_input_list(data[0], inputs)]
        y = np.asarray(data[1])
    if max_samples is not None:
        x = [a[:max_samples] for a in x]
        y = y[:max_samples]
    if len(y) != len(x[0]):
        raise DataError(
            f"Evaluation data has {len(x[0])} samples but {len(y)} labels."
        )
    return x, y


def _labels(y):
    y = np.asarray(y)
    if y.ndim >= 2 and y.shape[-1] > 1:
        return np.argmax(y, axis=-1)
    return y.reshape(len(y), -1)[:, 0].astype(np.int64)


def _top1_accuracy(outputs, y):
    if outputs.ndim < 2 or outputs.shape[-1] < 2:
        raise DataError(
            "Accuracy is computed as top-1 over the last axis of the first "
            f"output, which has shape {outputs.shape}; a multi-class output "
            "of shape (batch, classes) is needed."
        )
    return float(np.mean(np.argmax(outputs, axis=-1) == _labels(y)))


# ---------------------------------------------------------------------------
# TFLite conversion
# ---------------------------------------------------------------------------


def _check_quantization(quantization, representative_data):
    if quantization not in QUANTIZATION_MODES:
        raise ConfigurationError(
            f"Unknown quantization {quantization!r}; expected one of "
            f"{', '.join(repr(mode) for mode in QUANTIZATION_MODES)}."
        )
    if quantization == "int8" and representative_data is None:
        raise ConfigurationError(
            "quantization='int8' needs `representative_data` to calibrate "
            "activation ranges: pass a few hundred training inputs (a NumPy "
            "array, a tf.data.Dataset of x or (x, y), or an iterable), or use "
            "quantization='dynamic', which needs no data."
        )
    if quantization != "int8" and representative_data is not None:
        raise ConfigurationError(
            f"`representative_data` is only used with quantization='int8', "
            f"received it with quantization={quantization!r}. Drop it, or ask "
            "for quantization='int8'."
        )


def convert_tflite(
    model,
    quantization="none",
    representative_data=None,
    representative_samples=200,
    batch_size=None,
):
    """Converts a Keras model to a TFLite flatbuffer in memory.

    The conversion goes through the same `serving_default` SavedModel as
    `export_saved_model`, so the `.tflite` carries a signature with the keys
    `"input_0"`... and `"output_0"`.... Converter logs are captured; they
    appear only in the error message when the conversion fails.

    Quantization modes:

    - `"none"`: float32 weights and activations.
    - `"float16"`: float16 weights, float32 computation (half the size).
    - `"dynamic"`: int8 weights, activations quantized on the fly; needs no
      data.
    - `"int8"`: full-integer model with int8 input and output and only int8
      builtin kernels (`TFLITE_BUILTINS_INT8`), as microcontrollers and NPUs
      need; activation ranges are calibrated on `representative_data`.

    Args:
        model: A built `keras.Model` whose input dimensions are all known
            except the batch one.
        quantization: One of `QUANTIZATION_MODES`. Defaults to `"none"`.
        representative_data: Calibration inputs for `"int8"`: a NumPy array
            of samples, a `tf.data.Dataset` yielding `x` or `(x, y)` (batched
            or not), or an iterable of such elements. Defaults to `None`.
        representative_samples: At most this many samples of
            `representative_data` are used. Defaults to `200`.
        batch_size: Fixes the batch dimension of the `.tflite`, e.g. `1` for
            microcontrollers and one-image-at-a-time apps: a static batch
            lets the converter fold the shape arithmetic of layers such as
            `Flatten` into constants (fewer operators, a smaller arena).
            Defaults to `None`, which keeps the model's batch dimension
            (usually dynamic; runtimes can resize it).

    Returns:
        The `.tflite` flatbuffer as `bytes`.

    Raises:
        UnsupportedModelError: If `model` has no defined inputs or an input
            dimension other than the batch one is unknown.
        ConfigurationError: If `quantization` is unknown, `"int8"` is asked
            without `representative_data`, or data is given for another mode.
        DataError: If `representative_data` does not match the model inputs.
        ExportError: If the converter fails (the message holds its log).

    Example:

    >>> flatbuffer = convert_tflite(model, "int8", representative_data=x[:200])
    >>> predictions = run_tflite(flatbuffer, x_test)
    """
    inputs = _model_inputs(model)
    _require_static_shapes(model, inputs)
    _check_quantization(quantization, representative_data)
    if representative_samples < 1:
        raise ConfigurationError(
            "`representative_samples` must be at least 1, received "
            f"{representative_samples}."
        )
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ConfigurationError(
            "`batch_size` must be None (keep the batch dimension) or a "
            f"positive integer, received {batch_size!r}."
        )
    calibration = None
    if quantization == "int8":
        calibration = list(
            _samples(
                representative_data,
                inputs,
                representative_samples,
                "representative_data",
            )
        )
        if not calibration:
            raise DataError(
                "`representative_data` yielded no samples; int8 calibration "
                "needs at least one (a few hundred is typical)."
            )
        if batch_size and batch_size > 1:
            # A static batch needs calibration batches of exactly that size.
            if len(calibration) < batch_size:
                raise DataError(
                    f"`representative_data` yielded {len(calibration)} "
                    f"samples, fewer than one batch of {batch_size}."
                )
            calibration = [
                [
                    np.concatenate([sample[i] for sample in calibration[j : j + batch_size]])
                    for i in range(len(inputs))
                ]
                for j in range(0, len(calibration) - batch_size + 1, batch_size)
            ]

    with tempfile.TemporaryDirectory(prefix="tf_asap_tflite_") as work_dir:
        with _native_output_captured() as captured:
            try:
                _write_serving_saved_model(model, inputs, work_dir, batch_size)
                converter = tf.lite.TFLiteConverter.from_saved_model(
                    work_dir, signature_keys=[SERVING_SIGNATURE_KEY]
                )
                if quantization != "none":
                    converter.optimizations = [tf.lite.Optimize.DEFAULT]
                if quantization == "float16":
                    converter.target_spec.supported_types = [tf.float16]
                if quantization == "int8":

                    def dataset():
                        for sample in calibration:
                            yield {
                                input_key(i): array
                                for i, array in enumerate(sample)
                            }

                    converter.representative_dataset = dataset
                    converter.target_spec.supported_ops = [
                        tf.lite.OpsSet.TFLITE_BUILTINS_INT8
                    ]
                    converter.inference_input_type = tf.int8
                    converter.inference_output_type = tf.int8
                with warnings.catch_warnings():
                    # The calibrator runs TF's own deprecated tf.lite
                    # Interpreter; the warning is about TF, not the user.
                    warnings.filterwarnings(
                        "ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated"
                    )
                    flatbuffer = converter.convert()
            except Exception as error:
                hint = ""
                if quantization == "int8":
                    hint = (
                        " Some operation may have no int8 kernel; "
                        "quantization='dynamic' or 'float16' keep float "
                        "fallbacks."
                    )
                raise ExportError(
                    f"TFLite conversion of model '{model.name}' with "
                    f"quantization={quantization!r} failed: {error}.{hint}\n"
                    f"Converter log:\n{_log_tail(captured())}"
                ) from error
    return bytes(flatbuffer)


def export_tflite(
    model,
    path,
    quantization="none",
    representative_data=None,
    representative_samples=200,
    batch_size=None,
):
    """Converts a Keras model to TFLite and writes the `.tflite` file.

    See `convert_tflite` for the quantization modes. The file is written to a
    temporary file beside `path` and renamed, so a reader never sees a
    partial file; an existing file at `path` is replaced.

    Args:
        model: A built `keras.Model` whose input dimensions are all known
            except the batch one.
        path: Destination `.tflite` path. Parent directories are created.
        quantization: One of `"none"`, `"float16"`, `"dynamic"`, `"int8"`.
            Defaults to `"none"`.
        representative_data: Calibration inputs, required for `"int8"` (see
            `convert_tflite`). Defaults to `None`.
        representative_samples: At most this many calibration samples are
            used. Defaults to `200`.
        batch_size: Fixes the batch dimension (see `convert_tflite`).
            Defaults to `None`, the model's own (usually dynamic).

    Returns:
        `path`, as a string.

    Raises:
        UnsupportedModelError: If the model's input shape is not fully known.
        ConfigurationError: If `quantization` is unknown or `"int8"` is asked
            without `representative_data`.
        DataError: If `representative_data` does not match the model inputs.
        ExportError: If the converter fails.

    Example:

    >>> export_tflite(model, "model_int8.tflite", "int8", x_train[:200])
    >>> evaluate_tflite("model_int8.tflite", x_test, y_test)
    0.91
    """
    flatbuffer = convert_tflite(
        model,
        quantization,
        representative_data,
        representative_samples,
        batch_size=batch_size,
    )
    atomic_write_bytes(path, flatbuffer)
    return os.fspath(path)


# ---------------------------------------------------------------------------
# Reading a flatbuffer
# ---------------------------------------------------------------------------


def _schema():
    # TensorFlow has no public reader for the TFLite flatbuffer; its generated
    # schema module ships in every TF wheel (and, identically, in LiteRT).
    try:
        from tensorflow.lite.python import schema_py_generated
    except ImportError:  # pragma: no cover - depends on the TF build.
        from ai_edge_litert import schema_py_generated
    return schema_py_generated


def _model_bytes(model):
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        if not os.path.isfile(model):
            raise ExportError(f"No .tflite file at {os.fspath(model)}.")
        with open(model, "rb") as file:
            return file.read()
    raise ConfigurationError(
        "Expected a .tflite model as a path or bytes, received an object of "
        f"type {type(model).__name__}. Convert a Keras model first with "
        "convert_tflite(model) or export_tflite(model, path)."
    )


def _flatbuffer_root(flatbuffer):
    schema = _schema()
    if len(flatbuffer) < 8 or flatbuffer[4:8] != b"TFL3":
        raise ExportError(
            "The data is not a TFLite flatbuffer (no 'TFL3' identifier)."
        )
    return schema, schema.Model.GetRootAs(flatbuffer, 0)


def tflite_operators(model):
    """Lists the builtin operators a `.tflite` model uses.

    Read from the flatbuffer's operator codes, in the order of their first
    use in the graph; an operator used several times is listed once. These
    are what a TFLite Micro op resolver must register.

    Args:
        model: The `.tflite` model as a path or `bytes`.

    Returns:
        A list of builtin operator names as in the TFLite schema, e.g.
        `["CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"]`; custom
        operators appear as `"CUSTOM:<name>"`.

    Raises:
        ExportError: If `model` is not a TFLite flatbuffer.

    Example:

    >>> tflite_operators("model_int8.tflite")
    ['CONV_2D', 'MEAN', 'FULLY_CONNECTED']
    """
    schema, root = _flatbuffer_root(_model_bytes(model))
    names = {
        value: name
        for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
    codes = []
    for index in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(index)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            custom = custom.decode() if custom else "?"
            codes.append(f"CUSTOM:{custom}")
        else:
            codes.append(names.get(builtin, f"BUILTIN_{builtin}"))
    used = []
    for subgraph_index in range(root.SubgraphsLength()):
        subgraph = root.Subgraphs(subgraph_index)
        for op_index in range(subgraph.OperatorsLength()):
            name = codes[subgraph.Operators(op_index).OpcodeIndex()]
            if name not in used:
                used.append(name)
    return used


@dataclasses.dataclass(frozen=True)
class _TensorInfo:
    key: str
    position: int
    dtype: str
    shape: tuple
    scale: float
    zero_point: int


_TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 9: "int8"}


def _io_tensors(flatbuffer):
    """Returns (inputs, outputs) of subgraph 0, ordered by signature key.

    Runtimes address inputs by position in the subgraph's input list, which
    the converter does not promise to keep in `input_0, input_1...` order; the
    signature maps keys to tensors, so use it where present.
    """
    _, root = _flatbuffer_root(flatbuffer)
    subgraph = root.Subgraphs(0)
    tensor_keys = {}
    for index in range(root.SignatureDefsLength()):
        signature = root.SignatureDefs(index)
        if signature.SubgraphIndex() != 0:
            continue
        for getter, count in (
            (signature.Inputs, signature.InputsLength()),
            (signature.Outputs, signature.OutputsLength()),
        ):
            for j in range(count):
                tensor_map = getter(j)
                tensor_keys[tensor_map.TensorIndex()] = tensor_map.Name().decode()

    def describe(tensor_indices, prefix):
        infos = []
        for position, tensor_index in enumerate(tensor_indices):
            tensor = subgraph.Tensors(int(tensor_index))
            quantization = tensor.Quantization()
            scale, zero_point = 0.0, 0
            if quantization is not None and quantization.ScaleLength():
                scale = float(quantization.Scale(0))
                zero_point = int(quantization.ZeroPoint(0))
            infos.append(
                _TensorInfo(
                    key=tensor_keys.get(int(tensor_index), f"{prefix}{position}"),
                    position=position,
                    dtype=_TENSOR_TYPES.get(tensor.Type(), f"type{tensor.Type()}"),
                    shape=tuple(int(d) for d in tensor.ShapeAsNumpy()),
                    scale=scale,
                    zero_point=zero_point,
                )
            )

        def order(info):
            match = re.fullmatch(rf"{prefix}(\d+)", info.key)
            return (0, int(match.group(1))) if match else (1, info.position)

        return sorted(infos, key=order)

    return (
        describe(subgraph.InputsAsNumpy(), "input_"),
        describe(subgraph.OutputsAsNumpy(), "output_"),
    )


def _quantize(array, info):
    if info.dtype not in ("int8", "uint8"):
        return array.astype(info.dtype, copy=False)
    limits = np.iinfo(info.dtype)
    quantized = np.round(array / info.scale) + info.zero_point
    return np.clip(quantized, limits.min, limits.max).astype(info.dtype)


def _dequantize(array, info):
    if info.dtype in ("int8", "uint8") and info.scale:
        return (array.astype(np.float32) - info.zero_point) * info.scale
    return array.astype(np.float32, copy=False)


def _as_input_arrays(x, infos):
    arrays = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(arrays) != len(infos):
        raise DataError(
            f"The model has {len(infos)} inputs, received {len(arrays)} "
            "arrays. Pass a list with one array per input."
        )
    arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    if not arrays[0].shape or arrays[0].shape[0] == 0:
        raise DataError("No samples to run: `x` is empty.")
    for array, info in zip(arrays, infos):
        if array.shape[1:] != info.shape[1:]:
            raise DataError(
                f"Input '{info.key}' expects samples of shape {info.shape[1:]}"
                f", received an array of shape {array.shape}. Pass a batch "
                f"of shape (n,) + {info.shape[1:]}."
            )
    return arrays


def _run_in_chunks(arrays, infos, chunk, run_chunk):
    """Runs `run_chunk` on padded chunks of `chunk` samples; concatenates."""
    count = arrays[0].shape[0]
    pieces = []
    for start in range(0, count, chunk):
        parts = [a[start : start + chunk] for a in arrays]
        used = parts[0].shape[0]
        if used < chunk:
            parts = [
                np.concatenate([p, np.zeros((chunk - used,) + p.shape[1:], p.dtype)])
                for p in parts
            ]
        parts = [_quantize(p, info) for p, info in zip(parts, infos)]
        pieces.append([out[:used] for out in run_chunk(parts)])
    return [np.concatenate(outs) for outs in zip(*pieces)]


# ---------------------------------------------------------------------------
# LiteRT
# ---------------------------------------------------------------------------


def _litert_interpreter(flatbuffer, num_threads):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise ImportError(
            "Running .tflite models needs the LiteRT interpreter "
            f"(ai-edge-litert), which is not installed. {_INSTALL_HINT}"
        ) from error
    # The first allocation applies the XNNPACK delegate, which prints "INFO:
    # Created TensorFlow Lite XNNPACK delegate for CPU." from C++.
    with _native_output_captured():
        interpreter = Interpreter(model_content=flatbuffer, num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


def run_tflite(model, x, batch_size=256, num_threads=1):
    """Runs a `.tflite` model in the LiteRT interpreter on float inputs.

    Inputs are quantized with the model's input scale and zero point when the
    model takes int8/uint8, and outputs are dequantized, so the same float
    data can be fed to every quantization mode. Batches of `batch_size`
    samples are run at once when the batch dimension is dynamic (the last
    batch is zero-padded), one sample at a time otherwise.

    Args:
        model: The `.tflite` model as a path or `bytes`.
        x: Float array of shape `(n,) + input_shape`, or a list with one such
            array per input (in `input_0, input_1...` order).
        batch_size: Samples per interpreter call. Defaults to `256`.
        num_threads: LiteRT threads. Defaults to `1`.

    Returns:
        A float32 array of shape `(n,) + output_shape`, or a list of such
        arrays when the model has several outputs.

    Raises:
        DataError: If `x` does not match the model's inputs.
        ImportError: If `ai-edge-litert` is not installed.

    Example:

    >>> probabilities = run_tflite("model_int8.tflite", x_test[:10])
    """
    flatbuffer = _model_bytes(model)
    input_infos, output_infos = _io_tensors(flatbuffer)
    arrays = _as_input_arrays(x, input_infos)
    interpreter = _litert_interpreter(flatbuffer, num_threads)
    input_details = interpreter.get_input_details()
    output_details = interpreter.get_output_details()
    dynamic = all(d["shape_signature"][0] == -1 for d in input_details)
    chunk = min(batch_size, arrays[0].shape[0]) if dynamic else input_infos[0].shape[0]
    chunk = max(chunk, 1)
    if dynamic:
        for detail in input_details:
            interpreter.resize_tensor_input(
                detail["index"], [chunk] + list(detail["shape"][1:])
            )
    interpreter.allocate_tensors()

    def run_chunk(parts):
        for part, info in zip(parts, input_infos):
            interpreter.set_tensor(input_details[info.position]["index"], part)
        interpreter.invoke()
        return [
            _dequantize(
                interpreter.get_tensor(output_details[info.position]["index"]),
                info,
            )
            for info in output_infos
        ]

    outputs = _run_in_chunks(arrays, input_infos, chunk, run_chunk)
    return outputs[0] if len(outputs) == 1 else outputs


def evaluate_tflite(model, x, y, batch_size=256, num_threads=1):
    """Returns the top-1 accuracy of a `.tflite` model run in LiteRT.

    Args:
        model: The `.tflite` model as a path or `bytes`.
        x: Float inputs, as for `run_tflite`.
        y: Integer class labels of shape `(n,)`, or one-hot labels.
        batch_size: Samples per interpreter call. Defaults to `256`.
        num_threads: LiteRT threads. Defaults to `1`.

    Returns:
        The fraction of samples whose highest-scoring class in the first
        output equals the label, as a float in `[0, 1]`.

    Raises:
        DataError: If `x` or `y` does not match the model.
        ImportError: If `ai-edge-litert` is not installed.

    Example:

    >>> evaluate_tflite("model_int8.tflite", x_test, y_test)
    0.905
    """
    outputs = run_tflite(model, x, batch_size=batch_size, num_threads=num_threads)
    first = outputs[0] if isinstance(outputs, list) else outputs
    return _top1_accuracy(first, y)


# ---------------------------------------------------------------------------
# TFLite Micro
# ---------------------------------------------------------------------------


def _micro_runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as error:
        raise ImportError(
            "Running models in TFLite Micro needs the `tflite-micro` package, "
            f"which is not installed. {_INSTALL_HINT}"
        ) from error
    return runtime


# Runs in a child process: an arena smaller than TFLite Micro's own
# bookkeeping crashes the interpreter (segmentation fault) instead of raising,
# so probing arena sizes in this process could kill it. The child answers one
# line per size read from stdin: "ok" or "fail"; a crash reads as end of file.
_ARENA_PROBE = r"""
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime

with open(sys.argv[1], "rb") as file:
    flatbuffer = file.read()
num_inputs = int(sys.argv[2])
for line in sys.stdin:
    size = int(line)
    try:
        interpreter = runtime.Interpreter.from_bytes(flatbuffer, arena_size=size)
        for index in range(num_inputs):
            detail = interpreter.get_input_details(index)
            interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), index)
        interpreter.invoke()
        del interpreter
        answer = "ok"
    except Exception as error:
        answer = "fail " + " ".join(str(error).split())
    sys.stdout.write(answer + "\n")
    sys.stdout.flush()
"""


class _ArenaProbe:
    """A child process that tries arena sizes; restarted after a crash."""

    def __init__(self, model_path, num_inputs):
        self._model_path = model_path
        self._num_inputs = num_inputs
        self._process = None
        self._log = tempfile.TemporaryFile(mode="w+b")
        self.last_failure = ""

    def _start(self):
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _ARENA_PROBE,
                self._model_path,
                str(self._num_inputs),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )

    def runs(self, size):
        if self._process is None or self._process.poll() is not None:
            self._start()
        try:
            self._process.stdin.write(f"{size}\n")
            self._process.stdin.flush()
            answer = self._process.stdout.readline().strip()
        except (BrokenPipeError, OSError):
            answer = ""
        if not answer:
            self._process.wait()
            self._process = None
            self.last_failure = "the TFLite Micro interpreter crashed"
            return False
        if answer == "ok":
            return True
        self.last_failure = answer[len("fail ") :]
        return False

    def log_tail(self):
        self._log.seek(0)
        return _log_tail(self._log.read().decode("utf-8", "replace"), 10)

    def close(self):
        if self._process is not None and self._process.poll() is None:
            self._process.stdin.close()
            self._process.wait()
        self._log.close()


def find_arena_size(model, max_arena_size=64 * 1024 * 1024):
    """Finds the smallest tensor arena a model runs in under TFLite Micro.

    The model is loaded and invoked in the TFLite Micro interpreter (in a
    child process, since an arena too small for the interpreter's own
    bookkeeping crashes rather than raises) with growing arenas until it
    runs, then the boundary is bisected. Sizes are multiples of 16 bytes, the
    arena alignment, so the result can be used as is in
    `alignas(16) uint8_t tensor_arena[size];`; 16 bytes less fails.

    The measurement uses the host build of TFLite Micro (64-bit, reference
    kernels, recording allocator), which needs at least as much as a 32-bit
    microcontroller build with the same kernels. Optimized kernels (CMSIS-NN,
    ESP-NN) may ask for extra scratch memory; leave headroom for those.

    Args:
        model: An int8 (or float) `.tflite` model as a path or `bytes`.
        max_arena_size: Give up above this many bytes. Defaults to 64 MiB.

    Returns:
        The minimum arena size in bytes, a multiple of 16.

    Raises:
        ExportError: If the model does not run in TFLite Micro even with
            `max_arena_size` bytes (e.g. an operator TFLite Micro lacks); the
            message holds the interpreter's error.
        ImportError: If `tflite-micro` is not installed.

    Example:

    >>> find_arena_size("model_int8.tflite")
    10432
    """
    flatbuffer = _model_bytes(model)
    _micro_runtime()
    units_limit = max(1, max_arena_size // ARENA_ALIGNMENT)
    with tempfile.TemporaryDirectory(prefix="tf_asap_arena_") as work_dir:
        model_path = os.path.join(work_dir, "model.tflite")
        with open(model_path, "wb") as file:
            file.write(flatbuffer)
        probe = _ArenaProbe(model_path, len(_io_tensors(flatbuffer)[0]))
        try:
            # Sizes in units of ARENA_ALIGNMENT bytes: `failing` never runs,
            # `running` does.
            failing, running = 0, min(1024, units_limit)
            while not probe.runs(running * ARENA_ALIGNMENT):
                if running >= units_limit:
                    raise ExportError(
                        "The model does not run in TFLite Micro even with a "
                        f"{running * ARENA_ALIGNMENT}-byte arena: "
                        f"{probe.last_failure or 'unknown error'}. "
                        f"Interpreter log:\n{probe.log_tail()}\nCheck that "
                        "every operator is supported by TFLite Micro, or "
                        "raise `max_arena_size`."
                    )
                failing, running = running, min(running * 2, units_limit)
            while running - failing > 1:
                middle = (failing + running) // 2
                if probe.runs(middle * ARENA_ALIGNMENT):
                    running = middle
                else:
                    failing = middle
        finally:
            probe.close()
    return running * ARENA_ALIGNMENT


def run_tflite_micro(model, x, arena_size=None):
    """Runs a `.tflite` model in the TFLite Micro interpreter on float inputs.

    Samples are run one interpreter call at a time, as on a microcontroller.
    Int8 inputs are quantized and outputs dequantized with the model's own
    scales and zero points.

    Args:
        model: The `.tflite` model as a path or `bytes`.
        x: Float array of shape `(n,) + input_shape`, or a list with one such
            array per input.
        arena_size: Tensor arena in bytes. Defaults to `None`, which uses the
            minimum found by `find_arena_size`.

    Returns:
        A float32 array of shape `(n,) + output_shape`, or a list of such
        arrays when the model has several outputs.

    Raises:
        ExportError: If the interpreter cannot be created with `arena_size`
            (too small an arena, an unsupported operator).
        DataError: If `x` does not match the model's inputs.
        ImportError: If `tflite-micro` is not installed.

    Example:

    >>> logits = run_tflite_micro("model_int8.tflite", x_test[:10])
    """
    flatbuffer = _model_bytes(model)
    input_infos, output_infos = _io_tensors(flatbuffer)
    arrays = _as_input_arrays(x, input_infos)
    runtime = _micro_runtime()
    if arena_size is None:
        arena_size = find_arena_size(flatbuffer)
    with _native_output_captured() as captured:
        try:
            interpreter = runtime.Interpreter.from_bytes(
                flatbuffer, arena_size=int(arena_size)
            )
        except RuntimeError as error:
            raise ExportError(
                f"TFLite Micro could not prepare the model with a "
                f"{arena_size}-byte arena: {error}. Interpreter log:\n"
                f"{_log_tail(captured(), 10)}\nUse find_arena_size(model) for "
                "the minimum arena."
            ) from error

    def run_chunk(parts):
        for part, info in zip(parts, input_infos):
            interpreter.set_input(part, info.position)
        interpreter.invoke()
        return [
            _dequantize(np.asarray(interpreter.get_output(info.position)), info)
            for info in output_infos
        ]

    outputs = _run_in_chunks(
        arrays, input_infos, max(input_infos[0].shape[0], 1), run_chunk
    )
    return outputs[0] if len(outputs) == 1 else outputs


def evaluate_tflite_micro(model, x, y, arena_size=None):
    """Returns the top-1 accuracy of a `.tflite` model run in TFLite Micro.

    Args:
        model: The `.tflite` model as a path or `bytes`.
        x: Float inputs, as for `run_tflite_micro`.
        y: Integer class labels of shape `(n,)`, or one-hot labels.
        arena_size: Tensor arena in bytes. Defaults to `None`, the minimum
            found by `find_arena_size`.

    Returns:
        The top-1 accuracy of the first output, a float in `[0, 1]`.

    Raises:
        ExportError: If the interpreter cannot be created with `arena_size`.
        DataError: If `x` or `y` does not match the model.
        ImportError: If `tflite-micro` is not installed.

    Example:

    >>> evaluate_tflite_micro("model_int8.tflite", x_test[:500], y_test[:500])
    0.904
    """
    outputs = run_tflite_micro(model, x, arena_size=arena_size)
    first = outputs[0] if isinstance(outputs, list) else outputs
    return _top1_accuracy(first, y)


# ---------------------------------------------------------------------------
# Microcontroller bundle
# ---------------------------------------------------------------------------

# TFLite Micro's MicroMutableOpResolver method names follow the schema names
# in CamelCase, except for these.
_RESOLVER_METHOD_EXCEPTIONS = {
    "BATCH_MATMUL": "AddBatchMatMul",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}


def _resolver_method(operator):
    if operator in _RESOLVER_METHOD_EXCEPTIONS:
        return _RESOLVER_METHOD_EXCEPTIONS[operator]
    parts = operator.split("_")
    return "Add" + "".join(
        part if part[:1].isdigit() else part[:1] + part[1:].lower()
        for part in parts
    )


def _camel_case(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


@dataclasses.dataclass(frozen=True)
class MicroBundle:
    """What `export_micro` wrote and measured.

    Attributes:
        tflite_path: The int8 `.tflite` file.
        source_path: `<name>_model_data.cc`, the model as a C array.
        header_path: `<name>_model_data.h`, declarations, arena size and the
            input/output quantization constants.
        op_resolver_path: `<name>_op_resolver.h`, a function registering the
            operators in a `tflite::MicroMutableOpResolver`.
        manifest_path: `<name>_manifest.json`, all figures below.
        model_size: Size of the `.tflite` in bytes.
        operators: Builtin operators the model needs, e.g. `("CONV_2D", ...)`.
        arena_size: Minimum tensor arena in bytes (multiple of 16) found by
            running the model in TFLite Micro.
        accuracy: Top-1 accuracy of the int8 model under TFLite Micro on the
            evaluation data, or `None` without evaluation data.
        float_accuracy: Top-1 accuracy of the Keras model on the same data,
            or `None`.
        evaluated_samples: Number of evaluation samples (0 without).
    """

    tflite_path: str
    source_path: str
    header_path: str
    op_resolver_path: str
    manifest_path: str
    model_size: int
    operators: tuple
    arena_size: int
    accuracy: float = None
    float_accuracy: float = None
    evaluated_samples: int = 0

    @property
    def op_resolver_snippet(self):
        """C++ lines that register `operators` in an op resolver."""
        return micro_op_resolver_snippet(self.operators)


def micro_op_resolver_snippet(operators, variable="op_resolver"):
    """Returns C++ that builds a `tflite::MicroMutableOpResolver` for `operators`.

    Args:
        operators: Builtin operator names, as from `tflite_operators`.
        variable: Name of the resolver variable. Defaults to `"op_resolver"`.

    Returns:
        The C++ snippet as a string.

    Raises:
        ExportError: If an operator is custom (TFLite Micro needs its own
            registration for it).

    Example:

    >>> print(micro_op_resolver_snippet(["CONV_2D", "FULLY_CONNECTED"]))
    tflite::MicroMutableOpResolver<2> op_resolver;
    op_resolver.AddConv2D();
    op_resolver.AddFullyConnected();
    """
    custom = [op for op in operators if op.startswith("CUSTOM:")]
    if custom:
        raise ExportError(
            f"The model uses custom operators {custom}; TFLite Micro has no "
            "builtin registration for them. Replace the layers that produce "
            "them, or register your own kernels."
        )
    lines = [f"tflite::MicroMutableOpResolver<{len(operators)}> {variable};"]
    lines += [f"{variable}.{_resolver_method(op)}();" for op in operators]
    return "\n".join(lines)


def _c_array(flatbuffer, per_line=12):
    rows = []
    for start in range(0, len(flatbuffer), per_line):
        chunk = flatbuffer[start : start + per_line]
        rows.append("    " + ", ".join(f"0x{byte:02x}" for byte in chunk) + ",")
    return "\n".join(rows)


def _quantization_constants(prefix, infos, kind):
    lines = []
    for info in infos:
        suffix = f"{kind}{info.key.split('_')[-1]}" if len(infos) > 1 else kind
        lines.append(
            f"constexpr float k{prefix}{suffix}Scale = {info.scale!r}f;"
        )
        lines.append(
            f"constexpr int k{prefix}{suffix}ZeroPoint = {info.zero_point};"
        )
    return lines


def export_micro(
    model,
    out_dir,
    name,
    representative_data,
    evaluation_data=None,
    representative_samples=200,
    max_arena_size=64 * 1024 * 1024,
):
    """Writes a TFLite Micro bundle: int8 model, C array, op list, arena size.

    The model is converted to full-integer int8 (int8 input and output) with
    a static batch of 1 (one inference at a time, as on a microcontroller) and
    written to `out_dir` as:

    - `<name>.tflite`;
    - `<name>_model_data.cc` / `.h`: the exact bytes of the `.tflite` as
      `alignas(16) const unsigned char g_<name>_model_data[]` with its length
      `g_<name>_model_data_len`; the header also holds the arena size
      (`k<Name>TensorArenaSize`) and the input/output scale and zero point to
      quantize sensor data on the device;
    - `<name>_op_resolver.h`: `Register<Name>Operators(resolver)` adding
      exactly the operators the model uses to a
      `tflite::MicroMutableOpResolver<k<Name>OperatorCount>`;
    - `<name>_manifest.json`: operators, arena size, sizes and accuracies.

    The arena size is the minimum found by running the model in TFLite Micro
    (see `find_arena_size`). With `evaluation_data`, the int8 model is run
    sample by sample in TFLite Micro with that arena, and its accuracy is
    reported next to the Keras model's.

    Args:
        model: A built `keras.Model` with fully known input shape.
        out_dir: Output directory, created if missing.
        name: Base name of the files and C identifiers: a C identifier such
            as `"kws_cnn"`.
        representative_data: Calibration inputs for int8 quantization (see
            `convert_tflite`).
        evaluation_data: `(x, y)` arrays or a `tf.data.Dataset` of `(x, y)`,
            for the accuracy under TFLite Micro. Defaults to `None`.
        representative_samples: At most this many calibration samples.
            Defaults to `200`.
        max_arena_size: Largest arena tried, in bytes. Defaults to 64 MiB.

    Returns:
        A `MicroBundle` with the paths and figures.

    Raises:
        ConfigurationError: If `name` is not a C identifier.
        UnsupportedModelError: If the model's input shape is not fully known.
        DataError: If the data does not match the model inputs.
        ExportError: If conversion fails, the model uses custom operators or
            does not run in TFLite Micro.
        ImportError: If `tflite-micro` is not installed.

    Example:

    >>> bundle = export_micro(model, "firmware/model", "kws_cnn",
    ...                       representative_data=x_train[:200],
    ...                       evaluation_data=(x_test, y_test))
    >>> bundle.arena_size, bundle.accuracy
    (10432, 0.912)
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigurationError(
            f"`name` must be a C identifier (letters, digits, underscores, "
            f"not starting with a digit), received {name!r}; it names the "
            "files and the C array."
        )
    if representative_data is None:
        raise ConfigurationError(
            "export_micro needs `representative_data` to calibrate the int8 "
            "model: pass a few hundred training inputs."
        )
    inputs = _model_inputs(model)
    flatbuffer = convert_tflite(
        model, "int8", representative_data, representative_samples, batch_size=1
    )
    operators = tflite_operators(flatbuffer)
    snippet = micro_op_resolver_snippet(operators, variable="resolver")
    arena_size = find_arena_size(flatbuffer, max_arena_size=max_arena_size)

    accuracy = float_accuracy = None
    evaluated = 0
    if evaluation_data is not None:
        x, y = _as_arrays(evaluation_data, inputs)
        evaluated = len(y)
        accuracy = evaluate_tflite_micro(flatbuffer, x, y, arena_size=arena_size)
        predictions = model.predict(x if len(x) > 1 else x[0], verbose=0)
        first = keras.tree.flatten(predictions)[0]
        float_accuracy = _top1_accuracy(np.asarray(first), y)

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    camel = _camel_case(name)
    guard = f"TF_ASAP_{name.upper()}"
    input_infos, output_infos = _io_tensors(flatbuffer)
    paths = {
        "tflite": os.path.join(out_dir, f"{name}.tflite"),
        "source": os.path.join(out_dir, f"{name}_model_data.cc"),
        "header": os.path.join(out_dir, f"{name}_model_data.h"),
        "resolver": os.path.join(out_dir, f"{name}_op_resolver.h"),
        "manifest": os.path.join(out_dir, f"{name}_manifest.json"),
    }
    header = [
        f"// Generated by tf_asap from Keras model '{model.name}'. Do not edit.",
        f"#ifndef {guard}_MODEL_DATA_H_",
        f"#define {guard}_MODEL_DATA_H_",
        "",
        f"extern const unsigned char g_{name}_model_data[];",
        f"extern const unsigned int g_{name}_model_data_len;",
        "",
        "// Minimum tensor arena, measured by running the model in the TFLite",
        "// Micro interpreter (reference kernels). Optimized kernels such as",
        "// CMSIS-NN may need extra scratch memory: add headroom for them.",
        f"constexpr int k{camel}TensorArenaSize = {arena_size};",
        "",
        "// int8 quantization: real = scale * (q - zero_point).",
        *_quantization_constants(camel, input_infos, "Input"),
        *_quantization_constants(camel, output_infos, "Output"),
        "",
        f"#endif  // {guard}_MODEL_DATA_H_",
        "",
    ]
    source = [
        f"// Generated by tf_asap from Keras model '{model.name}'. Do not edit.",
        f'#include "{name}_model_data.h"',
        "",
        f"alignas(16) const unsigned char g_{name}_model_data[] = {{",
        _c_array(flatbuffer),
        "};",
        f"const unsigned int g_{name}_model_data_len = {len(flatbuffer)};",
        "",
    ]
    resolver = [
        f"// Generated by tf_asap: the operators {name}.tflite uses.",
        f"#ifndef {guard}_OP_RESOLVER_H_",
        f"#define {guard}_OP_RESOLVER_H_",
        "",
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        "",
        f"constexpr int k{camel}OperatorCount = {len(operators)};",
        f"using {camel}OpResolver =",
        f"    tflite::MicroMutableOpResolver<k{camel}OperatorCount>;",
        "",
        f"inline TfLiteStatus Register{camel}Operators({camel}OpResolver& resolver) {{",
        *[
            f"  TF_LITE_ENSURE_STATUS(resolver.{_resolver_method(op)}());"
            for op in operators
        ],
        "  return kTfLiteOk;",
        "}",
        "",
        "// Equivalent inline snippet:",
        *[f"//   {line}" for line in snippet.splitlines()],
        "",
        f"#endif  // {guard}_OP_RESOLVER_H_",
        "",
    ]
    bundle = MicroBundle(
        tflite_path=paths["tflite"],
        source_path=paths["source"],
        header_path=paths["header"],
        op_resolver_path=paths["resolver"],
        manifest_path=paths["manifest"],
        model_size=len(flatbuffer),
        operators=tuple(operators),
        arena_size=arena_size,
        accuracy=accuracy,
        float_accuracy=float_accuracy,
        evaluated_samples=evaluated,
    )
    manifest = {
        key: value
        for key, value in dataclasses.asdict(bundle).items()
        if not key.endswith("_path")
    }
    manifest["operators"] = list(operators)
    manifest["files"] = {key: os.path.basename(p) for key, p in paths.items()}
    manifest["inputs"] = [dataclasses.asdict(info) for info in input_infos]
    manifest["outputs"] = [dataclasses.asdict(info) for info in output_infos]
    atomic_write_bytes(paths["tflite"], flatbuffer)
    atomic_write_text(paths["source"], "\n".join(source))
    atomic_write_text(paths["header"], "\n".join(header))
    atomic_write_text(paths["resolver"], "\n".join(resolver))
    atomic_write_text(paths["manifest"], json.dumps(manifest, indent=2) + "\n")
    return bundle


# ---------------------------------------------------------------------------
# Latency and size
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LatencyRow:
    """One model's line in a latency report.

    Attributes:
        name: The key the model was given under.
        size_bytes: Size of the `.tflite` flatbuffer.
        latency_ms: Median batch-1 latency in milliseconds.
        latency_p10_ms / latency_p90_ms: 10th and 90th percentiles.
        params: Parameter count, or `None` when unknown.
        flops: FLOPs of one sample, or `None` when unknown.
        speedup: Baseline latency divided by this latency.
        flops_ratio: Baseline FLOPs divided by these FLOPs (the speedup a
            perfectly compute-bound runtime would reach), or `None`.
        efficiency: `speedup / flops_ratio`, how close the runtime gets to
            the FLOPs bound, or `None`.
    """

    name: str
    size_bytes: int
    latency_ms: float
    latency_p10_ms: float
    latency_p90_ms: float
    params: int = None
    flops: int = None
    speedup: float = 1.0
    flops_ratio: float = None
    efficiency: float = None


def _cost_pair(cost):
    """Reads (params, flops) from a pair, a mapping or an object."""
    if cost is None:
        return None, None
    if isinstance(cost, dict):
        return cost.get("params"), cost.get("flops")
    if isinstance(cost, (tuple, list)) and len(cost) == 2:
        return cost[0], cost[1]
    if hasattr(cost, "params") and hasattr(cost, "flops"):
        return cost.params, cost.flops
    raise ConfigurationError(
        "Each value of `costs` must be a (params, flops) pair, a dict with "
        "'params' and 'flops', or an object with .params and .flops; "
        f"received {type(cost).__name__}."
    )


def _count_cost(model):
    try:
        return count_cost(model)
    except (UnsupportedModelError, UnsupportedLayerError):
        # Latency is still worth reporting for a model we cannot count.
        return None


def latency_report(
    models,
    quantization="none",
    representative_data=None,
    costs=None,
    baseline=None,
    num_runs=200,
    warmup_runs=20,
    num_threads=1,
    seed=0,
    clock="wall",
):
    """Measures batch-1 LiteRT latency and size of several models side by side.

    Keras models are converted with `convert_tflite(model, quantization,
    batch_size=1)`; `.tflite` paths or bytes are used as they are. Every model gets its own
    interpreter with `num_threads` threads (XNNPACK, LiteRT's default CPU
    path), `warmup_runs` untimed calls, then `num_runs` timed calls. The
    timed calls are interleaved across models (round robin) so that CPU
    frequency changes and background load hit all models alike; the median
    is reported.

    `clock="cpu"` times each call with the calling thread's CPU time instead
    of the wall clock. With one LiteRT thread the work runs on the calling
    thread, so this excludes the time the process waits while other
    processes hold the cores: use it on a shared or loaded machine, where
    wall-clock medians mostly measure the neighbours.

    With params and FLOPs (from `costs`, or `tf_asap.count_cost` for Keras
    models), each row also shows the
    FLOPs ratio to the baseline, the speedup a compute-bound runtime would
    reach, and `efficiency = speedup / flops_ratio`.

    Args:
        models: Dict from display name to a `keras.Model`, a `.tflite` path
            or `.tflite` bytes. Insertion order is the row order.
        quantization: Quantization for Keras models (see `convert_tflite`).
            Defaults to `"none"`.
        representative_data: Calibration data when `quantization="int8"`.
            Defaults to `None`.
        costs: Optional dict from name to `(params, flops)`, a dict with
            those keys, or an object with `.params` and `.flops`. Defaults to
            `None`.
        baseline: Name of the reference model for speedups. Defaults to
            `None`, the first model.
        num_runs: Timed calls per model. Defaults to `200`.
        warmup_runs: Untimed calls per model before timing. Defaults to `20`.
        num_threads: LiteRT threads. Defaults to `1`.
        seed: Seed of the random input. Defaults to `0`.
        clock: `"wall"` (elapsed time) or `"cpu"` (CPU time of the calling
            thread; only meaningful with `num_threads=1`). Defaults to
            `"wall"`.

    Returns:
        A list of `LatencyRow`, in the order of `models`.

    Raises:
        ConfigurationError: If `models` is empty, `baseline` is not one of
            its names, or run counts are not positive.
        ImportError: If `ai-edge-litert` is not installed.

    Example:

    >>> rows = latency_report({"original": model, "slimmed": slim_model})
    >>> print(render_latency_table(rows))
    """
    if not models:
        raise ConfigurationError("`models` is empty; give at least one model.")
    names = list(models)
    if baseline is None:
        baseline = names[0]
    if baseline not in models:
        raise ConfigurationError(
            f"`baseline` {baseline!r} is not one of the models {names}."
        )
    clocks = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}
    if clock not in clocks:
        raise ConfigurationError(
            f"`clock` must be 'wall' or 'cpu', received {clock!r}."
        )
    if clock == "cpu" and num_threads != 1:
        raise ConfigurationError(
            "clock='cpu' measures the calling thread only, which misses the "
            f"work of LiteRT's other threads: use num_threads=1, received "
            f"{num_threads}."
        )
    now = clocks[clock]
    if num_runs < 1 or warmup_runs < 0:
        raise ConfigurationError(
            "`num_runs` must be at least 1 and `warmup_runs` at least 0, "
            f"received {num_runs} and {warmup_runs}."
        )
    costs = dict(costs or {})
    rng = np.random.default_rng(seed)
    runners = {}
    for name in names:
        model = models[name]
        if isinstance(model, keras.Model):
            flatbuffer = convert_tflite(
                model, quantization, representative_data, batch_size=1
            )
            if name not in costs:
                costs[name] = _count_cost(model)
        else:
            flatbuffer = _model_bytes(model)
        input_infos, _ = _io_tensors(flatbuffer)
        interpreter = _litert_interpreter(flatbuffer, num_threads)
        details = interpreter.get_input_details()
        for detail in details:
            if detail["shape_signature"][0] == -1:
                interpreter.resize_tensor_input(
                    detail["index"], [1] + list(detail["shape"][1:])
                )
        interpreter.allocate_tensors()
        for info in input_infos:
            shape = (1,) + info.shape[1:]
            sample = rng.standard_normal(shape).astype(np.float32)
            if info.dtype in ("int8", "uint8"):
                sample = _quantize(sample, info)
            else:
                sample = sample.astype(info.dtype)
            interpreter.set_tensor(details[info.position]["index"], sample)
        for _ in range(warmup_runs):
            interpreter.invoke()
        runners[name] = (interpreter, len(flatbuffer))

    timings = {name: [] for name in names}
    for _ in range(num_runs):
        for name in names:
            interpreter = runners[name][0]
            start = now()
            interpreter.invoke()
            timings[name].append((now() - start) / 1e6)

    medians = {name: statistics.median(timings[name]) for name in names}
    base_params, base_flops = _cost_pair(costs.get(baseline))
    rows = []
    for name in names:
        params, flops = _cost_pair(costs.get(name))
        speedup = medians[baseline] / medians[name]
        flops_ratio = None
        if flops and base_flops:
            flops_ratio = base_flops / flops
        quantiles = np.percentile(timings[name], [10, 90])
        rows.append(
            LatencyRow(
                name=name,
                size_bytes=runners[name][1],
                latency_ms=medians[name],
                latency_p10_ms=float(quantiles[0]),
                latency_p90_ms=float(quantiles[1]),
                params=None if params is None else int(params),
                flops=None if flops is None else int(flops),
                speedup=speedup,
                flops_ratio=flops_ratio,
                efficiency=None if flops_ratio is None else speedup / flops_ratio,
            )
        )
    return rows


def _human(count):
    if count is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def render_latency_table(rows):
    """Renders `latency_report` rows as a Markdown table.

    Args:
        rows: A list of `LatencyRow`.

    Returns:
        The table as a string, one row per model, with size, params, FLOPs,
        median latency (and its 10th-90th percentile range), speedup, FLOPs
        ratio and efficiency (`speedup / FLOPs ratio`; 100% is the
        compute-bound limit).

    Example:

    >>> print(render_latency_table(latency_report({"a": a, "b": b})))
    | model | size (KiB) | params | FLOPs | latency (ms) | ...
    """
    lines = [
        "| model | size (KiB) | params | FLOPs | latency ms (p10-p90) "
        "| speedup | FLOPs ratio | speedup / FLOPs ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = "-" if row.flops_ratio is None else f"{row.flops_ratio:.2f}x"
        efficiency = "-" if row.efficiency is None else f"{row.efficiency:.0%}"
        lines.append(
            f"| {row.name} | {row.size_bytes / 1024:.1f} | {_human(row.params)} "
            f"| {_human(row.flops)} | {row.latency_ms:.3f} "
            f"({row.latency_p10_ms:.3f}-{row.latency_p90_ms:.3f}) "
            f"| {row.speedup:.2f}x | {ratio} | {efficiency} |"
        )
    return "\n".join(lines)
