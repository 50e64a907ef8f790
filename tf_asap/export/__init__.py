"""Deployment: SavedModel for TF Serving, TFLite (float, int8), LiteRT, TFLite Micro and latency.

The last stage of the pipeline, one module per job:

- `serving`: the signature both exports carry (`input_0`... -> `output_0`...);
- `saved_model`: `export_saved_model`, the TF Serving directory layout;
- `tflite`: `convert_tflite` / `export_tflite` (float32, float16, dynamic,
  int8 calibrated on representative data read by `tf_asap.inputs`);
- `flatbuffer`: `tflite_operators` and the input/output tensors of a `.tflite`;
- `litert`: `run_tflite` / `evaluate_tflite` in the LiteRT interpreter;
- `micro`: `run_tflite_micro` / `evaluate_tflite_micro` / `find_arena_size` in
  TFLite Micro; `micro_bundle`: `export_micro`, the firmware bundle;
- `latency`: `latency_report` / `render_latency_table`.

The runtimes (`ai-edge-litert`, `tflite-micro`) are optional dependencies,
imported only inside the functions that run a model
(`pip install tf_asap[tflite]`).
"""

from tf_asap.export.flatbuffer import TensorInfo, tflite_operators
from tf_asap.export.latency import LatencyRow, int8_latency_caveat, latency_report, render_latency_table
from tf_asap.export.litert import evaluate_tflite, run_tflite
from tf_asap.export.micro import ARENA_ALIGNMENT, evaluate_tflite_micro, find_arena_size, run_tflite_micro
from tf_asap.export.micro_bundle import MicroBundle, export_micro, micro_op_resolver_snippet
from tf_asap.export.saved_model import export_saved_model
from tf_asap.export.serving import SERVING_SIGNATURE_KEY, input_key, output_key
from tf_asap.export.tflite import QUANTIZATION_MODES, convert_tflite, export_tflite

__all__ = [
    "ARENA_ALIGNMENT",
    "LatencyRow",
    "MicroBundle",
    "QUANTIZATION_MODES",
    "SERVING_SIGNATURE_KEY",
    "TensorInfo",
    "convert_tflite",
    "evaluate_tflite",
    "evaluate_tflite_micro",
    "export_micro",
    "export_saved_model",
    "export_tflite",
    "find_arena_size",
    "input_key",
    "int8_latency_caveat",
    "latency_report",
    "micro_op_resolver_snippet",
    "output_key",
    "render_latency_table",
    "run_tflite",
    "run_tflite_micro",
    "tflite_operators",
]
