"""Deployment: SavedModel for TF Serving, TFLite (float, int8), LiteRT, TFLite Micro and latency."""

from tf_asap.export._legacy import (  # noqa: F401
    QUANTIZATION_MODES,
    LatencyRow,
    MicroBundle,
    convert_tflite,
    evaluate_tflite,
    evaluate_tflite_micro,
    export_micro,
    export_saved_model,
    export_tflite,
    find_arena_size,
    latency_report,
    render_latency_table,
    run_tflite,
    run_tflite_micro,
)
