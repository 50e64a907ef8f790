"""Tests for the `tf-asap` command line (tf_asap/cli/).

Commands run through a subprocess, as a user runs them, on tiny settings;
argument parsing is also tested in-process where no TensorFlow work is done.
"""

import argparse
import json
import os
import inspect
import re

import keras
import numpy as np
import pytest

import tf_asap
import tf_asap.cli
from tests.cli.runner import run_cli, user_lines
from tf_asap.cli import flags, prune_settings

DATA_AVAILABLE = os.path.isdir("/usr/share/datasets/fashion-mnist") or bool(
    os.environ.get("TF_ASAP_DATA_DIR")
)
needs_fashion_mnist = pytest.mark.skipif(
    not DATA_AVAILABLE, reason="Fashion-MNIST IDX files not installed"
)

# ---------------------------------------------------------------------------
# Parsing, in-process


@pytest.mark.parametrize(
    "text, expected",
    [("0.5%", 0.005), ("70%", 0.7), ("0.005", 0.005), ("0", 0.0), (" 12.5% ", 0.125)],
)
def test_fraction_reads_percents_and_plain_fractions(text, expected):
    assert flags.fraction(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text, message",
    [("70", "did you mean 70%"), ("100%", "below 1"), ("-1%", "at least 0"),
     ("half", "a percent like 0.5%"), ("nan", "at least 0")],
)
def test_fraction_rejects_values_outside_zero_one_with_a_hint(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        flags.fraction(text)


@pytest.mark.parametrize("command", ["train", "prune", "export", "profile", "report", "demo"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tf_asap.cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: tf-asap {command}" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert tf_asap.cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prune", "m.keras", "--run-dir", "r"], "give the pruning target"),
        (["prune", "m.keras", "--run-dir", "r", "--max-accuracy-drop", "1%",
          "--flops-reduction", "50%"], "give only one of them"),
        (["prune", "--run-dir", "r", "--params-reduction", "70%"], "give the model to prune"),
        (["prune", "m.keras", "--run-dir", "r", "--params-reduction", "70%",
          "--minimize", "flops"], "--minimize applies to --max-accuracy-drop only"),
        (["train", "--output", "o", "--epochs", "5", "--rewind-epoch", "5"],
         "--rewind-epoch 5 must be below --epochs 5"),
    ],
)
def test_contradictory_flags_are_usage_errors_naming_the_flag(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tf_asap.cli.main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert f"usage: tf-asap {argv[0]}" in err
    assert message in err


def test_prune_refuses_an_existing_run_without_resume(capsys, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    code = tf_asap.cli.main(["--debug", "prune", "m.keras", "--run-dir", str(run_dir),
                     "--max-accuracy-drop", "1%"])
    assert code == 2
    assert "Pass --resume to continue it" in capsys.readouterr().err


def test_weight_rewinding_without_a_checkpoint_is_a_usage_error(capsys, tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"")
    code = tf_asap.cli.main(["--debug", "prune", str(model), "--run-dir", str(tmp_path / "r"),
                     "--max-accuracy-drop", "1%", "--rewind", "weights", "--dataset", "mnist"])
    assert code == 2
    assert "--rewind weights needs the rewind checkpoint" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Through a subprocess


def test_help_and_version_exit_0():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("train", "prune", "export", "profile", "report", "demo"):
        assert command in result.stdout
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("tf-asap ")


def test_bad_flag_value_exits_2_with_the_flag_and_the_fix():
    result = run_cli("prune", "m.keras", "--run-dir", "r", "--max-accuracy-drop", "50")
    assert result.returncode == 2
    assert "argument --max-accuracy-drop" in result.stderr
    assert "did you mean 50%?" in result.stderr


def test_own_usage_error_exits_2_with_the_flag_and_the_fix(tmp_path):
    result = run_cli("export", tmp_path, "--output", tmp_path / "out")
    assert result.returncode == 2
    lines = user_lines(result.stderr)
    assert lines[0].startswith("usage: tf-asap export")
    assert lines[-1].startswith("tf-asap export: error: MODEL")
    assert "pass one of those or a .keras file" in lines[-1]


def test_failure_exits_1_with_one_line_and_no_traceback(tmp_path):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"this is not a zip archive")
    result = run_cli("profile", broken)
    assert result.returncode == 1
    lines = user_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tf-asap profile: error: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_debug_shows_the_traceback_of_a_failure(tmp_path):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"this is not a zip archive")
    result = run_cli("profile", broken, "--debug")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr


