"""Reading a `.tflite` flatbuffer: its operators and its input/output tensors.

TensorFlow has no public reader for the TFLite flatbuffer; the generated
schema module ships in every TF wheel (and, identically, in LiteRT), so the
file is read with it, without starting an interpreter.
"""

import dataclasses
import os
import re

from tf_asap.errors import ConfigurationError, ExportError

try:
    from tensorflow.lite.python import schema_py_generated as _schema
except ImportError:  # pragma: no cover - a TensorFlow build without TFLite.
    # The optional LiteRT package ships the same generated module.
    from ai_edge_litert import schema_py_generated as _schema

_TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 9: "int8"}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor of a `.tflite` model.

    Attributes:
        key: Its signature key (`"input_0"`, `"output_1"`, ...).
        position: Its index in the subgraph's input or output list, which
            is how runtimes address it.
        dtype: Its element type, e.g. `"int8"` or `"float32"`.
        shape: Its shape (the batch dimension as stored, usually 1).
        scale: Quantization scale (0.0 for float tensors).
        zero_point: Quantization zero point.
    """

    key: str
    position: int
    dtype: str
    shape: tuple
    scale: float
    zero_point: int


def read_model_bytes(model):
    """Returns a `.tflite` model given as a path or bytes, as `bytes`.

    Raises:
        ExportError: If the path is not a file.
        ConfigurationError: If `model` is neither a path nor bytes.
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        if not os.path.isfile(model):
            raise ExportError(
                f"No .tflite file at {os.fspath(model)}. Check the path, or write "
                "one with export_tflite(model, path)."
            )
        with open(model, "rb") as file:
            return file.read()
    raise ConfigurationError(
        "Expected a .tflite model as a path or bytes, received an object of "
        f"type {type(model).__name__}. Convert a Keras model first with "
        "convert_tflite(model) or export_tflite(model, path)."
    )


def _root(flatbuffer):
    schema = _schema
    if len(flatbuffer) < 8 or flatbuffer[4:8] != b"TFL3":
        raise ExportError(
            "The data is not a TFLite flatbuffer (no 'TFL3' identifier). Pass "
            "the bytes of convert_tflite(model) or the path of a .tflite file."
        )
    return schema, schema.Model.GetRootAs(flatbuffer, 0)


def _operator_code_names(schema, root):
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    codes = []
    for index in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(index)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            codes.append(f"CUSTOM:{custom.decode() if custom else '?'}")
        else:
            codes.append(names.get(builtin, f"BUILTIN_{builtin}"))
    return codes


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
    schema, root = _root(read_model_bytes(model))
    codes = _operator_code_names(schema, root)
    used = []
    for subgraph_index in range(root.SubgraphsLength()):
        subgraph = root.Subgraphs(subgraph_index)
        for op_index in range(subgraph.OperatorsLength()):
            name = codes[subgraph.Operators(op_index).OpcodeIndex()]
            if name not in used:
                used.append(name)
    return used


def _signature_keys(root):
    """Tensor index -> signature key, for subgraph 0."""
    keys = {}
    for index in range(root.SignatureDefsLength()):
        signature = root.SignatureDefs(index)
        if signature.SubgraphIndex() != 0:
            continue
        for getter, count in (
            (signature.Inputs, signature.InputsLength()),
            (signature.Outputs, signature.OutputsLength()),
        ):
            for position in range(count):
                tensor_map = getter(position)
                keys[tensor_map.TensorIndex()] = tensor_map.Name().decode()
    return keys


def _describe(subgraph, tensor_indices, keys, prefix):
    infos = []
    for position, tensor_index in enumerate(tensor_indices):
        tensor = subgraph.Tensors(int(tensor_index))
        quantization = tensor.Quantization()
        scale, zero_point = 0.0, 0
        if quantization is not None and quantization.ScaleLength():
            scale = float(quantization.Scale(0))
            zero_point = int(quantization.ZeroPoint(0))
        infos.append(
            TensorInfo(
                key=keys.get(int(tensor_index), f"{prefix}{position}"),
                position=position,
                dtype=_TENSOR_TYPES.get(tensor.Type(), f"type{tensor.Type()}"),
                shape=tuple(int(dim) for dim in tensor.ShapeAsNumpy()),
                scale=scale,
                zero_point=zero_point,
            )
        )

    def order(info):
        match = re.fullmatch(rf"{prefix}(\d+)", info.key)
        return (0, int(match.group(1))) if match else (1, info.position)

    return sorted(infos, key=order)


def io_tensors(flatbuffer):
    """Returns `(inputs, outputs)` of subgraph 0 as `TensorInfo` lists, by signature key.

    Runtimes address inputs by position in the subgraph's input list, which
    the converter does not promise to keep in `input_0, input_1...` order; the
    signature maps keys to tensors, so it decides the order where present.

    Args:
        flatbuffer: The `.tflite` model as `bytes`.

    Raises:
        ExportError: If `flatbuffer` is not a TFLite flatbuffer.
    """
    _, root = _root(flatbuffer)
    subgraph = root.Subgraphs(0)
    keys = _signature_keys(root)
    return (
        _describe(subgraph, subgraph.InputsAsNumpy(), keys, "input_"),
        _describe(subgraph, subgraph.OutputsAsNumpy(), keys, "output_"),
    )
