"""What `tf-asap` prints: nothing but the usage for --help; E/F log lines always."""

import os
import subprocess
import sys

import pytest

from tf_asap.cli.output import LogLineFilter


def run_quietly(*args):
    """`python -m tf_asap.cli ARGS` with TensorFlow's log level left unset."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", "tf_asap.cli", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )


@pytest.mark.parametrize("args", [["--help"], ["prune", "--help"], ["train", "--help"]])
def test_help_prints_exactly_the_usage_and_nothing_else(args):
    result = run_quietly(*args)
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout.startswith("usage: tf-asap")
    assert "oneDNN" not in result.stdout and "absl" not in result.stdout


def test_a_usage_error_prints_the_usage_and_one_error_line_only():
    result = run_quietly("prune", "m.keras", "--run-dir", "r", "--max-accuracy-drop", "50")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("usage: tf-asap prune")
    assert lines[-1] == (
        "tf-asap prune: error: argument --max-accuracy-drop: must be below 1 (100%); "
        "received '50'; did you mean 50%?"
    )
    assert all(line.startswith((" ", "usage:", "tf-asap prune: error:")) for line in lines)


def test_parsing_does_not_import_tensorflow():
    probe = (
        "import sys, runpy; sys.argv = ['tf-asap', 'prune', '--help']\n"
        "try:\n    runpy.run_module('tf_asap.cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('TENSORFLOW', 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "TENSORFLOW False" in result.stdout, result.stdout + result.stderr


GLOG = "{level}0000 00:00:1795263358.389808   12269 {where}] {text}"


@pytest.mark.parametrize(
    "line, shown",
    [
        (GLOG.format(level="I", where="port.cc:153", text="oneDNN custom operations are on."), False),
        (GLOG.format(level="W", where="loader.cc:7", text="Skipping the delay kernel."), False),
        (GLOG.format(level="E", where="session.cc:11", text="Invalid argument: shapes differ"), True),
        (GLOG.format(level="F", where="tensor.cc:9", text="Check failed: dims() == 2 (4 vs. 2)"), True),
        (GLOG.format(level="W", where="bfc_allocator.cc:47",
                     text="Allocator (GPU_0_bfc) ran out of memory trying to allocate 3.2GiB"), True),
        (GLOG.format(level="I", where="op_kernel.cc:1", text="OOM when allocating tensor"), True),
        ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", False),
        ("To enable the following instructions: AVX2 FMA, in other operations, rebuild "
         "TensorFlow with the appropriate compiler flags.", False),
        ("terminate called after throwing an instance of 'std::bad_alloc'", True),
        ("Traceback (most recent call last):", True),
        ("UserWarning: something the user should know", True),
    ],
)
def test_stderr_filter_passes_errors_and_fatal_messages_and_drops_info_and_warnings(line, shown):
    assert LogLineFilter().keep(line + "\n") is shown


def test_cuinit_error_is_dropped_only_after_tensorflow_said_there_is_no_driver():
    no_driver = GLOG.format(level="I", where="cudart_stub.cc:31",
                            text="Could not find cuda drivers on your machine, GPU will not be used.")
    cuinit = GLOG.format(level="E", where="cuda_platform.cc:52",
                         text="failed call to cuInit: INTERNAL: CUDA error: UNKNOWN ERROR (303)")
    assert LogLineFilter().keep(cuinit)  # a GPU machine with a broken driver: shown
    quiet = LogLineFilter()
    assert not quiet.keep(no_driver)
    assert not quiet.keep(cuinit)