def _masked_tiny_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    model = tf_asap.make_prunable(keras.Model(inputs, outputs, name="tiny"))
    group = next(g for g in tf_asap.channel_groups(model) if g.prunable)
    tf_asap.apply_masks(model, {group.name: np.array([True, False, True, False])})
    return model


def test_profile_prints_dense_and_effective_costs(tmp_path):
    model = _masked_tiny_model()
    cost = tf_asap.count_cost(model)
    path = tmp_path / "tiny.keras"
    model.save(path)
    result = run_cli("profile", path)
    assert result.returncode == 0, result.stderr
    assert "eff. params" in result.stdout and "eff. FLOPs" in result.stdout
    total = next(line for line in result.stdout.splitlines() if line.startswith("total"))
    assert total.split()[1:] == [
        f"{cost.params:,}", f"{cost.effective_params:,}",
        f"{cost.flops:,}", f"{cost.effective_flops:,}",
    ]
    assert "50.0% removed" in result.stdout or f"{100 * cost.params_reduction:.1f}% removed" in result.stdout
    assert user_lines(result.stderr) == []

    as_json = json.loads(run_cli("profile", path, "--json").stdout)
    assert as_json["effective_flops"] == cost.effective_flops
    assert [layer["name"] for layer in as_json["layers"]] == [layer.name for layer in cost.layers]


# ---------------------------------------------------------------------------
# train -> prune -> export -> report on a tiny subset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output = tmp_path_factory.mktemp("cli") / "baseline"
    result = run_cli(
        "train", "--model", "vgg_small", "--epochs", "2", "--limit", "256",
        "--validation-limit", "256", "--batch-size", "64", "--output", output,
        "--verbose", "0",
    )
    return output, result


@pytest.fixture(scope="module")
def pruned(trained):
    output, _ = trained
    run_dir = output.parent / "run"
    result = run_cli(
        "prune", output, "--run-dir", run_dir, "--max-accuracy-drop", "5%",
        "--max-rounds", "1", "--limit", "256", "--validation-limit", "256",
        "--calibration-samples", "128", "--verbose", "0",
    )
    return run_dir, result


@needs_fashion_mnist
def test_train_writes_the_model_rewind_checkpoint_and_settings(trained):
    output, result = trained
    assert result.returncode == 0, result.stderr
    assert (output / "baseline" / "model.keras").is_file()
    assert (output / "baseline" / "rewind.npz").is_file()
    settings = json.loads((output / "train.json").read_text())
    assert settings["dataset"] == "fashion_mnist"
    assert settings["epochs"] == 2 and settings["rewind_epoch"] == 1
    assert settings["command"].startswith("tf-asap train --model vgg_small")
    assert 0.0 <= settings["test_accuracy"] <= 1.0
    assert f"{100 * settings['test_accuracy']:.2f}%" in result.stdout
    assert user_lines(result.stderr) == []


@needs_fashion_mnist
def test_train_refuses_to_overwrite_a_baseline(trained):
    output, _ = trained
    result = run_cli("train", "--output", output, "--epochs", "1")
    assert result.returncode == 2
    assert "--overwrite" in user_lines(result.stderr)[-1]


