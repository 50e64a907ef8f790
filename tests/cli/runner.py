"""Running `tf-asap` in a subprocess, as a user runs it."""

import os
import re
import subprocess
import sys

# Lines TensorFlow may print at start-up; tests look past them.
_STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog|[IWEF]\d{4} \d\d:|"
    r"To enable the following instructions)"
)

# The console script pip installed beside this interpreter; `python -m` where
# the package is not installed.
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "tf-asap")
_COMMAND = [_SCRIPT] if os.access(_SCRIPT, os.X_OK) else [sys.executable, "-m", "tf_asap.cli"]


def run_cli(*args, timeout=300):
    """Runs `tf-asap ARGS` in a new process; returns the CompletedProcess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [*_COMMAND, *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def user_lines(text):
    """The lines of `text` that are not TensorFlow start-up noise."""
    return [line for line in text.splitlines() if line.strip() and not _STARTUP_NOISE.match(line)]
