"""Capturing what TensorFlow, the TFLite converter and the runtimes print from C++.

The converter's MLIR dumps, "fully_quantize: 0, ..." lines, the XNNPACK
delegate's "INFO: Created ..." line and TFLite Micro's allocation failures are
written to the process's file descriptors 1 and 2, below Python;
`TF_CPP_MIN_LOG_LEVEL` does not silence them. The exports capture them and show
them only in the error message of a failure.
"""

import contextlib
import os
import sys
import tempfile

LOG_TAIL_LINES = 30
"""How many of the last captured lines an error message quotes."""


def _flush_python_streams():
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def native_output_captured():
    """Sends the C-level stdout and stderr to a temporary file while active.

    Yields a function returning what was captured so far, for error
    messages. File descriptors are process-wide: output other threads write
    meanwhile is captured too (and shown only if the export fails).
    """
    _flush_python_streams()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)

            def read():
                _flush_python_streams()
                log.seek(0)
                return log.read().decode("utf-8", "replace")

            yield read
        finally:
            _flush_python_streams()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def log_tail(text, lines=LOG_TAIL_LINES):
    """The last `lines` non-blank lines of `text`."""
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
