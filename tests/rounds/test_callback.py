"""Tests of the AdaptivePruning callback: Algorithm 1 inside model.fit."""

import os

import keras
import numpy as np
import pytest

import tf_asap
from tf_asap.rounds import report
from tf_asap.rounds import callback as callback_module
from tf_asap.rounds.callback import AdaptivePruning
from tf_asap.rounds import step as step_module
from tf_asap.rounds.state import load_state, snapshot_state
from tf_asap.errors import ConfigurationError, RunDirectoryError
from tf_asap.pruning.policies import AccuracyGuaranteed, ParamsTarget
from tests.helpers import UntrimmedParamsTarget, quadrant_data

BATCH = 64
STEPS = 4  # 256 samples / 64



TRAIN = quadrant_data(256, 0)
VALIDATION = quadrant_data(128, 1)
CALIBRATION = TRAIN[0][:128]


def trained_prunable_model(epochs=3):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="classifier")(x)
    pm = tf_asap.make_prunable(keras.Model(inputs, outputs, name="tiny"))
    pm.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy",
               metrics=["accuracy"])
    pm.fit(*TRAIN, epochs=epochs, batch_size=BATCH, verbose=0)
    return pm


class EpochSpy(keras.callbacks.Callback):
    """Placed before AdaptivePruning: sees each epoch's state before the callback acts."""

    def __init__(self):
        super().__init__()
        self.begins, self.ends = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.begins.append(snapshot_state(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(snapshot_state(self.model))


def same_state(first, second):
    pairs = list(zip(first.weights, second.weights)) + list(
        zip(first.optimizer or [], second.optimizer or [])
    )
    return len(first.weights) == len(second.weights) and all(
        np.array_equal(a[1], b[1]) for a, b in pairs
    )


def test_callback_prunes_stops_and_leaves_the_accepted_model():
    pm = trained_prunable_model()
    spy = EpochSpy()
    pruning = AdaptivePruning(
        ParamsTarget(reduction=0.3, step=0.5, max_rounds=5),
        CALIBRATION, VALIDATION, epochs_per_round=1, skip_unpruned_rounds=False, verbose=0,
    )
    history = pm.fit(*TRAIN, epochs=40, batch_size=BATCH, verbose=0, callbacks=[spy, pruning])
    epochs_run = len(history.history["loss"])
    assert epochs_run < 40  # the policy stopped fit
    records = pruning.records
    assert records[-1]["decision"] == "stop"
    best = pruning.best_round
    assert best == records[-1]["best_round"] and best >= 1
    best_record = records[best]
    assert best_record["params_left"] < 1.0  # something was pruned
    # Every pruned round was bound by the target's window, and its record says so.
    assert all(r["reduction_limit"] == pytest.approx(0.33) for r in records[1:])
    # The model left is the best round's, exactly (round r ended at epoch r - 1).
    assert same_state(snapshot_state(pm), spy.ends[best - 1])
    assert tf_asap.count_cost(pm).effective_params == best_record["params"]
    logs = pm.evaluate(*VALIDATION, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(best_record["accuracy"], abs=1e-6)


def test_callback_rewinds_learning_rate_schedule_every_round():
    pm = trained_prunable_model()
    start_iterations = int(pm.optimizer.iterations.numpy())
    assert start_iterations == 3 * STEPS
    spy = EpochSpy()
    pruning = AdaptivePruning(
        AccuracyGuaranteed(max_accuracy_drop=0.1, step=0.5, max_rounds=4),
        CALIBRATION, VALIDATION, epochs_per_round=2, verbose=0,
    )
    pm.fit(*TRAIN, epochs=8, batch_size=BATCH, verbose=0, callbacks=[spy, pruning])
    # Rounds start at epochs 0, 2, 4, 6: each with the optimizer of fit's start.
    for epoch in range(0, len(spy.begins), 2):
        assert int(dict(spy.begins[epoch].optimizer)["iteration"]) == start_iterations
    # Within a round, training goes on.
    assert int(dict(spy.begins[1].optimizer)["iteration"]) == start_iterations + STEPS


def test_callback_weight_rewinding_resets_surviving_weights_to_fit_start():
    pm = trained_prunable_model()
    at_start = snapshot_state(pm)
    spy = EpochSpy()
    pruning = AdaptivePruning(
        ParamsTarget(reduction=0.3, step=0.5, max_rounds=3),
        CALIBRATION, VALIDATION, epochs_per_round=1, rewind="weights", verbose=0,
    )
    pm.fit(*TRAIN, epochs=3, batch_size=BATCH, verbose=0, callbacks=[spy, pruning])
    for begin in spy.begins:
        for (name, value), (_, original) in zip(begin.weights, at_start.weights):
            if not name.endswith("_mask"):
                np.testing.assert_array_equal(value, original)


def test_callback_rollback_restores_identical_state(monkeypatch):
    pm = trained_prunable_model()
    spy = EpochSpy()
    before_pruning = []
    original = callback_module.prune_filters

    def recording_prune_filters(model, *args, **kwargs):
        before_pruning.append(snapshot_state(model))
        return original(model, *args, **kwargs)

    monkeypatch.setattr(callback_module, "prune_filters", recording_prune_filters)
    # Round 1 (T = 0) is acceptable; round 2 (T = 5) overshoots: roll back to 1.
    pruning = AdaptivePruning(
        UntrimmedParamsTarget(reduction=0.2, tolerance=0.05, step=5.0, max_rounds=3),
        CALIBRATION, VALIDATION, epochs_per_round=1, skip_unpruned_rounds=False, verbose=0,
    )
    pm.fit(*TRAIN, epochs=10, batch_size=BATCH, verbose=0, callbacks=[spy, pruning])
    records = pruning.records
    assert records[2]["decision"] == "rollback" and records[2]["rollback_to"] == 1
    # Pruning for round 3 starts from round 1's state as it ended (epoch 0).
    assert same_state(before_pruning[2], spy.ends[0])
    assert not same_state(before_pruning[2], spy.ends[1])


def test_callback_reuses_the_result_of_a_retry_that_repeats_a_failure():
    pm = trained_prunable_model()
    # Round 2 (T = 5) overshoots; the retry from round 1 (T = 2.5) chooses the
    # same filters under the per-round cap: reported without training.
    pruning = AdaptivePruning(
        UntrimmedParamsTarget(reduction=0.2, tolerance=0.05, step=5.0, max_rounds=4),
        CALIBRATION, VALIDATION, epochs_per_round=1, verbose=0,
    )
    history = pm.fit(*TRAIN, epochs=10, batch_size=BATCH, verbose=0, callbacks=[pruning])
    records = pruning.records
    repeats = [r for r in records if r.get("repeat_of") is not None]
    assert repeats, [(r["round"], r["threshold"], r["params"]) for r in records]
    for record in repeats:
        earlier = records[record["repeat_of"]]
        assert not earlier["acceptable"] and record["epochs"] == 0
        assert record["mask_digest"] == earlier["mask_digest"]
        assert record["accuracy"] == earlier["accuracy"]
    assert len(history.history["loss"]) == max(1, sum(r["epochs"] for r in records))


def test_fit_ending_before_the_policy_stops_leaves_the_best_round():
    pm = trained_prunable_model()
    spy = EpochSpy()
    pruning = AdaptivePruning(
        ParamsTarget(reduction=0.9, step=0.3, max_rounds=50),
        CALIBRATION, VALIDATION, epochs_per_round=1, skip_unpruned_rounds=False, verbose=0,
    )
    pm.fit(*TRAIN, epochs=3, batch_size=BATCH, verbose=0, callbacks=[spy, pruning])
    assert pruning.records[-1]["decision"] != "stop"
    best = pruning.best_round
    assert best == pruning.policy.best_round
    assert same_state(snapshot_state(pm), spy.ends[best - 1])


def test_callback_evaluates_a_round_that_prunes_nothing_without_training_it():
    pm = trained_prunable_model()
    spy = EpochSpy()
    # A tiny step: the first rounds prune nothing and take no epochs.
    pruning = AdaptivePruning(
        ParamsTarget(reduction=0.3, step=1e-6, patience=1, max_rounds=3),
        CALIBRATION, VALIDATION, epochs_per_round=2, verbose=0,
    )
    history = pm.fit(*TRAIN, epochs=8, batch_size=BATCH, verbose=0, callbacks=[spy, pruning])
    records = pruning.records
    assert len(records) == 4 and records[-1]["decision"] == "stop"
    # Round 1 (T = 0) may prune dead filters; later rounds prune nothing more.
    unpruned = [r for r in records[1:] if r["pruned_channels"] == 0]
    assert len(unpruned) >= 2
    assert all(r["epochs"] == 0 for r in unpruned)
    trained_epochs = sum(r["epochs"] for r in records)
    # fit() stops at the end of the epoch in which the policy stopped.
    assert len(history.history["loss"]) == max(1, trained_epochs)
    # The model left is the best round's, not trained further in that epoch.
    assert same_state(snapshot_state(pm), pruning._states[pruning.best_round])
    if trained_epochs == 0:  # stopped before training: the model fit started with
        assert same_state(snapshot_state(pm), spy.begins[0])


def test_callback_records_render_as_a_report_table():
    pm = trained_prunable_model(epochs=1)
    pruning = AdaptivePruning(
        ParamsTarget(reduction=0.3, step=0.5, max_rounds=2),
        CALIBRATION, VALIDATION, epochs_per_round=1, verbose=0,
    )
    pm.fit(*TRAIN, epochs=4, batch_size=BATCH, verbose=0, callbacks=[pruning])
    table = report.rounds_table(pruning.records)
    assert table.count("\n") == len(pruning.records) + 2


# -------------------------------------------------------------- bad input


@pytest.mark.parametrize("epochs_per_round", [0, -1, 1.5, True, None])
def test_epochs_per_round_below_one_is_refused(epochs_per_round):
    with pytest.raises(ConfigurationError, match="`epochs_per_round` must be an integer >= 1"):
        AdaptivePruning(AccuracyGuaranteed(), CALIBRATION, VALIDATION, epochs_per_round)


def test_missing_validation_or_calibration_data_is_refused():
    with pytest.raises(ConfigurationError, match="validation_data is missing"):
        AdaptivePruning(AccuracyGuaranteed(), CALIBRATION, None, 1)
    with pytest.raises(ConfigurationError, match="calibration_data is missing"):
        AdaptivePruning(AccuracyGuaranteed(), None, VALIDATION, 1)


def test_unknown_rewind_mode_and_non_policy_are_refused():
    with pytest.raises(ConfigurationError, match="`rewind` must be one of"):
        AdaptivePruning(AccuracyGuaranteed(), CALIBRATION, VALIDATION, 1, rewind="epoch")
    with pytest.raises(ConfigurationError, match="policy must be"):
        AdaptivePruning({"max_accuracy_drop": 0.01}, CALIBRATION, VALIDATION, 1)


def test_model_without_masks_is_refused_when_fit_starts():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(4, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruning = AdaptivePruning(AccuracyGuaranteed(), CALIBRATION, VALIDATION, 1, verbose=0)
    with pytest.raises(ConfigurationError, match="make_prunable"):
        model.fit(*TRAIN, epochs=1, verbose=0, callbacks=[pruning])


# ------------------------------------------------------- durable callback


class Interrupt(Exception):
    """Stands for a crash or a kill in the middle of fit()."""


class InterruptAfterRound(keras.callbacks.Callback):
    """Placed after AdaptivePruning: raises once `pruning` has logged `round_number`."""

    def __init__(self, pruning, round_number):
        super().__init__()
        self.pruning, self.round_number = pruning, round_number

    def on_epoch_end(self, epoch, logs=None):
        if self.pruning.records and self.pruning.records[-1]["round"] >= self.round_number:
            raise Interrupt()


def test_interrupted_fit_with_a_run_dir_resumes_without_rerunning_rounds(tmp_path):
    def policy():
        return ParamsTarget(reduction=0.3, step=0.5, max_rounds=4)

    pm = trained_prunable_model(epochs=1)
    first = AdaptivePruning(
        policy(), CALIBRATION, VALIDATION, epochs_per_round=1, verbose=0,
        skip_unpruned_rounds=False, run_dir=tmp_path, test_data=VALIDATION,
    )
    with pytest.raises(Interrupt):
        pm.fit(*TRAIN, epochs=20, batch_size=BATCH, verbose=0,
               callbacks=[first, InterruptAfterRound(first, 2)])
    done = [dict(record) for record in first.records]
    assert [r["round"] for r in done] == [0, 1, 2]
    assert os.path.exists(tmp_path / "checkpoints" / "round_0000.npz")

    # A new process would build the model again: same architecture, other weights.
    restarted = trained_prunable_model(epochs=0)
    second = AdaptivePruning(
        policy(), CALIBRATION, VALIDATION, epochs_per_round=1, verbose=0,
        skip_unpruned_rounds=False, run_dir=tmp_path, test_data=VALIDATION,
    )
    restarted.fit(*TRAIN, epochs=20, batch_size=BATCH, verbose=0, callbacks=[second])
    records = second.records

    def as_logged(record):  # the best round's line gains the final test metric at the end
        return {k: v for k, v in record.items() if k != "test_accuracy" or record["round"] == 0}

    assert [as_logged(r) for r in records[: len(done)]] == done  # kept as logged, not run again
    assert records[second.best_round]["test_accuracy"] == pytest.approx(
        second.test_metrics["final"]
    )
    assert [r["round"] for r in records] == list(range(len(records)))
    assert len(records) > len(done)
    assert records[-1]["decision"] == "stop"
    assert second.best_round == records[-1]["best_round"]
    # The model is left in the best round's state: the checkpoint's weights and masks.
    saved, _ = load_state(tmp_path / "checkpoints" / f"round_{second.best_round:04d}.npz")
    assert same_state(snapshot_state(restarted, optimizer=False), saved)
    assert second.test_metrics["baseline"] == pytest.approx(done[0]["test_accuracy"])
    assert second.test_metrics["final"] is not None
    assert os.path.exists(tmp_path / "final" / "slim.keras")
    assert os.path.exists(tmp_path / "report.md")


def test_a_run_dir_of_other_settings_is_refused_when_fit_starts(tmp_path):
    pm = trained_prunable_model(epochs=0)
    first = AdaptivePruning(
        ParamsTarget(0.3, step=0.5, max_rounds=1), CALIBRATION, VALIDATION, 1, verbose=0,
        run_dir=tmp_path,
    )
    pm.fit(*TRAIN, epochs=2, batch_size=BATCH, verbose=0, callbacks=[first])
    other = AdaptivePruning(
        ParamsTarget(0.3, step=0.5, max_rounds=1), CALIBRATION, VALIDATION, 2, verbose=0,
        run_dir=tmp_path,
    )
    with pytest.raises(RunDirectoryError, match="epochs_per_round: saved 1, now 2"):
        pm.fit(*TRAIN, epochs=2, batch_size=BATCH, verbose=0, callbacks=[other])


def test_max_fraction_and_metric_reach_the_callback_settings(monkeypatch):
    seen = []
    original = step_module.threshold_masks

    def recording_threshold_masks(*args, **kwargs):
        seen.append((kwargs["max_fraction"], kwargs["round_to"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(step_module, "threshold_masks", recording_threshold_masks)
    pm = trained_prunable_model(epochs=1)
    pruning = AdaptivePruning(
        ParamsTarget(0.3, step=0.5, max_rounds=1), CALIBRATION, VALIDATION, 1, verbose=0,
        max_fraction=None, round_to=2,
    )
    pm.fit(*TRAIN, epochs=3, batch_size=BATCH, verbose=0, callbacks=[pruning])
    assert seen and set(seen) == {(None, 2)}
    assert pruning.records[0]["metric"] == "accuracy"
    assert "validation_accuracy" in pruning.records[0]
