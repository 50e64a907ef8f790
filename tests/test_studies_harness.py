"""The benchmark harness (`benchmarks/studies.py`) runs end to end on the quick budget.

It asserts nothing about the quality of the numbers (the quick budget trains
on 1,024 images for 2 epochs); it checks that a study trains its baseline,
runs its cases through the library, writes its table, plot and per-case
results, and reuses finished cases when run again.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES = os.path.join(ROOT, "benchmarks", "studies.py")

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="needs the Fashion-MNIST files of the Debian package dataset-fashion-mnist",
)


def run_study(tmp_path, *args):
    command = [
        sys.executable, STUDIES, *args, "--quick", "--models", "resnet_small", "--no-record",
        "--results-dir", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def table_rows(path):
    with open(path, encoding="utf-8") as file:
        return [line for line in file if line.startswith("| ") and "---" not in line][1:]


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    run_study(root, "adaptive", "--methods", "acc0-attention")
    run_study(root, "trace", "--methods", "acc0-attention")
    run_study(root, "mapping", "--methods", "l1", "sum-p1")
    return root


def test_adaptive_study_writes_its_table_plot_and_case_result(quick_root):
    results = quick_root / "results" / "quick"
    rows = table_rows(results / "adaptive.md")
    assert len(rows) == 1
    assert rows[0].startswith("| resnet_small | acc0-attention | 0 |")
    assert (results / "adaptive.png").stat().st_size > 0
    with open(results / "runs" / "adaptive" / "resnet_small__acc0-attention__s0.json") as file:
        case = json.load(file)
    assert case["policy_met"] is True  # acc0 keeps the best acceptable round: never a drop
    assert case["accuracy_drop"] <= 1e-9
    assert 0.0 <= case["params_reduction"] < 1.0
    assert os.path.isdir(os.path.join(ROOT, "benchmarks", case["run_dir"]))


def test_trace_study_tabulates_every_round_of_the_reference_run(quick_root):
    results = quick_root / "results" / "quick"
    rows = table_rows(results / "trace.md")
    with open(results / "runs" / "adaptive" / "resnet_small__acc0-attention__s0.json") as file:
        case = json.load(file)
    assert len(rows) == case["rounds"] + 1  # round 0 (the baseline) and every pruning round
    assert rows[0].startswith("| 0 |")
    assert (results / "trace.png").stat().st_size > 0


def test_mapping_study_prunes_every_criterion_to_the_same_params_reduction(quick_root):
    rows = table_rows(quick_root / "results" / "quick" / "mapping.md")
    assert [row.split(" | ")[1] for row in rows] == ["sum-p1", "l1"]
    reductions = [float(row.split(" | ")[3].rstrip("%")) for row in rows]
    assert all(abs(r - 50.0) < 3.0 for r in reductions), reductions


def test_a_finished_case_is_reused_not_rerun(quick_root):
    output = run_study(quick_root, "adaptive", "--methods", "acc0-attention")
    assert "acc0-attention seed 0: done, skipped" in output


def test_paper_budget_wiring_runs_on_mock_cifar10(tmp_path, monkeypatch):
    """`--paper` (CIFAR-10, ResNet-56) end to end on tensorflow-datasets mock data.

    The schedule is shrunk to 2 epochs and one round; what is checked is that
    the paper budget's data set, splits and zoo model go through the harness.
    """
    import dataclasses
    import importlib.util

    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.delenv("TF_ASAP_DATA_DIR", raising=False)
    spec = importlib.util.spec_from_file_location("studies_under_test", STUDIES)
    studies = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, studies)  # dataclasses look it up
    spec.loader.exec_module(studies)
    paper = studies.BUDGETS["paper"]
    monkeypatch.setitem(studies.BUDGETS, "paper", dataclasses.replace(
        paper, epochs=2, rewind_epoch=1, batch_size=16, calibration_samples=16, max_rounds=1,
    ))
    with tfds.testing.mock_data(num_examples=32):
        studies.main([
            "adaptive", "--paper", "--models", "resnet56", "--methods", "acc1-attention",
            "--no-record", "--results-dir", str(tmp_path / "results"),
            "--work-dir", str(tmp_path / "work"),
        ])
    rows = table_rows(tmp_path / "results" / "paper" / "adaptive.md")
    assert len(rows) == 1 and rows[0].startswith("| resnet56 | acc1-attention | 0 |")
    with open(tmp_path / "results" / "paper" / "adaptive.md", encoding="utf-8") as file:
        assert "CIFAR-10" in file.read()
