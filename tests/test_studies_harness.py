"""The study harness (`benchmarks/studies.py`, `benchmarks/paper_studies/`).

Fast checks of what the studies decide on and how they read baselines; the
full smoke run (`studies.py all --quick`) takes minutes and is marked slow.
Nothing here asserts anything about the quality of pruning.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
STUDIES = os.path.join(BENCHMARKS, "studies.py")
sys.path.insert(0, BENCHMARKS)

import studies  # noqa: E402 - benchmarks/ is not a package
from paper_studies import baselines, budgets  # noqa: E402

needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="needs the Fashion-MNIST files of the Debian package dataset-fashion-mnist",
)


def write_train_json(directory, **settings):
    values = {"model": "vgg_small", "dataset": "fashion_mnist", "seed": 3,
              "validation_split": 0.1, "batch_size": 128, "learning_rate": 0.05,
              "epochs": 15, "rewind_epoch": 9, "test_accuracy": 0.92}
    values.update(settings)
    os.makedirs(os.path.join(directory, "baseline"), exist_ok=True)
    with open(os.path.join(directory, "train.json"), "w", encoding="utf-8") as file:
        json.dump({k: v for k, v in values.items() if v is not None}, file)
    open(os.path.join(directory, "baseline", "model.keras"), "wb").close()
    return directory


def test_budgets_are_picked_by_flag_and_a_smoke_run_is_never_recorded():
    assert studies.parse_arguments(["mapping"]).budget.name == "default"
    assert studies.parse_arguments(["trace", "--resnet20"]).budget.models == ("resnet20",)
    quick = studies.parse_arguments(["all", "--quick"])
    assert quick.budget.is_smoke_run and quick.record is False
    assert studies.parse_arguments(["adaptive"]).record is True
    assert studies.parse_arguments(["adaptive", "--no-record"]).record is False
    with pytest.raises(SystemExit):
        studies.parse_arguments(["adaptive", "--quick", "--resnet20"])


def test_controller_options_pass_through_as_keyword_arguments():
    args = studies.parse_arguments([
        "adaptive", "--controller-option", "final_epochs=2",
        "--controller-option", "distillation=true", "--controller-option", "retrain=slim",
    ])
    assert dict(args.controller_option) == {
        "final_epochs": 2, "distillation": True, "retrain": "slim"}
    with pytest.raises(SystemExit):
        studies.parse_arguments(["adaptive", "--controller-option", "no equals sign"])


def test_accuracy_policies_report_no_target_met_but_targets_do():
    from paper_studies.adaptive import target_met

    best = {"params_reduction": 0.71, "flops_reduction": 0.4}
    assert target_met("acc05", best) is None
    assert target_met("acc1", best) is None
    assert target_met("params70", best) is True
    assert target_met("flops50", best) is False
    assert budgets.max_accuracy_drop("acc05") == 0.005


@pytest.mark.parametrize("attention, l1, verdict", [
    ((0.30, 0.005), (0.15, 0.005), "drop: MET)"),
    ((0.30, 0.006), (0.15, 0.002), "drop: NOT MET: the gap comes with a larger test drop)"),
    ((0.20, 0.002), (0.15, 0.005), "drop: NOT MET)"),
])
def test_attention_beats_l1_only_with_a_params_gap_at_the_same_test_drop(attention, l1, verdict):
    from paper_studies.adaptive import attention_vs_l1

    results = [
        {"model": "vgg_small", "method": f"acc05-{criterion}", "params_reduction": params,
         "test_drop": drop}
        for criterion, (params, drop) in (("attention", attention), ("l1", l1))
    ]
    assert attention_vs_l1(results).endswith(verdict)


def test_a_baseline_trained_without_a_held_out_split_is_refused(tmp_path):
    directory = write_train_json(str(tmp_path / "old"), validation_split=None)
    with pytest.raises(baselines.BaselineError, match="no validation_split"):
        baselines.read_baseline(directory)


def test_a_baseline_reads_its_split_and_recipe_from_train_json(tmp_path):
    info = baselines.read_baseline(write_train_json(str(tmp_path / "b")))
    assert (info.model_name, info.seed, info.validation_split, info.epochs) == (
        "vgg_small", 3, 0.1, 15)
    assert info.model_path.endswith(os.path.join("baseline", "model.keras"))


def test_the_shipped_baseline_is_found_by_directory_or_by_train_json(tmp_path):
    write_train_json(str(tmp_path / "fashion_mnist_cnn"))
    write_train_json(str(tmp_path / "resnet_small"), model="resnet_small")
    assert baselines.shipped_baseline("vgg_small", "fashion_mnist", root=str(tmp_path)) == str(
        tmp_path / "fashion_mnist_cnn")
    assert baselines.shipped_baseline("resnet_small", "fashion_mnist", root=str(tmp_path)) == str(
        tmp_path / "resnet_small")
    with pytest.raises(baselines.BaselineError, match="tf-asap train"):
        baselines.shipped_baseline("resnet20", "fashion_mnist", root=str(tmp_path))


def test_a_result_file_of_an_older_harness_is_not_reused(tmp_path):
    from paper_studies.context import Context

    context = Context(budgets.BUDGETS["quick"], [0], str(tmp_path / "r"), str(tmp_path / "w"))
    context.save_result("mapping", "vgg_small", "l1", 0, {"test_drop": 0.01})
    assert context.load_result("mapping", "vgg_small", "l1", 0)["test_drop"] == 0.01
    path = context.result_path("mapping", "vgg_small", "l1", 0)
    with open(path, encoding="utf-8") as file:
        old = json.load(file)
    old.pop("harness")
    with open(path, "w", encoding="utf-8") as file:
        json.dump(old, file)
    assert context.load_result("mapping", "vgg_small", "l1", 0) is None


@needs_fashion_mnist
def test_decisions_use_the_images_tf_asap_train_held_out():
    from tf_asap import data
    from paper_studies.context import split_training_images

    (kept_x, kept_y), (held_x, held_y) = split_training_images("fashion_mnist", 0.1, 7)
    held_out = data.load_dataset("fashion_mnist", "train", batch_size=60000, shuffle=False,
                                 augment=False, normalize=False, validation_split=0.1,
                                 subset="validation", seed=7)
    x, y = next(iter(held_out))
    assert len(held_y) == 6000 and len(kept_y) == 54000
    np.testing.assert_array_equal(y.numpy(), held_y)
    # normalize=False gives [0, 1] pixels in float32.
    np.testing.assert_allclose(x.numpy(), held_x.astype(np.float32) / 255.0, atol=1e-6)


def test_l1_per_group_ranks_within_each_group_with_mean_one():
    import keras

    from tf_asap import importance, make_prunable, zoo
    from paper_studies.pruning import PerGroupNormalized

    keras.utils.set_random_seed(0)
    model = make_prunable(zoo.build_model("vgg_small"))
    raw = importance.get_criterion("l1").score(model)
    normalised = PerGroupNormalized("l1").score(model)
    assert set(raw) == set(normalised)
    for name, values in normalised.items():
        assert values.mean() == pytest.approx(1.0)
        assert list(np.argsort(values)) == list(np.argsort(raw[name]))
    # Raw norms differ in scale between groups; normalised ones do not.
    means = [raw[name].mean() for name in raw]
    assert max(means) / min(means) > 1.5


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TF_ASAP_SLOW") != "1",
                    reason="slow (minutes): set TF_ASAP_SLOW=1")
@needs_fashion_mnist
def test_the_smoke_run_writes_every_table_and_reuses_finished_cases(tmp_path):
    command = [sys.executable, STUDIES, "all", "--quick", "--results-dir",
               str(tmp_path / "results"), "--work-dir", str(tmp_path / "work")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = tmp_path / "results" / "quick"
    for study in budgets.STUDIES:
        text = (results / f"{study}.md").read_text()
        assert "SMOKE RUN" in text and "resnet_small" in text
    trace_rows = [line for line in (results / "trace.md").read_text().splitlines()
                  if line.startswith("| ") and "---" not in line][1:]
    assert trace_rows[0].startswith("| 0 |")  # round 0, the baseline, then every round
    again = subprocess.run(command[:2] + ["adaptive"] + command[3:], capture_output=True,
                           text=True, cwd=ROOT, timeout=300)
    assert "acc1-attention seed 0: done, skipped" in again.stdout


def test_study_tables_go_before_the_stale_history_of_results_md(tmp_path):
    from paper_studies.tables import record_in_results

    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n## Current\n\nold table\n\n## History: stale\n\nold\n")
    record_in_results(str(path), "### mapping, default budget\n\nnew table\n")
    text = path.read_text()
    assert text.index("old table") < text.index("new table") < text.index("## History: stale")
    assert text.endswith("old\n")


def test_a_recorded_table_says_how_busy_the_machine_was(tmp_path, monkeypatch):
    import types

    from paper_studies import tables

    monkeypatch.setattr(os, "getloadavg", lambda: (5.5, 0.0, 0.0))
    context = types.SimpleNamespace(budget=budgets.BUDGETS["default"], seeds=[0],
                                    results=str(tmp_path))
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Results\n\n## History: stale\n")
    tables.write_outputs(context, "mapping", ["model", "wall s"], [["vgg_small", "12"]], [],
                         "python benchmarks/studies.py mapping", 12.0, True, str(results_md),
                         load_before=0.4)
    for text in ((tmp_path / "mapping.md").read_text(), results_md.read_text()):
        assert "load average 0.4 at the start and 5.5 at the end" in text
        assert "shared with other jobs while measured" not in text  # measured, not assumed


@pytest.fixture(scope="module")
def tiny_context(tmp_path_factory):
    """A context on a tiny baseline (256 images, 1 epoch) trained once for these tests."""
    import dataclasses

    from paper_studies.context import Context

    root = tmp_path_factory.mktemp("tiny_studies")
    tiny = dataclasses.replace(
        budgets.BUDGETS["quick"], baseline_images=256, baseline_epochs=1, validation_images=128,
        test_images=128, finetune_images=256, calibration_samples=64)
    return Context(tiny, [0], str(root / "results"), str(root / "work"))


@needs_fashion_mnist
def test_one_tiny_mapping_case_reports_validation_and_test_separately(tiny_context):
    from paper_studies.mapping import run_mapping_case

    result = run_mapping_case(tiny_context, "small_cnn", "l1", 0)
    assert abs(result["params_reduction"] - budgets.MAPPING_PARAMS_REDUCTION) <= 0.02
    assert result["validation_drop"] == pytest.approx(
        result["baseline_validation_accuracy"] - result["validation_accuracy"])
    assert result["test_drop"] == pytest.approx(
        result["baseline_test_accuracy"] - result["test_accuracy"])
    assert result["wall_time_s"] > 0 and result["smoke_run"] is True
    # A finished case is read back, not run again.
    assert run_mapping_case(tiny_context, "small_cnn", "l1", 0)["finished"] == result["finished"]


@needs_fashion_mnist
def test_weight_rewinding_fine_tunes_from_the_epoch_k_weights_to_the_end(tiny_context):
    import dataclasses

    import numpy as np

    from tf_asap.core.masks import apply_masks, get_masks
    from tf_asap.rounds.controller import load_state
    from paper_studies.pruning import fine_tune

    budget = dataclasses.replace(tiny_context.budget, rewinding="weights")
    baseline = tiny_context.baseline("small_cnn")
    data = tiny_context.data("small_cnn", 0)
    model = tiny_context.fresh_model("small_cnn", 0)
    masks = get_masks(model)
    name = sorted(masks)[0]
    masks[name] = np.concatenate([np.zeros(1, masks[name].dtype), masks[name][1:]])
    apply_masks(model, masks)
    state, metadata = load_state(baseline.rewind_path)
    assert metadata["epoch"] == baseline.rewind_epoch
    fine_tune(model, budget, baseline, data)
    # The schedule ran from epoch k to T, and the pruned channel stayed pruned.
    assert int(model.optimizer.iterations) == baseline.epochs * data.steps_per_epoch
    assert get_masks(model)[name][0] == 0


def test_the_trace_of_a_reused_case_reads_its_saved_rounds_when_the_run_directory_is_gone(
        tmp_path, monkeypatch):
    # `studies.py all --seeds 0 1` in a fresh checkout reuses seed 0's adaptive case from its
    # result file; its run directory (and round log) went with another --work-dir.
    from paper_studies import trace
    from paper_studies.context import Context, read_json

    saved = read_json(os.path.join(BENCHMARKS, "results", "default", "runs", "trace",
                                   "resnet_small__acc1-attention__s0.json"))
    context = Context(budgets.BUDGETS["default"], [0], str(tmp_path / "results"), str(tmp_path / "work"))
    reference = {"baseline_test_accuracy": 0.9198, "best_round": 10, "test_drop": 0.0097,
                 "params_reduction": 0.387}
    monkeypatch.setattr(trace, "run_adaptive_case", lambda *arguments: reference)
    with pytest.raises(RuntimeError, match="needs its round log"):
        trace.study_trace(context, ["resnet_small"], None)
    context.save_result("trace", "resnet_small", "acc1-attention", 0,
                        {"rounds": saved["rounds"], "test_per_round": saved["test_per_round"]})
    _, rows, _ = trace.study_trace(context, ["resnet_small"], None)
    assert [row[0] for row in rows] == [record["round"] for record in saved["rounds"]]
    assert os.path.isfile(os.path.join(context.results, "trace.png"))
