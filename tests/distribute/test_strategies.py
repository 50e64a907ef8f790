"""Pruning under MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy (2 processes).

Each scenario runs in fresh processes (logical devices and TF_CONFIG must be
set before TensorFlow starts), bounded by a timeout, and killed if it hangs.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 300


def _start(*args):
    return subprocess.Popen(
        [sys.executable, "-m", *args], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def _results(processes):
    """The `RESULT` line of every process, once all have ended (killed after TIMEOUT_S)."""
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    results = []
    for process, output in zip(processes, outputs):
        lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
        assert process.returncode == 0 and lines, output[-4000:]
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return results


def _free_ports(count):
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirrored")
    return _results([_start("tests.distribute.mirrored_rounds", str(root))])[0]


def test_statistics_on_two_replicas_equal_one_device(mirrored):
    assert mirrored["replicas"] == 2
    assert mirrored["stats_difference"] < 1e-6


def test_controller_on_two_replicas_takes_the_single_device_decisions(mirrored):
    assert mirrored["controller_strategy"]
    assert mirrored["rounds"] == 3
    assert mirrored["same_decisions"] and mirrored["final_digest_matches"]
    # Gradients are averaged over replicas instead of computed on one batch:
    # equal up to float rounding, which did not move any accuracy here.
    assert mirrored["accuracy_difference"] <= 1 / 32


def test_masks_agree_on_both_replicas_and_rebuilt_models_live_on_the_strategy(mirrored):
    assert mirrored["controller_replicas_agree"] and mirrored["callback_replicas_agree"]
    assert mirrored["slim_on_strategy"] and mirrored["optimizer_on_strategy"]


def test_fit_callback_on_two_replicas_prunes_as_on_one_device(mirrored):
    # Created outside any scope, the callback runs on its model's strategy.
    assert mirrored["callback_strategy"]
    assert mirrored["callback_rounds"] == 3
    assert mirrored["callback_same_masks"]


def test_a_model_built_outside_the_strategy_scope_is_refused(mirrored):
    assert "built outside the scope of the MirroredStrategy" in mirrored["outside_refused"]
    assert "inside `with strategy.scope():`" in mirrored["outside_refused"]


def test_two_workers_prune_alike_resume_and_only_the_chief_writes_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"

    def launch(*stop_after):
        ports = ",".join(map(str, _free_ports(2)))
        return _results([
            _start("tests.distribute.multi_worker_round", str(index), ports, str(run_dir), *stop_after)
            for index in range(2)
        ])

    assert launch("1") == [{"stopped_after": 1}] * 2
    # The second worker restarts on another machine: nothing of its scratch
    # directory is left, and it resumes from the chief's committed rounds.
    scratch = run_dir / ".workers" / "worker-1"
    assert (scratch / "run.json").is_file()
    for path in sorted(scratch.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    chief, worker = launch()
    assert chief["resumed"] and worker["resumed"]
    assert chief["chief"] and not worker["chief"]
    assert chief["directory"] == str(run_dir)
    assert worker["directory"] == str(scratch)
    # Statistics summed across workers equal one device's on all samples,
    # so both workers set the same masks.
    assert chief["max_stats_difference"] < 1e-6 and worker["max_stats_difference"] < 1e-6
    assert chief["digest"] == worker["digest"]
    assert chief["logged_rounds"] == worker["logged_rounds"] == [0, 1, 2]
    assert chief["slim_variables_distributed"] and worker["slim_variables_distributed"]
    written = {p.relative_to(run_dir).parts[0] for p in run_dir.rglob("*") if p.is_file()}
    assert {"run.json", "rounds.jsonl", "calibration.npz", "checkpoints", "final"} <= written
    # One TensorBoard event file per launch: the other worker wrote none here.
    assert len(list((run_dir / "tensorboard").iterdir())) == 2
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "finished" and manifest["rounds_completed"] == 3
