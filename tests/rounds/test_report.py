"""Tests of tf_asap.rounds.report: the round table and the Figure-4 plot."""

import json

import pytest

from tf_asap.rounds import report
from tf_asap.files import atomic_write_json
from tf_asap.errors import ConfigurationError, RunDirectoryError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def record(round_number, accuracy, params_left, decision="prune", acceptable=True,
           rollback_to=None, best_round=None):
    return {
        "round": round_number,
        "threshold": 0.1 * round_number,
        "step": 0.1,
        "accuracy": accuracy,
        "accuracy_drop": 0.90 - accuracy,
        "params": int(1000 * params_left),
        "flops": int(5000 * params_left),
        "params_left": params_left,
        "flops_left": params_left,
        "params_reduction": 1 - params_left,
        "flops_reduction": 1 - params_left,
        "acceptable": acceptable,
        "decision": decision,
        "rollback_to": rollback_to,
        "best_round": best_round,
        "reason": "scripted",
        "epochs": 0 if round_number == 0 else 2,
        "wall_time_s": 1.5,
        "max_accuracy_drop": 0.01,
        "target_reduction": None,
    }


# Figure 4 in miniature: acceptable rounds, a failure, a rollback, convergence.
RECORDS = [
    record(0, 0.90, 1.00),
    record(1, 0.90, 0.80),
    record(2, 0.895, 0.60),
    record(3, 0.85, 0.40, decision="rollback", acceptable=False, rollback_to=2),
    record(4, 0.893, 0.55),
    record(5, 0.893, 0.55, decision="stop", best_round=4),
]


def write_run(directory, records=RECORDS):
    (directory / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    atomic_write_json(directory / "run.json", {
        "format": 1, "status": "finished", "model": {"name": "tiny"},
        "policy": {"kind": "AccuracyGuaranteed", "config": {"max_accuracy_drop": 0.01}},
        "settings": {"epochs": 4, "rewind_epoch": 2, "retrain_epochs": 2, "rewinding": "lr",
                     "criterion": "attention", "objective": "params"},
        "threshold_reference": 0.8,
    })


def test_rounds_table_has_one_row_per_round_and_marks_the_best():
    table = report.rounds_table(RECORDS)
    lines = table.strip().splitlines()
    assert lines[0].startswith("| round | T |")
    assert set(lines[1]) <= set("|-")
    assert len(lines) == 2 + len(RECORDS)
    assert "rollback to 2" in lines[2 + 3]
    assert lines[2 + 4].startswith("| **4** |")
    assert "stop (best 4)" in lines[-1]


def test_plot_rounds_returns_and_writes_a_png(tmp_path):
    data = report.plot_rounds(RECORDS, tmp_path / "figure.png", title="scripted")
    assert data[:8] == PNG_MAGIC
    assert (tmp_path / "figure.png").read_bytes() == data


def test_plot_rounds_of_no_rounds_is_refused():
    with pytest.raises(ConfigurationError, match="No rounds"):
        report.plot_rounds([])


def test_write_report_writes_markdown_and_plot_into_the_run_directory(tmp_path):
    write_run(tmp_path)
    paths = report.write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert paths["report"] == str(tmp_path / "report.md")
    assert "AccuracyGuaranteed" in text
    assert "Best round 4" in text
    assert "5 pruning round(s), 10 retraining epoch(s)" in text
    assert "![accuracy drop and reduction per round](rounds.png)" in text
    assert (tmp_path / "rounds.png").read_bytes()[:8] == PNG_MAGIC


def test_read_rounds_of_a_directory_without_a_log_is_refused(tmp_path):
    with pytest.raises(RunDirectoryError, match="no round log"):
        report.read_rounds(tmp_path)


def test_read_rounds_of_a_damaged_log_is_refused(tmp_path):
    (tmp_path / "rounds.jsonl").write_text('{"round": 0}\n{"round": 1, "accu')
    with pytest.raises(RunDirectoryError, match="Line 2"):
        report.read_rounds(tmp_path)


LAYERS = [
    {"name": "conv1", "type": "Conv2D", "filters": 8, "kept": 5, "params": 80,
     "effective_params": 50, "flops": 5120, "effective_flops": 3200},
    {"name": "conv2", "type": "Conv2D", "filters": 8, "kept": 2, "params": 584,
     "effective_params": 92, "flops": 9344, "effective_flops": 1472},
]


def test_report_writes_the_per_layer_chart_when_the_run_lists_its_layers(tmp_path):
    write_run(tmp_path)
    manifest = json.loads((tmp_path / "run.json").read_text())
    atomic_write_json(tmp_path / "run.json", dict(manifest, layers=LAYERS))
    written = report.write_report(tmp_path)
    assert written["layers_plot"] == str(tmp_path / "layers.png")
    assert (tmp_path / "layers.png").read_bytes()[:8] == PNG_MAGIC
    assert "![filters kept and cost share per layer](layers.png)" in (tmp_path / "report.md").read_text()


def test_report_without_layers_has_no_layer_chart(tmp_path):
    write_run(tmp_path)
    assert report.write_report(tmp_path)["layers_plot"] is None
    assert not (tmp_path / "layers.png").exists()
    with pytest.raises(ConfigurationError, match="No layers to plot"):
        report.plot_layers([])