@needs_fashion_mnist
def test_prune_runs_rounds_with_weight_rewinding_and_writes_the_result(pruned):
    run_dir, result = pruned
    assert result.returncode == 0, result.stderr
    assert "weights rewinding to epoch 1 of 2" in result.stdout
    assert re.search(r"Best round \d+: validation accuracy", result.stdout)
    assert "Decisions use the validation data: 10% of the training split" in result.stdout
    assert re.search(r"Test accuracy \(not used by any decision\): baseline \d+\.\d\d%", result.stdout)
    assert (run_dir / "final" / "slim.keras").is_file()
    assert (run_dir / "report.md").is_file()
    rounds = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1]
    saved = json.loads((run_dir / "prune.json").read_text())
    assert saved["max_accuracy_drop"] == pytest.approx(0.05)
    assert saved["rewind"] == "weights"
    assert saved["validation_split"] == pytest.approx(0.1) and saved["seed"] == 0
    assert user_lines(result.stderr) == []


@needs_fashion_mnist
def test_prune_resume_takes_the_saved_flags(pruned):
    run_dir, _ = pruned
    result = run_cli("prune", "--resume", "--run-dir", run_dir, "--verbose", "0")
    assert result.returncode == 0, result.stderr
    assert "Best round" in result.stdout
    rounds = (run_dir / "rounds.jsonl").read_text().splitlines()
    assert len(rounds) == 2  # nothing redone


@needs_fashion_mnist
def test_prune_with_a_different_target_on_resume_fails_with_one_line(pruned):
    run_dir, _ = pruned
    result = run_cli("prune", "--resume", "--run-dir", run_dir, "--max-accuracy-drop", "2%")
    assert result.returncode == 1
    lines = user_lines(result.stderr)
    assert len(lines) == 1 and "other settings" in lines[0]
    saved = json.loads((run_dir / "prune.json").read_text())
    assert saved["max_accuracy_drop"] == pytest.approx(0.05)  # the refused flags are not saved


@needs_fashion_mnist
def test_report_prints_the_round_table_and_writes_the_plot(pruned):
    run_dir, _ = pruned
    plot = run_dir / "plot.png"
    result = run_cli("report", run_dir, "--plot", plot)
    assert result.returncode == 0, result.stderr
    assert "| round | T |" in result.stdout
    assert "- Best round" in result.stdout
    assert plot.is_file() and plot.stat().st_size > 1000
    assert (run_dir / "rounds.png").is_file()


