"""The serving contract shared by the SavedModel and the `.tflite` exports.

Both exports carry one signature, `serving_default`, whose keys do not depend
on Keras' automatic layer names: the inputs are `"input_0"`, `"input_1"`, ...
in the order of `model.inputs`, the outputs `"output_0"`, `"output_1"`, ...
in the order of `model.outputs`. This module writes that signature and checks
that a model can be exported at all.
"""

import keras
import numpy as np
import tensorflow as tf

from tf_asap.errors import DataError, UnsupportedModelError

SERVING_SIGNATURE_KEY = "serving_default"
"""Signature key of the single endpoint of every export."""


def input_key(index):
    """Returns the signature key of the model input at `index` ("input_0")."""
    return f"input_{index}"


def output_key(index):
    """Returns the signature key of the model output at `index` ("output_0")."""
    return f"output_{index}"


def model_inputs(model):
    """Returns `model.inputs` as a list, or raises a clear error when it has none.

    Raises:
        UnsupportedModelError: If `model` is not a `keras.Model`, or its
            inputs are unknown (a subclassed or never-built model).
    """
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


def require_static_shapes(model, inputs):
    """Raises unless every input dimension except the batch one is known.

    Raises:
        UnsupportedModelError: Naming the input with an unknown dimension.
    """
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


def ordered_inputs(x, inputs):
    """Returns the arrays of one batch `x` as a list in the order of `inputs`.

    `x` is one array (a single-input model), a tuple or list with one array
    per input, or a dict keyed by the input names.

    Raises:
        DataError: If `x` does not hold one array per input.
    """
    if isinstance(x, dict):
        missing = [tensor.name for tensor in inputs if tensor.name not in x]
        if missing:
            raise DataError(
                f"Data is a dict with keys {sorted(x)}; the model's inputs are "
                f"named {[tensor.name for tensor in inputs]}. Key the arrays by "
                "those names, or pass them as a tuple in the order of model.inputs."
            )
        return [np.asarray(x[tensor.name]) for tensor in inputs]
    arrays = list(x) if isinstance(x, (tuple, list)) and len(inputs) > 1 else [x]
    if len(arrays) != len(inputs):
        raise DataError(
            f"The model has {len(inputs)} inputs but a data element holds "
            f"{len(arrays)} arrays. Give one array per input, in the order "
            "of model.inputs."
        )
    return [np.asarray(array) for array in arrays]


def input_signature(inputs, batch_size=None):
    """`tf.TensorSpec`s keyed `input_i`, with the batch dimension fixed on request."""
    return [
        tf.TensorSpec(
            (batch_size or tensor.shape[0],) + tuple(tensor.shape[1:]),
            tensor.dtype,
            name=input_key(index),
        )
        for index, tensor in enumerate(inputs)
    ]


def write_serving_saved_model(model, inputs, path, batch_size=None):
    """Writes a SavedModel with one `serving_default` signature keyed `input_i` / `output_i`.

    The signature runs the model with `training=False`.

    Args:
        model: The `keras.Model`.
        inputs: `model_inputs(model)`.
        path: The directory to write.
        batch_size: Fixes the batch dimension; `None` keeps the model's.
            Defaults to `None`.
    """
    multiple_inputs = len(inputs) > 1

    def serve(*tensors):
        outputs = model(list(tensors) if multiple_inputs else tensors[0], training=False)
        return {output_key(index): output for index, output in enumerate(keras.tree.flatten(outputs))}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SERVING_SIGNATURE_KEY,
        serve,
        input_signature=input_signature(inputs, batch_size),
    )
    archive.write_out(path, verbose=False)
