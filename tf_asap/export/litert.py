"""Running and evaluating `.tflite` models in the LiteRT interpreter.

LiteRT (`ai-edge-litert`) is the runtime of phones and Linux devices; its CPU
path uses XNNPACK. It is an optional dependency, imported only when a model is
run (`pip install tf_asap[tflite]`).
"""

from tf_asap.export.flatbuffer import io_tensors, read_model_bytes
from tf_asap.export.native_output import native_output_captured
from tf_asap.export.runtime_io import (
    INSTALL_HINT,
    dequantize,
    first_output,
    input_arrays,
    run_in_chunks,
    top1_accuracy,
)


def litert_interpreter(flatbuffer, num_threads=1):
    """Returns an allocated LiteRT `Interpreter` for `flatbuffer`.

    Raises:
        ImportError: If `ai-edge-litert` is not installed, naming the extra.
    """
    try:
        # Optional dependency, imported here so that tf_asap works without it.
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise ImportError(
            f"Running .tflite models needs the LiteRT interpreter (ai-edge-litert), which is not installed. {INSTALL_HINT}"
        ) from error
    # The first allocation applies the XNNPACK delegate, which prints "INFO:
    # Created TensorFlow Lite XNNPACK delegate for CPU." from C++.
    with native_output_captured():
        interpreter = Interpreter(model_content=flatbuffer, num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


def resize_batch(interpreter, batch_size):
    """Sets the batch dimension of the inputs when all are dynamic, then allocates.

    Returns:
        Whether every input had a dynamic batch dimension.
    """
    details = interpreter.get_input_details()
    dynamic = all(detail["shape_signature"][0] == -1 for detail in details)
    if dynamic:
        for detail in details:
            interpreter.resize_tensor_input(detail["index"], [batch_size] + list(detail["shape"][1:]))
    interpreter.allocate_tensors()
    return dynamic


def run_tflite(model, x, batch_size=256, num_threads=1):
    """Runs a `.tflite` model in the LiteRT interpreter on float inputs.

    Inputs are quantized with the model's input scale and zero point when the
    model takes int8/uint8, and outputs are dequantized, so the same float
    data can be fed to every quantization mode. Batches of `batch_size`
    samples are run at once when the batch dimension is dynamic (the last
    batch is zero-padded), the model's static batch otherwise.

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
        ExportError: If `model` is not a TFLite flatbuffer.
        ImportError: If `ai-edge-litert` is not installed.

    Example:

    >>> probabilities = run_tflite("model_int8.tflite", x_test[:10])
    """
    flatbuffer = read_model_bytes(model)
    input_infos, output_infos = io_tensors(flatbuffer)
    arrays = input_arrays(x, input_infos)
    interpreter = litert_interpreter(flatbuffer, num_threads)
    input_details = interpreter.get_input_details()
    output_details = interpreter.get_output_details()
    requested = max(min(batch_size, arrays[0].shape[0]), 1)
    dynamic = resize_batch(interpreter, requested)
    chunk = requested if dynamic else max(input_infos[0].shape[0], 1)

    def run_chunk(parts):
        for part, info in zip(parts, input_infos):
            interpreter.set_tensor(input_details[info.position]["index"], part)
        interpreter.invoke()
        return [
            dequantize(interpreter.get_tensor(output_details[info.position]["index"]), info)
            for info in output_infos
        ]

    outputs = run_in_chunks(arrays, input_infos, chunk, run_chunk)
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
    return top1_accuracy(first_output(outputs), y)