@needs_fashion_mnist
def test_demo_prunes_exports_and_prints_the_summary_on_a_tiny_budget(trained):
    baseline, _ = trained
    run_dir = baseline.parent / "demo"
    result = run_cli(
        "demo", "--baseline", baseline, "--run-dir", run_dir, "--limit", "256",
        "--max-rounds", "1", "--final-epochs", "1", "--final-max-drop", "5%", "--calibration-samples", "128",
        "--latency-runs", "5", "--verbose", "0", timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "Summary: fashion_mnist test set (10,000 images, never used by a decision)" in result.stdout
    assert re.search(r"after 1 epoch\(s\) of final fine-tuning, within the final bound", result.stdout)
    for row in ("test accuracy (LiteRT, int8)", "params", "int8 .tflite size",
                "batch-1 latency, int8 LiteRT"):
        assert row in result.stdout
    summary = json.loads((run_dir / "export" / "summary.json").read_text())
    assert summary["pruned"]["params"] <= summary["baseline"]["params"]
    assert summary["validation_accuracy"]["fine_tuned"] is not None
    micro = summary["micro"]
    assert micro["arena_size"] > 0 and micro["evaluated_samples"] == 1000
    # The bundle's int8 model agrees with LiteRT's on the same kind of images.
    assert abs(micro["accuracy"] - summary["pruned"]["int8_accuracy"]) < 0.05
    assert sorted(os.listdir(micro["directory"])) == [
        "baseline.tflite", "baseline_manifest.json", "baseline_model_data.cc",
        "baseline_model_data.h", "baseline_op_resolver.h",
    ]
    assert user_lines(result.stderr) == []


@needs_fashion_mnist
def test_export_writes_saved_model_and_int8_tflite_with_accuracy(pruned):
    run_dir, _ = pruned
    out = run_dir.parent / "export"
    result = run_cli(
        "export", run_dir, "--output", out, "--format", "saved_model", "tflite",
        "--quantization", "int8", "--evaluate", "--evaluation-samples", "200",
        "--calibration-samples", "50", "--name", "fmnist",
    )
    assert result.returncode == 0, result.stderr
    assert (out / "saved_model" / "fmnist" / "1" / "saved_model.pb").is_file()
    assert (out / "fmnist_int8.tflite").is_file()
    assert re.search(r"fmnist_int8\.tflite\s+TFLite int8\s+[\d.]+ kB\s+\d+\.\d\d%", result.stdout)
    assert user_lines(result.stderr) == []


def test_step_growth_flag_reaches_the_policy_and_rejects_values_below_one(capsys):
    args = tf_asap.cli.build_parser().parse_args(
        ["prune", "m.keras", "--run-dir", "r", "--max-accuracy-drop", "1%", "--step-growth", "2"]
    )
    settings = prune_settings.from_args(args)
    assert prune_settings.make_policy(settings).step_growth == 2.0
    settings["step_growth"] = None  # not given: the paper's rule
    assert prune_settings.make_policy(settings).step_growth == 1.0
    with pytest.raises(SystemExit) as stopped:
        tf_asap.cli.build_parser().parse_args(
            ["prune", "m.keras", "--run-dir", "r", "--params-reduction", "70%",
             "--step-growth", "0.5"]
        )
    assert stopped.value.code == 2
    assert "argument --step-growth: must be a number >= 1; received 0.5" in capsys.readouterr().err


def _prune_settings(*flags):
    args = tf_asap.cli.build_parser().parse_args(["prune", "m.keras", "--run-dir", "r", *flags])
    return prune_settings.from_args(args)


def test_metric_and_mode_reach_a_policy_that_takes_them(monkeypatch):
    from tf_asap.pruning import policies

    class WithMetric:
        def __init__(self, max_accuracy_drop, minimize, metric="accuracy", mode="max"):
            self.metric, self.mode = metric, mode

    monkeypatch.setattr(policies, "AccuracyGuaranteed", WithMetric)
    settings = _prune_settings("--max-accuracy-drop", "1%", "--metric", "mae", "--mode", "min")
    policy = prune_settings.make_policy(settings)
    assert (policy.metric, policy.mode) == ("mae", "min")
    assert prune_settings.describe_policy(settings).startswith("mae drop <= 1%")


def test_metric_on_a_policy_without_it_is_a_usage_error_naming_the_flag(monkeypatch):
    from tf_asap.pruning import policies

    class AccuracyOnly:
        def __init__(self, reduction, tolerance=0.03):
            pass

    monkeypatch.setattr(policies, "ParamsTarget", AccuracyOnly)
    settings = _prune_settings("--params-reduction", "50%", "--metric", "auc")
    with pytest.raises(flags.UsageError, match="--metric is not supported by AccuracyOnly"):
        prune_settings.make_policy(settings)


def test_mode_without_metric_is_a_usage_error(capsys):
    assert tf_asap.cli.main(["--debug", "prune", "m.keras", "--run-dir", "r",
                             "--max-accuracy-drop", "1%", "--mode", "min"]) == 2
    assert "--mode says which way --metric improves" in capsys.readouterr().err


def test_search_and_retraining_flags_reach_the_policy_and_the_controller():
    settings = _prune_settings(
        "--max-accuracy-drop", "1%", "--schedule", "bisect", "--max-fraction", "none",
        "--scan-samples", "256", "--no-early-rejection", "--retrain", "masked", "--distill",
        "--distill-alpha", "0.3", "--distill-temperature", "2", "--final-epochs", "3",
        "--round-to", "8", "--final-max-drop", "0.5%",
    )
    assert prune_settings.make_policy(settings).schedule == "bisect"
    assert prune_settings.make_policy(settings).size_tolerance == tf_asap.defaults.SIZE_TOLERANCE
    for text, value in (("none", None), ("5%", 0.05)):
        tolerance = _prune_settings("--params-reduction", "50%", "--size-tolerance", text)
        assert prune_settings.make_policy(tolerance).size_tolerance == value
    assert prune_settings.engine_options(settings) == {
        "max_fraction": None, "scan_samples": 256, "early_rejection": False,
        "retrain": "masked", "final_epochs": 3, "round_to": 8, "final_max_drop": 0.005,
        "distillation": {"alpha": 0.3, "temperature": 2.0},
    }


def test_engine_flags_not_given_keep_the_library_defaults():
    settings = _prune_settings("--max-accuracy-drop", "1%", "--max-fraction", "25%")
    assert prune_settings.make_policy(settings).schedule == "paper"
    assert prune_settings.engine_options(settings) == {"max_fraction": 0.25}
    assert prune_settings.engine_options(_prune_settings("--max-accuracy-drop", "1%", "--distill")) == {
        "distillation": {}
    }


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-fraction", "0"], "argument --max-fraction: must be above 0"),
        (["--max-fraction", "lots"], "argument --max-fraction: expected a fraction"),
        (["--size-tolerance", "wide"], "argument --size-tolerance: expected a fraction"),
        (["--retrain", "fast"], "argument --retrain: invalid choice"),
        (["--scan-samples", "-1"], "argument --scan-samples: must be an integer >= 0"),
        (["--round-to", "0"], "argument --round-to: must be an integer >= 1"),
        (["--final-epochs", "x"], "argument --final-epochs"),
    ],
)
def test_bad_engine_flag_values_exit_2_naming_the_flag(flags, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        tf_asap.cli.build_parser().parse_args(
            ["prune", "m.keras", "--run-dir", "r", "--max-accuracy-drop", "1%", *flags]
        )
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_distill_options_without_distill_are_a_usage_error(capsys):
    assert tf_asap.cli.main(["--debug", "prune", "m.keras", "--run-dir", "r",
                             "--max-accuracy-drop", "1%", "--distill-alpha", "0.3"]) == 2
    assert "--distill-alpha sets up distillation: give --distill too" in capsys.readouterr().err


def test_demo_takes_the_engine_flags():
    args = tf_asap.cli.build_parser().parse_args(
        ["demo", "--retrain", "masked", "--final-epochs", "2", "--schedule", "bisect"]
    )
    assert (args.retrain, args.final_epochs, args.schedule) == ("masked", 2, "bisect")
    defaults = tf_asap.cli.build_parser().parse_args(["demo"])
    # The main job's own engine: the bisecting search and 12 epochs of final
    # fine-tuning; every other engine flag is left to the library's default.
    assert (defaults.schedule, defaults.final_epochs, defaults.final_max_drop) == ("bisect", 12, 0.005)
    others = set(tf_asap.cli.demo.ENGINE_FLAGS) - {"schedule", "final_epochs", "final_max_drop"}
    assert all(getattr(defaults, key) is None for key in others)
    off = tf_asap.cli.build_parser().parse_args(["demo", "--final-max-drop", "none"])
    assert prune_settings.engine_options(vars(off))["final_max_drop"] is None


def test_final_max_drop_without_final_epochs_is_a_usage_error(capsys):
    assert tf_asap.cli.main(["--debug", "prune", "m.keras", "--run-dir", "r",
                             "--max-accuracy-drop", "1%", "--final-max-drop", "0.5%"]) == 2
    assert "--final-max-drop judges the fine-tuned model" in capsys.readouterr().err


def _attempt(round_number, after, epochs=12):
    return {"round": round_number, "epochs": epochs, "validation_accuracy_after": after}


@pytest.mark.parametrize(
    "tuned, phrase",
    [
        (None, ""),
        ({**_attempt(3, 0.929), "max_drop": None}, ", 92.90% after 12 epoch(s) of final fine-tuning"),
        ({**_attempt(3, 0.929), "max_drop": 0.005, "attempts": [_attempt(3, 0.929)]},
         ", 92.90% after 12 epoch(s) of final fine-tuning, within the final bound (drop <= 0.50%)"),
        ({**_attempt(2, 0.93), "max_drop": 0.005, "attempts": [_attempt(3, 0.92), _attempt(2, 0.93)]},
         "; over the final bound (drop <= 0.50%), round 3 reached 92.00% after fine-tuning; round 2: "
         "93.00% after 12 epoch(s) of final fine-tuning, within the final bound (drop <= 0.50%)"),
        ({**_attempt(0, 0.94, 0), "max_drop": 0.005, "attempts": [_attempt(3, 0.92), _attempt(0, 0.94, 0)]},
         "; over the final bound (drop <= 0.50%), round 3 reached 92.00% after fine-tuning: no pruned "
         "round kept the bound, so the result is the unpruned model"),
    ],
)
def test_the_demo_summary_says_how_the_final_stage_ended(tuned, phrase):
    assert tf_asap.cli.prune.tuning_phrase(tuned) == phrase


def _help_of(command, capsys):
    with pytest.raises(SystemExit):
        tf_asap.cli.build_parser().parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_the_defaults_each_command_runs_with(capsys):
    demo_help = _help_of("demo", capsys)
    prune_help = _help_of("prune", capsys)
    assert "then bisect) (default: bisect)" in demo_help
    assert "after the rounds (default: 12)" in demo_help
    assert "then bisect) (default: paper)" in prune_help
    assert "after the rounds (default: 0)" in prune_help
    assert "fine-tuned in turn (fraction, percent or none; default: 0.5%)" in demo_help
    assert "fine-tuned in turn (fraction, percent or none; default: off)" in prune_help


def _signature_default(function, name):
    return inspect.signature(function).parameters[name].default


def test_prune_help_states_the_library_defaults(capsys):
    # What the help says a flag left out becomes, read from the library
    # objects the run builds (not from the help's own source of values).
    from tf_asap.pruning.policies import AccuracyGuaranteed, ParamsTarget
    from tf_asap.rounds.controller import RoundController
    from tf_asap.rounds.distillation import Distillation

    accuracy, target, distillation = AccuracyGuaranteed(), ParamsTarget(), Distillation()
    controller = RoundController.__init__
    actions = {
        action.option_strings[0]: " ".join(action.help.split())
        for action in tf_asap.cli.build_parser()._subparsers._group_actions[0].choices["prune"]._actions
        if action.option_strings and action.help
    }
    expected = {
        "--max-fraction": _signature_default(controller, "max_fraction"),
        "--scan-samples": _signature_default(controller, "scan_samples"),
        "--retrain": _signature_default(controller, "retrain"),
        "--final-epochs": _signature_default(controller, "final_epochs"),
        "--schedule": _signature_default(AccuracyGuaranteed, "schedule"),
        "--size-tolerance": _signature_default(AccuracyGuaranteed, "size_tolerance"),
        "--max-rounds": accuracy.max_rounds,
        "--patience": _signature_default(AccuracyGuaranteed, "patience"),
        "--metric": accuracy.metric,
        "--mode": _signature_default(AccuracyGuaranteed, "mode"),
        "--distill-alpha": distillation.alpha,
        "--distill-temperature": f"{distillation.temperature:g}",
        "--tolerance": f"{target.tolerance * 100:g}%%",
        "--step-growth": f"{_signature_default(AccuracyGuaranteed, 'step_growth'):g}",
    }
    for flag, value in expected.items():
        assert f"(default: {value}" in actions[flag], (flag, actions[flag])
    assert target.max_rounds == accuracy.max_rounds
    capsys.readouterr()


def test_prune_prints_how_the_final_stage_ended():
    import types

    rounds = [{"round": 0, "accuracy": 0.94, "params_reduction": 0.0, "flops_reduction": 0.0},
              {"round": 1, "accuracy": 0.90, "params_reduction": 0.6, "flops_reduction": 0.4,
               "reason": "stop"}]
    tuned = {**_attempt(1, 0.938), "max_drop": 0.005, "attempts": [_attempt(1, 0.938)]}
    result = types.SimpleNamespace(rounds=rounds, best=rounds[1], best_round=1, run_dir="r",
                                   final_tuning=tuned)
    lines = tf_asap.cli.prune.result_lines(result, None)
    assert ("Validation accuracy at the end, 93.80% after 12 epoch(s) of final fine-tuning, "
            "within the final bound (drop <= 0.50%).") in lines
