"""The microcontroller bundle: an int8 `.tflite`, its C array, op resolver and arena.

`export_micro` writes what a TFLite Micro firmware project needs to run a
model: the exact flatbuffer bytes as a C array, the operators to register in a
`tflite::MicroMutableOpResolver`, the minimum tensor arena measured by running
the model in TFLite Micro, and the input/output quantization constants.
"""

import dataclasses
import os
import re

import keras
import numpy as np

from tf_asap.errors import ConfigurationError, ExportError
from tf_asap.export.flatbuffer import io_tensors, tflite_operators
from tf_asap.export.micro import DEFAULT_MAX_ARENA_SIZE, evaluate_tflite_micro, find_arena_size
from tf_asap.export.runtime_io import evaluation_arrays, top1_accuracy
from tf_asap.export.tflite import DEFAULT_REPRESENTATIVE_SAMPLES, convert_tflite
from tf_asap.files import atomic_write_bytes, atomic_write_json, atomic_write_text

# TFLite Micro's MicroMutableOpResolver method names follow the schema names
# in CamelCase, except for these.
_RESOLVER_METHOD_EXCEPTIONS = {
    "BATCH_MATMUL": "AddBatchMatMul",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}


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


def _resolver_method(operator):
    if operator in _RESOLVER_METHOD_EXCEPTIONS:
        return _RESOLVER_METHOD_EXCEPTIONS[operator]
    return "Add" + "".join(part if part[:1].isdigit() else part[:1] + part[1:].lower() for part in operator.split("_"))


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
    custom = [operator for operator in operators if operator.startswith("CUSTOM:")]
    if custom:
        raise ExportError(
            f"The model uses custom operators {custom}; TFLite Micro has no "
            "builtin registration for them. Replace the layers that produce "
            "them, or register your own kernels."
        )
    lines = [f"tflite::MicroMutableOpResolver<{len(operators)}> {variable};"]
    lines += [f"{variable}.{_resolver_method(operator)}();" for operator in operators]
    return "\n".join(lines)


def _camel_case(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


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
        lines.append(f"constexpr float k{prefix}{suffix}Scale = {info.scale!r}f;")
        lines.append(f"constexpr int k{prefix}{suffix}ZeroPoint = {info.zero_point};")
    return lines


def _header(name, model_name, arena_size, flatbuffer):
    camel, guard = _camel_case(name), f"TF_ASAP_{name.upper()}"
    input_infos, output_infos = io_tensors(flatbuffer)
    lines = [
        f"// Generated by tf_asap from Keras model '{model_name}'. Do not edit.",
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
    return "\n".join(lines)


def _source(name, model_name, flatbuffer):
    lines = [
        f"// Generated by tf_asap from Keras model '{model_name}'. Do not edit.",
        f'#include "{name}_model_data.h"',
        "",
        f"alignas(16) const unsigned char g_{name}_model_data[] = {{",
        _c_array(flatbuffer),
        "};",
        f"const unsigned int g_{name}_model_data_len = {len(flatbuffer)};",
        "",
    ]
    return "\n".join(lines)


def _op_resolver(name, operators):
    camel, guard = _camel_case(name), f"TF_ASAP_{name.upper()}"
    snippet = micro_op_resolver_snippet(operators, variable="resolver")
    lines = [
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
        *[f"  TF_LITE_ENSURE_STATUS(resolver.{_resolver_method(operator)}());" for operator in operators],
        "  return kTfLiteOk;",
        "}",
        "",
        "// Equivalent inline snippet:",
        *[f"//   {line}" for line in snippet.splitlines()],
        "",
        f"#endif  // {guard}_OP_RESOLVER_H_",
        "",
    ]
    return "\n".join(lines)


def _manifest(bundle, paths, flatbuffer):
    input_infos, output_infos = io_tensors(flatbuffer)
    manifest = {key: value for key, value in dataclasses.asdict(bundle).items() if not key.endswith("_path")}
    manifest["operators"] = list(bundle.operators)
    manifest["files"] = {key: os.path.basename(path) for key, path in paths.items()}
    manifest["inputs"] = [dataclasses.asdict(info) for info in input_infos]
    manifest["outputs"] = [dataclasses.asdict(info) for info in output_infos]
    return manifest


def _accuracies(model, flatbuffer, evaluation_data, arena_size):
    """(int8 accuracy under TFLite Micro, Keras accuracy, sample count)."""
    if evaluation_data is None:
        return None, None, 0
    x, y = evaluation_arrays(evaluation_data, model)
    accuracy = evaluate_tflite_micro(flatbuffer, x, y, arena_size=arena_size)
    predictions = model.predict(x if len(x) > 1 else x[0], verbose=0)
    float_accuracy = top1_accuracy(np.asarray(keras.tree.flatten(predictions)[0]), y)
    return accuracy, float_accuracy, len(y)


def _check_bundle_arguments(name, representative_data):
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigurationError(
            f"`name` must be a C identifier (letters, digits, underscores, "
            f"not starting with a digit), received {name!r}; it names the "
            "files and the C array. Use e.g. 'kws_cnn'."
        )
    if representative_data is None:
        raise ConfigurationError(
            "export_micro needs `representative_data` to calibrate the int8 "
            "model: pass a few hundred training inputs."
        )


def export_micro(
    model,
    out_dir,
    name,
    representative_data,
    evaluation_data=None,
    representative_samples=DEFAULT_REPRESENTATIVE_SAMPLES,
    max_arena_size=DEFAULT_MAX_ARENA_SIZE,
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
        evaluation_data: Labelled data for the accuracy under TFLite Micro:
            `(x, y)` arrays, a `tf.data.Dataset` of `(x, y)` or any other
            form `tf_asap.as_batches` accepts. Defaults to `None`.
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
    _check_bundle_arguments(name, representative_data)
    flatbuffer = convert_tflite(model, "int8", representative_data, representative_samples, batch_size=1)
    operators = tflite_operators(flatbuffer)
    micro_op_resolver_snippet(operators)  # Refuses custom operators before the slow arena search.
    arena_size = find_arena_size(flatbuffer, max_arena_size=max_arena_size)
    accuracy, float_accuracy, evaluated = _accuracies(model, flatbuffer, evaluation_data, arena_size)

    out_dir = os.fspath(out_dir)
    paths = {
        "tflite": os.path.join(out_dir, f"{name}.tflite"),
        "source": os.path.join(out_dir, f"{name}_model_data.cc"),
        "header": os.path.join(out_dir, f"{name}_model_data.h"),
        "resolver": os.path.join(out_dir, f"{name}_op_resolver.h"),
        "manifest": os.path.join(out_dir, f"{name}_manifest.json"),
    }
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
    atomic_write_bytes(paths["tflite"], flatbuffer)
    atomic_write_text(paths["source"], _source(name, model.name, flatbuffer))
    atomic_write_text(paths["header"], _header(name, model.name, arena_size, flatbuffer))
    atomic_write_text(paths["resolver"], _op_resolver(name, operators))
    atomic_write_json(paths["manifest"], _manifest(bundle, paths, flatbuffer))
    return bundle
