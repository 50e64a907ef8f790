"""Running `.tflite` models in TFLite Micro, and finding the smallest tensor arena.

TFLite Micro is the interpreter of microcontrollers: reference kernels, one
sample at a time, every tensor in one preallocated arena. Its Python package
(`tflite-micro`) runs the same interpreter on the host; it is an optional
dependency, imported only when a model is run (`pip install tf_asap[tflite]`).
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

from tf_asap.checks import check_int
from tf_asap.errors import ExportError
from tf_asap.export.flatbuffer import io_tensors, read_model_bytes
from tf_asap.export.native_output import log_tail, native_output_captured
from tf_asap.export.runtime_io import (
    INSTALL_HINT,
    dequantize,
    first_output,
    input_arrays,
    run_in_chunks,
    top1_accuracy,
)
from tf_asap.files import atomic_write_bytes

ARENA_ALIGNMENT = 16
"""TFLite Micro aligns its arena to 16 bytes; arena sizes are multiples."""

DEFAULT_MAX_ARENA_SIZE = 64 * 1024 * 1024
"""The largest arena `find_arena_size` tries unless told otherwise (64 MiB)."""


def micro_runtime():
    """Returns TFLite Micro's Python `runtime` module.

    Raises:
        ImportError: If `tflite-micro` is not installed, naming the extra.
    """
    try:
        # Optional dependency, imported here so that tf_asap works without it.
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as error:
        raise ImportError(
            f"Running models in TFLite Micro needs the `tflite-micro` package, which is not installed. {INSTALL_HINT}"
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
            [sys.executable, "-c", _ARENA_PROBE, self._model_path, str(self._num_inputs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )

    def runs(self, size):
        """Whether the model runs with a `size`-byte arena."""
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
        return log_tail(self._log.read().decode("utf-8", "replace"), 10)

    def close(self):
        if self._process is not None and self._process.poll() is None:
            self._process.stdin.close()
            self._process.wait()
        self._log.close()


def _smallest_running_size(probe, units_limit):
    """Doubles, then bisects, the arena in units of `ARENA_ALIGNMENT` bytes."""
    failing, running = 0, min(1024, units_limit)  # `failing` never runs, `running` does.
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
    return running * ARENA_ALIGNMENT


def find_arena_size(model, max_arena_size=DEFAULT_MAX_ARENA_SIZE):
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
        ConfigurationError: If `max_arena_size` is not a positive integer.
        ImportError: If `tflite-micro` is not installed.

    Example:

    >>> find_arena_size("model_int8.tflite")
    10432
    """
    flatbuffer = read_model_bytes(model)
    max_arena_size = check_int("max_arena_size", max_arena_size, minimum=ARENA_ALIGNMENT)
    micro_runtime()
    with tempfile.TemporaryDirectory(prefix="tf_asap_arena_") as work_dir:
        # A scratch copy for the child process, deleted with the directory.
        model_path = os.path.join(work_dir, "model.tflite")
        atomic_write_bytes(model_path, flatbuffer)
        probe = _ArenaProbe(model_path, len(io_tensors(flatbuffer)[0]))
        try:
            return _smallest_running_size(probe, max(1, max_arena_size // ARENA_ALIGNMENT))
        finally:
            probe.close()


def _micro_interpreter(flatbuffer, arena_size):
    runtime = micro_runtime()
    with native_output_captured() as captured:
        try:
            return runtime.Interpreter.from_bytes(flatbuffer, arena_size=int(arena_size))
        except RuntimeError as error:
            raise ExportError(
                f"TFLite Micro could not prepare the model with a "
                f"{arena_size}-byte arena: {error}. Interpreter log:\n"
                f"{log_tail(captured(), 10)}\nUse find_arena_size(model) for "
                "the minimum arena."
            ) from error


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
    flatbuffer = read_model_bytes(model)
    input_infos, output_infos = io_tensors(flatbuffer)
    arrays = input_arrays(x, input_infos)
    if arena_size is None:
        arena_size = find_arena_size(flatbuffer)
    arena_size = check_int("arena_size", arena_size, minimum=1, fix="Omit it to use the minimum arena.")
    interpreter = _micro_interpreter(flatbuffer, arena_size)

    def run_chunk(parts):
        for part, info in zip(parts, input_infos):
            interpreter.set_input(part, info.position)
        interpreter.invoke()
        return [dequantize(np.asarray(interpreter.get_output(info.position)), info) for info in output_infos]

    outputs = run_in_chunks(arrays, input_infos, max(input_infos[0].shape[0], 1), run_chunk)
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
    return top1_accuracy(first_output(outputs), y)
