"""TFLite conversion: float32, float16, dynamic-range and full-integer int8.

The conversion goes through the same `serving_default` SavedModel as
`export_saved_model`, so the `.tflite` carries a signature with the keys
`"input_0"`... and `"output_0"`.... Representative (calibration) data for
int8 is read through `tf_asap.inputs.as_batches`, so it may come in every form
the rest of tf_asap accepts.
"""

import os
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from tf_asap.checks import check_choice, check_int
from tf_asap.errors import ConfigurationError, DataError, ExportError
from tf_asap.export.native_output import log_tail, native_output_captured
from tf_asap.export.serving import (
    SERVING_SIGNATURE_KEY,
    input_key,
    model_inputs,
    ordered_inputs,
    require_static_shapes,
    write_serving_saved_model,
)
from tf_asap.files import atomic_write_bytes
from tf_asap.inputs import as_batches

QUANTIZATION_MODES = ("none", "float16", "dynamic", "int8")
"""Values accepted by the `quantization` argument of the TFLite functions."""

DEFAULT_REPRESENTATIVE_SAMPLES = 200
"""Calibration samples used for int8 unless told otherwise."""


def check_quantization(quantization, representative_data):
    """Raises unless `quantization` is known and has data exactly when it needs it."""
    check_choice(
        "quantization",
        quantization,
        QUANTIZATION_MODES,
        fix="'dynamic' needs no data; 'int8' is what microcontrollers run.",
    )
    if quantization == "int8" and representative_data is None:
        raise ConfigurationError(
            "quantization='int8' needs `representative_data` to calibrate "
            "activation ranges: pass a few hundred training inputs (a NumPy "
            "array, a tf.data.Dataset of x or (x, y), or a generator), or use "
            "quantization='dynamic', which needs no data."
        )
    if quantization != "int8" and representative_data is not None:
        raise ConfigurationError(
            f"`representative_data` is only used with quantization='int8', "
            f"received it with quantization={quantization!r}. Drop it, or ask "
            "for quantization='int8'."
        )


def calibration_batches(model, representative_data, samples, batch_size=None):
    """The first `samples` samples of `representative_data`, as converter batches.

    Args:
        model: The `keras.Model` being converted.
        representative_data: Data in any form `as_batches` accepts.
        samples: At most this many samples are read.
        batch_size: The `.tflite`'s static batch size, or `None` for a
            dynamic batch (then each batch holds one sample). Only whole
            batches are kept. Defaults to `None`.

    Returns:
        A list of batches, each a list with one array per model input, cast
        to the input's dtype.

    Raises:
        DataError: If the data does not fit the model or holds fewer samples
            than one batch.
    """
    inputs = model_inputs(model)
    size = batch_size or 1
    try:
        batches = [
            ordered_inputs(tf.nest.map_structure(np.asarray, x), inputs)
            for x in as_batches(representative_data, model, batch_size=size, limit=samples)
        ]
    except DataError as error:
        raise DataError(f"`representative_data` does not fit model '{model.name}': {error}") from error
    whole = [
        [array.astype(tensor.dtype, copy=False) for tensor, array in zip(inputs, batch)]
        for batch in batches
        if batch[0].shape[0] == size
    ]
    if not whole:
        raise DataError(
            f"`representative_data` yielded {sum(batch[0].shape[0] for batch in batches)} "
            f"samples, fewer than one batch of {size}; int8 calibration needs at "
            "least one batch (a few hundred samples is typical)."
        )
    return whole


def _configure(converter, quantization, calibration):
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":

        def dataset():
            for batch in calibration:
                yield {input_key(index): array for index, array in enumerate(batch)}

        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


def _convert(model, inputs, quantization, calibration, batch_size):
    """Runs the converter on a temporary SavedModel; its log goes into errors only."""
    with tempfile.TemporaryDirectory(prefix="tf_asap_tflite_") as work_dir:
        with native_output_captured() as captured:
            try:
                write_serving_saved_model(model, inputs, work_dir, batch_size)
                converter = tf.lite.TFLiteConverter.from_saved_model(
                    work_dir, signature_keys=[SERVING_SIGNATURE_KEY]
                )
                _configure(converter, quantization, calibration)
                with warnings.catch_warnings():
                    # The calibrator runs TF's own deprecated tf.lite
                    # Interpreter; the warning is about TF, not the user.
                    warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
                    return bytes(converter.convert())
            except Exception as error:
                hint = (
                    " Some operation may have no int8 kernel; quantization='dynamic' "
                    "or 'float16' keep float fallbacks."
                    if quantization == "int8"
                    else " Check that the model runs in TensorFlow: model(x, training=False)."
                )
                raise ExportError(
                    f"TFLite conversion of model '{model.name}' with "
                    f"quantization={quantization!r} failed: {error}.{hint}\n"
                    f"Converter log:\n{log_tail(captured())}"
                ) from error


def convert_tflite(
    model,
    quantization="none",
    representative_data=None,
    representative_samples=DEFAULT_REPRESENTATIVE_SAMPLES,
    batch_size=None,
):
    """Converts a Keras model to a TFLite flatbuffer in memory.

    The `.tflite` carries the `serving_default` signature with the keys
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
        representative_data: Calibration inputs for `"int8"`, in any form
            `tf_asap.as_batches` accepts: a NumPy array of samples, `(x, y)`
            arrays, a `tf.data.Dataset` of `x` or `(x, y)` (batched or not),
            or a generator. Defaults to `None`.
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
    inputs = model_inputs(model)
    require_static_shapes(model, inputs)
    check_quantization(quantization, representative_data)
    representative_samples = check_int("representative_samples", representative_samples, minimum=1)
    batch_size = check_int(
        "batch_size", batch_size, minimum=1, allow_none=True, fix="None keeps the model's batch dimension."
    )
    calibration = None
    if quantization == "int8":
        calibration = calibration_batches(model, representative_data, representative_samples, batch_size)
    return _convert(model, inputs, quantization, calibration, batch_size)


def export_tflite(
    model,
    path,
    quantization="none",
    representative_data=None,
    representative_samples=DEFAULT_REPRESENTATIVE_SAMPLES,
    batch_size=None,
):
    """Converts a Keras model to TFLite and writes the `.tflite` file.

    See `convert_tflite` for the quantization modes. The file is written
    atomically (`tf_asap.files`): a reader never sees a partial file; an
    existing file at `path` is replaced.

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
