"""What the user sees: printed lines and tables, and TensorFlow's log noise kept out.

TensorFlow and absl print start-up lines from C++ ("oneDNN custom operations
are on", "Could not find cuda drivers") that `TF_CPP_MIN_LOG_LEVEL` does not
silence. Unless `--debug` is given, the process's stderr (file descriptor 2)
goes through `NativeStderrFilter`, which drops informational lines and keeps
everything a user must see:

- glog lines of level E (error) and F (fatal) always pass;
- so does any line that says the process is dying or out of memory
  ("Check failed", "out of memory", "Resource exhausted"), whatever its level;
- lines of level I and W, absl's notice before its logging starts and the
  continuation of the CPU-instructions notice are dropped;
- everything else (Python's own warnings and tracebacks, our messages)
  passes unchanged.

One E line is known to be noise: a CUDA build of TensorFlow on a machine
without a GPU logs "failed call to cuInit" right after its own informational
"Could not find cuda drivers on your machine". The filter drops it only
after that line, so a broken driver on a GPU machine still shows.
"""

import contextlib
import logging
import os
import re
import sys
import threading
import warnings

# A glog-format line: "I0000 00:00:1795263358.389808   12269 port.cc:153] ...".
_GLOG_LINE = re.compile(r"^(?P<level>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    # The second line of cpu_feature_guard's message.
    r"|To enable the following instructions: .* rebuild TensorFlow with the"
    r" appropriate compiler flags\.$)"
)
_FATAL = re.compile(
    r"Check failed|out of memory|OOM when allocating|Resource exhausted|RESOURCE_EXHAUSTED",
    re.IGNORECASE,
)
_NO_CUDA_DRIVER = "Could not find cuda drivers on your machine"
_CUINIT_FAILED = "failed call to cuInit"


class LogLineFilter:
    """Decides, line by line, what of TensorFlow's C++ output reaches the user.

    Stateful only for the cuInit rule (see the module docstring).

    Example:

    >>> keep = LogLineFilter().keep
    >>> keep("F0000 00:00:17.5  12 tensor.cc:9] Check failed: 1 == 2")
    True
    """

    def __init__(self):
        self._no_gpu_driver = False

    def keep(self, line):
        """Whether `line` (text, without its newline or with it) is shown."""
        if _FATAL.search(line):
            return True
        if _NOISE.match(line):
            return False
        match = _GLOG_LINE.match(line)
        if match is None:
            return True
        if _NO_CUDA_DRIVER in line:
            self._no_gpu_driver = True
        level = match.group("level")
        if level == "E" and self._no_gpu_driver and _CUINIT_FAILED in line:
            return False
        return level in ("E", "F")


class NativeStderrFilter:
    """Routes file descriptor 2 through a thread that applies `LogLineFilter`.

    C++ code writes to the file descriptor directly, so filtering
    `sys.stderr` is not enough. Python's own stderr writes pass through the
    same pipe and come out unchanged.
    """

    def __init__(self):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self._filter = LogLineFilter()
        self._original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(
            target=self._pump, args=(read_end,), name="tf-asap-stderr", daemon=True
        )
        self._thread.start()

    def _pump(self, read_end):
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if self._filter.keep(line.decode("utf-8", "replace")):
                    os.write(self._original, line)

    def close(self):
        """Points file descriptor 2 back at the original stderr."""
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        # Pointing fd 2 back closes the pipe's last write end (unless a child
        # process still holds it), which ends the thread.
        os.dup2(self._original, 2)
        self._thread.join(timeout=2.0)
        os.close(self._original)


def quiet_tensorflow():
    """Lowers TensorFlow's log level; call before TensorFlow is imported.

    `TF_CPP_MIN_LOG_LEVEL=1` drops informational C++ lines at the source but
    keeps warnings (out-of-memory reports are warnings), errors and fatal
    lines for `LogLineFilter`. A level the user set is kept.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    # A tf.data dataset is shuffled by its pipeline; Keras still warns that
    # fit's own shuffle=True does not apply to it.
    warnings.filterwarnings("ignore", message=r".*`shuffle=True` was passed")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):  # absl-py is pure Python: no TensorFlow here
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)


def say(text=""):
    """Prints one line of output, flushed (progress must show while a run works)."""
    print(text, flush=True)


def table(rows, align=None):
    """A fixed-width text table; the first row is the header."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    align = align or ["<"] + [">"] * (len(widths) - 1)
    lines = []
    for index, row in enumerate(rows):
        cells = [f"{str(cell):{a}{w}}" for cell, a, w in zip(row, align, widths)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def size_text(size):
    """Bytes as "1.23 MB", "4.56 kB" or "78 B"."""
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def count_text(value):
    """A count as "1.23M", "4.56k"."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value}"


def percent(value):
    """0.9269 as "92.69%"."""
    return f"{100 * value:.2f}%"
