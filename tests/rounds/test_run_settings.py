"""Tests of RoundController's data and run settings: held-out decisions, test data,
max_fraction, the policy's metric, bounded checkpoints and wiring fingerprints."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_asap

from tf_asap.errors import ConfigurationError, RunDirectoryError
from tf_asap.pruning.policies import AccuracyGuaranteed, ParamsTarget
from tf_asap.rounds import journal as journal_module
from tf_asap.rounds import step as step_module
from tf_asap.rounds.controller import RoundController
from tf_asap.rounds.state import load_state
from tf_asap.rounds.step import evaluate_round
from tests.helpers import quadrant_cnn as tiny_model
from tests.helpers import quadrant_data

BATCH = 64
TRAIN = quadrant_data(256, 0)
TEST = quadrant_data(96, 2)


def controller(tmp_path, policy, **kwargs):
    arguments = dict(
        run_dir=tmp_path, epochs=2, rewind_epoch=1, batch_size=BATCH,
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9), verbose=0,
    )
    arguments.update(kwargs)
    return RoundController(tiny_model(), policy, TRAIN, **arguments)


def test_without_validation_data_a_seeded_split_is_held_out_of_retraining(tmp_path):
    run = controller(tmp_path, ParamsTarget(0.3, max_rounds=1), validation_split=0.25)
    validation_samples = sum(int(x.shape[0]) for x, _ in run.validation)
    train_samples = sum(int(x.shape[0]) for x, _ in run.train)
    assert (validation_samples, train_samples) == (64, 192)
    validation_x = np.concatenate([x.numpy() for x, _ in run.validation])
    train_x = np.concatenate([x.numpy() for x, _ in run.train])
    train_rows = {row.tobytes() for row in train_x}
    assert not any(row.tobytes() in train_rows for row in validation_x)
    assert run.settings["validation"] == "split 0.25 of train_data, seed 0"


def test_test_data_is_reported_but_never_decides(tmp_path, monkeypatch):
    decided_on = []
    original = step_module.RoundResult

    def recording_result(**fields):
        decided_on.append(fields["score"])
        return original(**fields)

    monkeypatch.setattr(step_module, "RoundResult", recording_result)
    run = controller(
        tmp_path, AccuracyGuaranteed(0.5, step=0.5, max_rounds=2), test_data=TEST,
    )
    result = run.run()
    test_accuracy = run.model.evaluate(*TEST, verbose=0, return_dict=True)["accuracy"]
    validation_accuracy = run.model.evaluate(run.validation, verbose=0, return_dict=True)["accuracy"]
    assert result.test["final"] == pytest.approx(test_accuracy)
    assert result.test["metric"] == "accuracy" and result.test["best_round"] == result.best_round
    assert result.rounds[0]["test_accuracy"] == pytest.approx(result.test["baseline"])
    # Every result the policy saw was measured on the validation split.
    assert decided_on[result.best_round] == pytest.approx(validation_accuracy)
    assert result.best["test_accuracy"] == pytest.approx(test_accuracy)
    assert all(
        "test_accuracy" not in record for record in result.rounds[1:] if record is not result.best
    )
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["test"]["final"] == pytest.approx(test_accuracy)
    report = (tmp_path / "report.md").read_text()
    assert "Test accuracy (reported only)" in report and "validation" in report
    kept = {row["name"]: row["kept"] for row in manifest["layers"]}
    assert kept["conv1"] == int(run.model.get_layer("conv1").filter_mask.numpy().sum())
    assert (tmp_path / "layers.png").exists()


@pytest.mark.parametrize("option, value", [("max_fraction", None), ("max_fraction", 0.25), ("round_to", 2)])
def test_mask_rules_reach_every_threshold_call_and_the_settings(tmp_path, monkeypatch, option, value):
    seen = []
    original = step_module.threshold_masks

    def recording_threshold_masks(*args, **kwargs):
        seen.append(kwargs[option])
        return original(*args, **kwargs)

    monkeypatch.setattr(step_module, "threshold_masks", recording_threshold_masks)
    run = controller(
        tmp_path, ParamsTarget(0.3, step=2.0, max_rounds=2), validation_data=TEST, **{option: value},
    )
    run.run()
    assert seen and set(seen) == {value}
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["settings"][option] == value
    if option == "round_to":
        masks = tf_asap.get_masks(run.model).values()
        assert any(not keep.all() for keep in masks)
        assert all(keep.sum() % value == 0 or keep.all() for keep in masks)


def test_round_to_must_be_a_positive_channel_count(tmp_path):
    with pytest.raises(ConfigurationError, match="`round_to`"):
        controller(tmp_path, ParamsTarget(0.3), round_to=0)


def test_max_fraction_outside_zero_one_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="`max_fraction` must be a number in \\(0, 1\\]"):
        controller(tmp_path, ParamsTarget(0.3), max_fraction=1.5)


def test_the_policy_metric_is_compiled_read_and_logged_under_its_name(tmp_path):
    run = controller(
        tmp_path,
        AccuracyGuaranteed(0.5, max_rounds=1, metric="sparse_top_k_categorical_accuracy"),
        validation_data=TEST,
    )
    result = run.run()
    name = "sparse_top_k_categorical_accuracy"
    logs = run.model.evaluate(*TEST, verbose=0, return_dict=True)
    assert name in logs
    record = result.best
    assert record["metric"] == name
    assert record[f"validation_{name}"] == pytest.approx(logs[name])
    assert record["accuracy"] == pytest.approx(logs[name])
    assert run.settings["metric"] == name


def test_a_metric_the_model_lacks_is_named_with_the_available_ones():
    model = tiny_model()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ConfigurationError, match="\\['accuracy', 'loss'\\].*'auc'.*metrics=\\['auc'\\]"):
        evaluate_round(model, tf.data.Dataset.from_tensor_slices(TEST).batch(32), 0, 0.0, metric="auc")


def test_ten_rounds_keep_only_the_checkpoints_a_rollback_can_reach(tmp_path, monkeypatch):
    counts = []
    original = journal_module.RunJournal.commit

    def recording_commit(self, policy, result, decision, record):
        original(self, policy, result, decision, record)
        depth = len(policy.state_dict()["lineage"]) - 1  # rounds a rollback can walk back
        kept = self.directory.checkpoint_rounds()
        counts.append((len(kept), depth))
        assert set(kept) <= journal_module.reachable_rounds(policy, decision)
        copy = os.path.getsize(self.directory.checkpoint(0))
        checkpoint_bytes = sum(
            os.path.getsize(self.directory.checkpoint(r)) for r in kept
        )
        assert checkpoint_bytes <= (depth + 2) * copy
        assert record["run_dir_bytes"] > checkpoint_bytes

    monkeypatch.setattr(journal_module.RunJournal, "commit", recording_commit)
    # A far target in small steps: ten rounds, none of them the last.
    run = controller(
        tmp_path, ParamsTarget(0.95, step=0.3, patience=20, max_rounds=10),
        validation_data=TEST, skip_unpruned_rounds=False,
    )
    result = run.run()
    assert len(result.rounds) == 11
    assert all(count <= depth + 2 for count, depth in counts)
    for round_number in run.run_dir.checkpoint_rounds():
        state, _ = load_state(run.run_dir.checkpoint(round_number))
        assert state.optimizer is None  # slots are overwritten by the rewind anyway
    assert result.best_round in run.run_dir.checkpoint_rounds()
    assert all(record["run_dir_bytes"] > 0 for record in result.rounds)


def branched(second_from_input):
    inputs = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(inputs if second_from_input else a)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x), name="branched")


def test_differently_wired_models_with_the_same_layers_do_not_share_a_run(tmp_path):
    data = (np.random.default_rng(0).normal(size=(64, 8, 8, 4)).astype("float32"),
            np.arange(64) % 4)
    arguments = dict(
        run_dir=tmp_path, epochs=2, rewind_epoch=1, batch_size=32, verbose=0,
        validation_data=data, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    RoundController(branched(False), ParamsTarget(0.3, max_rounds=1), data, **arguments).run()
    other = RoundController(branched(True), ParamsTarget(0.3, max_rounds=1), data, **arguments)
    with pytest.raises(RunDirectoryError, match="layer \\d+ \\('b', Conv2D\\) differs: inputs"):
        other.run()


def test_rounds_that_left_the_lineage_and_are_not_best_are_unreachable():
    from tf_asap.pruning.policies import RoundResult

    policy = AccuracyGuaranteed(max_accuracy_drop=0.01, step=0.5, max_rollbacks=1)
    decision = policy.start(RoundResult(0, 0.0, 0.90, 1000, 10000))
    script = [
        (0.90, 900),   # round 1: acceptable
        (0.90, 800),   # round 2: acceptable
        (0.80, 700),   # round 3: fails -> back to round 2 (its one retry)
        (0.80, 750),   # round 4: fails -> round 2 exhausted, back to round 1
        (0.895, 600),  # round 5: acceptable and the smallest: the new best
    ]
    for number, (accuracy, params) in enumerate(script, 1):
        decision = policy.observe(RoundResult(number, decision.threshold, accuracy, params, 10 * params))
    assert policy.best_round == 5
    keep = journal_module.reachable_rounds(policy, decision)
    assert keep == {0, 1, 5}  # round 2 was exhausted and is no longer the best
