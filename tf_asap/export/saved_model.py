"""SavedModel export in the directory layout TF Serving loads.

`export_saved_model` writes `<base_dir>/<name>/<version>/` with the one
`serving_default` signature of `tf_asap.export.serving`. A version appears
whole or not at all: it is written under a hidden name beside its final place
and renamed when complete, and TF Serving loads only numeric directory names.
"""

import os
import shutil
import tempfile

from tf_asap.checks import check_int
from tf_asap.errors import ConfigurationError, ExportError
from tf_asap.export.native_output import log_tail, native_output_captured
from tf_asap.export.serving import model_inputs, write_serving_saved_model


def _check_path_component(value, argument):
    if not isinstance(value, str) or not value or value in (".", "..") or "/" in value or os.sep in value:
        raise ConfigurationError(
            f"`{argument}` must be a non-empty name without path separators, "
            f"received {value!r}. Put directories in `base_dir` instead."
        )


def _replace_directory(staging_dir, final_dir, parent_dir, version):
    """Renames `staging_dir` to `final_dir`, replacing an existing version."""
    if not os.path.exists(final_dir):
        os.rename(staging_dir, final_dir)
        return
    # Move the old version aside first so that a failure between the two
    # renames leaves a complete directory behind.
    retired_dir = tempfile.mkdtemp(dir=parent_dir, prefix=f".{version}.old-")
    os.rename(final_dir, os.path.join(retired_dir, "version"))
    os.rename(staging_dir, final_dir)
    shutil.rmtree(retired_dir, ignore_errors=True)


def export_saved_model(model, base_dir, name, version=1, overwrite=False):
    """Exports a model as a SavedModel in the TF Serving directory layout.

    The model is written to `<base_dir>/<name>/<version>/` with a single
    signature, `serving_default`, that runs the model in inference mode
    (`training=False`). Its keys are stable and independent of Keras'
    automatic layer names: the inputs are `"input_0"`, `"input_1"`, ... in the
    order of `model.inputs`, the outputs `"output_0"`, `"output_1"`, ... in
    the order of `model.outputs`. The batch dimension is left unknown, and so
    are other dimensions that are unknown in the model.

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
    inputs = model_inputs(model)
    _check_path_component(name, "name")
    version = check_int(
        "version", version, minimum=1, fix="TF Serving versions are numeric directory names: pass 1, 2, ..."
    )
    model_dir = os.path.join(os.fspath(base_dir), name)
    final_dir = os.path.join(model_dir, str(version))
    if os.path.exists(final_dir) and not overwrite:
        raise ExportError(
            f"Version directory {final_dir} already exists. Pass a new `version`, or `overwrite=True` to replace it."
        )
    os.makedirs(model_dir, exist_ok=True)
    staging_dir = tempfile.mkdtemp(dir=model_dir, prefix=f".{version}.tmp-")
    try:
        with native_output_captured() as captured:
            try:
                write_serving_saved_model(model, inputs, staging_dir)
            except Exception as error:
                raise ExportError(
                    f"Saving model '{model.name}' as a SavedModel failed: {error}. Check "
                    "that the model runs in TensorFlow (model(x, training=False)) and "
                    f"that {model_dir} is writable.\nTensorFlow log:\n{log_tail(captured())}"
                ) from error
        _replace_directory(staging_dir, final_dir, model_dir, version)
    finally:
        if os.path.exists(staging_dir):
            shutil.rmtree(staging_dir, ignore_errors=True)
    return final_dir
