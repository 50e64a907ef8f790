"""Tests of tf_asap.rounds.controller: Algorithm 1 rounds, rewinding, rollback, durable runs."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

import tf_asap
from tf_asap import files as files_module
from tf_asap.rounds import controller as controller_module
from tf_asap.rounds.controller import (
    RoundController,
    load_state,
    read_round_log,
    restore_state,
    snapshot_state,
    train_baseline,
)
from tf_asap.errors import ConfigurationError, RunDirectoryError
from tf_asap.pruning.policies import AccuracyGuaranteed, FlopsTarget, ParamsTarget
from tests.helpers import UntrimmedParamsTarget, quadrant_data

# Batches of 64 over 256 samples: 4 optimizer steps per epoch.
BATCH = 64
STEPS = 4



def tiny_model(conv1_filters=8):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(conv1_filters, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="tiny")


TRAIN = quadrant_data(256, 0)
VALIDATION = quadrant_data(128, 1)


def sgd():
    return keras.optimizers.SGD(0.05, momentum=0.9)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """A baseline trained for 4 epochs, its rewind checkpoint saved at epoch 2."""
    keras.utils.set_random_seed(0)
    run_dir = tmp_path_factory.mktemp("baseline_run")
    result = train_baseline(
        tiny_model(), TRAIN, VALIDATION, epochs=4, run_dir=run_dir,
        rewind_epoch=2, batch_size=BATCH, optimizer=sgd(), verbose=0,
    )
    return result


def fresh_copy(baseline):
    """The trained baseline, loaded anew (a controller modifies a prunable model in place)."""
    return keras.models.load_model(baseline.final_model_path)


class RoundSpy(keras.callbacks.Callback):
    """Records the state at the start and the end of every round's retraining."""

    def __init__(self):
        super().__init__()
        self.starts, self.ends, self.masks = [], [], []

    def on_train_begin(self, logs=None):
        self.starts.append(snapshot_state(self.model))
        self.masks.append(tf_asap.get_masks(self.model))

    def on_train_end(self, logs=None):
        self.ends.append(snapshot_state(self.model))


def same_state(first, second):
    """Whether two ModelStates hold identical arrays (bit for bit)."""
    pairs = list(zip(first.weights, second.weights))
    pairs += list(zip(first.optimizer or [], second.optimizer or []))
    return (
        len(first.weights) == len(second.weights)
        and len(first.optimizer or []) == len(second.optimizer or [])
        and all(a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in pairs)
    )


@pytest.fixture(scope="module")
def finished_run(baseline, tmp_path_factory):
    """A complete learning-rate-rewinding run with the accuracy policy."""
    keras.utils.set_random_seed(0)
    run_dir = tmp_path_factory.mktemp("lr_run")
    spy = RoundSpy()
    controller = RoundController(
        fresh_copy(baseline),
        AccuracyGuaranteed(max_accuracy_drop=0.05, step=0.5, max_rounds=4),
        TRAIN, VALIDATION, run_dir=run_dir, epochs=4, rewind_epoch=2,
        batch_size=BATCH, optimizer=sgd(), callbacks=[spy], retrain="masked", verbose=0,
    )
    result = controller.run()
    return controller, result, spy, run_dir


def trained_rounds(records):
    """Rounds that were retrained, in order: the i-th fit() call is round trained_rounds[i]."""
    return [record["round"] for record in records[1:] if record["epochs"]]


def parents(records):
    """{round: round it was pruned from}, following rollbacks."""
    found = {}
    for previous, record in zip(records, records[1:]):
        found[record["round"]] = (
            previous["rollback_to"] if previous["decision"] == "rollback" else previous["round"]
        )
    return found


# ----------------------------------------------------------------- baseline


def test_train_baseline_saves_rewind_checkpoint_of_epoch_k_and_final_model(baseline):
    state, metadata = load_state(baseline.rewind_checkpoint)
    assert metadata["epoch"] == 2
    assert metadata["steps_per_epoch"] == STEPS
    iterations = dict(state.optimizer)["iteration"]
    assert int(iterations) == 2 * STEPS
    loaded = keras.models.load_model(baseline.final_model_path)
    assert tf_asap.core.masks.is_prunable_model(loaded)
    assert baseline.accuracy > 0.5  # the quadrant task is learnt
    logs = loaded.evaluate(*VALIDATION, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(baseline.accuracy, abs=1e-6)


def test_train_baseline_reuses_a_finished_baseline(baseline, tmp_path):
    run_dir = os.path.dirname(os.path.dirname(baseline.final_model_path))
    again = train_baseline(
        tiny_model(), TRAIN, VALIDATION, epochs=4, run_dir=run_dir,
        rewind_epoch=2, batch_size=BATCH, verbose=0,
    )
    assert again.history == {}
    assert again.accuracy == baseline.accuracy


# ------------------------------------------------------------------- rounds


def test_masks_only_shrink_from_round_to_round(finished_run):
    _, result, spy, _ = finished_run
    records = result.rounds
    assert len(records) >= 4
    masks = {0: {name: np.ones_like(keep) for name, keep in spy.masks[0].items()}}
    trained = dict(zip(trained_rounds(records), spy.masks))
    assert trained, "no round pruned anything"
    for round_number, parent in parents(records).items():
        if round_number not in trained:
            # Nothing pruned: not retrained, and the model is its parent's.
            assert records[round_number]["pruned_channels"] == 0
            assert records[round_number]["params"] == records[parent]["params"]
            masks[round_number] = masks[parent]
            continue
        masks[round_number] = trained[round_number]
        assert records[round_number]["pruned_channels"] > 0
        for name, keep in masks[round_number].items():
            assert not np.any(keep & ~masks[parent][name]), (round_number, name)
        assert records[round_number]["params"] < records[parent]["params"]


def test_every_round_records_accuracy_params_flops_and_decision(finished_run):
    controller, result, _, run_dir = finished_run
    records = read_round_log(run_dir)
    assert records == result.rounds
    assert [r["round"] for r in records] == list(range(len(records)))
    for record in records:
        assert 0.0 <= record["accuracy"] <= 1.0
        assert record["accuracy_drop"] == pytest.approx(records[0]["accuracy"] - record["accuracy"])
        assert record["decision"] in ("prune", "rollback", "stop")
        for key in ("threshold", "step", "params", "flops", "params_reduction", "flops_reduction",
                    "wall_time_s", "reason", "acceptable"):
            assert key in record
    # The accuracy logged for a round is the accuracy of its saved state.
    for record in records:
        if record["acceptable"]:
            controller.restore_round(record["round"])
            logs = controller.model.evaluate(*VALIDATION, verbose=0, return_dict=True)
            assert logs["accuracy"] == pytest.approx(record["accuracy"], abs=1e-6)
    assert records[-1]["decision"] == "stop"


def test_learning_rate_rewinding_resets_the_schedule_and_keeps_the_weights(finished_run):
    _, result, spy, _ = finished_run
    records = result.rounds
    trained = trained_rounds(records)
    assert len(spy.starts) == len(trained)
    for index, (round_number, start) in enumerate(zip(trained, spy.starts)):
        optimizer = dict(start.optimizer)
        assert int(optimizer["iteration"]) == 2 * STEPS  # epoch k = 2 of the schedule
        assert all(not value.any() for name, value in start.optimizer if name.endswith("momentum"))
        parent = parents(records)[round_number]
        if index > 0 and parent == trained[index - 1]:
            # Pruned on top of the previous retrained round: its weights go on.
            previous_end = dict(spy.ends[index - 1].weights)
            for name, value in start.weights:
                if not name.endswith("_mask"):
                    np.testing.assert_array_equal(value, previous_end[name])


def test_weight_rewinding_resets_surviving_weights_and_optimizer_to_epoch_k(baseline, tmp_path):
    spy = RoundSpy()
    controller = RoundController(
        fresh_copy(baseline),
        ParamsTarget(reduction=0.3, step=0.5, max_rounds=2),
        TRAIN, VALIDATION, run_dir=tmp_path, epochs=4,
        rewind_checkpoint=baseline.rewind_checkpoint, batch_size=BATCH,
        callbacks=[spy], retrain="masked", verbose=0,
    )
    assert controller.rewind_epoch == 2
    controller.run()
    rewind, _ = load_state(baseline.rewind_checkpoint)
    assert len(spy.starts) >= 1
    for start in spy.starts:
        # States hold the variables in model order (names may differ between
        # a trained model and the same model loaded from .keras).
        for (name, value), (_, saved) in zip(start.weights, rewind.weights):
            if not name.endswith("_mask"):
                np.testing.assert_array_equal(value, saved)
        assert len(start.optimizer) == len(rewind.optimizer)
        for (_, value), (_, saved) in zip(start.optimizer, rewind.optimizer):
            np.testing.assert_array_equal(value, saved)


def test_retry_with_the_masks_of_an_earlier_failure_is_not_retrained(baseline, tmp_path):
    # Round 2 (T = 5) overshoots; its retry from round 1 (T = 2.5) hits the
    # thresholds' per-round cap and chooses the same filters: the same
    # experiment as round 2, so it reuses its accuracy instead of training.
    policy = UntrimmedParamsTarget(reduction=0.2, tolerance=0.05, step=5.0, max_rounds=4)
    spy = RoundSpy()
    controller = RoundController(
        fresh_copy(baseline), policy, TRAIN, VALIDATION, run_dir=tmp_path, epochs=4,
        rewind_epoch=2, batch_size=BATCH, optimizer=sgd(), callbacks=[spy], retrain="masked", verbose=0,
    )
    records = controller.run().rounds
    repeats = [r for r in records if r.get("repeat_of") is not None]
    assert repeats, [(r["round"], r["threshold"], r["params"]) for r in records]
    for record in repeats:
        earlier = records[record["repeat_of"]]
        assert earlier["decision"] == "rollback" and not earlier["acceptable"]
        assert record["epochs"] == 0
        assert record["mask_digest"] == earlier["mask_digest"]
        assert (record["accuracy"], record["params"]) == (earlier["accuracy"], earlier["params"])
        assert record["threshold"] < earlier["threshold"]
    # Only the rounds with epochs trained: one fit() each.
    assert len(spy.starts) == sum(1 for r in records if r["epochs"])


def weights_of(state):
    """The state without its optimizer variables (checkpoints keep weights and masks only)."""
    return type(state)(state.weights, None)


def test_rollback_restores_identical_weights_and_masks(baseline, tmp_path, monkeypatch):
    # Round 1 (T = 0) is acceptable; round 2 (T = 5) prunes nearly everything
    # and overshoots the 20-25% window, so the policy rolls back to round 1.
    policy = UntrimmedParamsTarget(reduction=0.2, tolerance=0.05, step=5.0, max_rounds=3)
    spy = RoundSpy()
    before_pruning = []
    original = controller_module.prune_filters

    def recording_prune_filters(model, *args, **kwargs):
        before_pruning.append(snapshot_state(model))
        return original(model, *args, **kwargs)

    monkeypatch.setattr(controller_module, "prune_filters", recording_prune_filters)
    controller = RoundController(
        fresh_copy(baseline), policy, TRAIN, VALIDATION, run_dir=tmp_path, epochs=4,
        rewind_epoch=2, batch_size=BATCH, optimizer=sgd(), callbacks=[spy], retrain="masked",
        skip_unpruned_rounds=False, verbose=0,  # every round trains: fit i is round i + 1
    )
    result = controller.run()
    records = result.rounds
    assert records[2]["decision"] == "rollback" and records[2]["rollback_to"] == 1
    # Round 3 starts from round 1's state, restored exactly: the state it
    # had when round 1's retraining ended (spy.ends[0]). The optimizer is not
    # part of it: every retraining first rewinds it from rewind.npz.
    assert same_state(weights_of(before_pruning[2]), weights_of(spy.ends[0]))
    assert not same_state(weights_of(before_pruning[2]), weights_of(spy.ends[1]))
    # And the saved checkpoint of round 1 is that state too, without optimizer slots.
    saved, _ = load_state(os.path.join(tmp_path, "checkpoints", "round_0001.npz"))
    assert saved.optimizer is None
    assert same_state(saved, weights_of(spy.ends[0]))
    # Round 3's retraining starts from the rewind state's optimizer, as every round's.
    rewind, _ = load_state(os.path.join(tmp_path, "rewind.npz"))
    assert all(
        np.array_equal(a[1], b[1]) for a, b in zip(rewind.optimizer, spy.starts[2].optimizer)
    )


def test_a_round_that_prunes_nothing_is_evaluated_without_retraining(baseline, tmp_path):
    # Thresholds far below every live score: no round prunes anything.
    spy = RoundSpy()
    result = RoundController(
        fresh_copy(baseline), AccuracyGuaranteed(0.05, step=1e-6, patience=1, max_rounds=3),
        TRAIN, VALIDATION, run_dir=tmp_path, epochs=4, rewind_epoch=2, batch_size=BATCH,
        optimizer=sgd(), callbacks=[spy], retrain="masked", verbose=0,
    ).run()
    records = result.rounds
    assert len(records) == 4
    # Round 1 (T = 0) may prune dead filters; later rounds prune nothing more.
    unpruned = [r for r in records[1:] if r["pruned_channels"] == 0]
    assert len(unpruned) >= 2
    for record in unpruned:
        assert record["epochs"] == 0
        assert record["accuracy"] == pytest.approx(records[record["round"] - 1]["accuracy"], abs=1e-6)
    assert len(spy.starts) == len(records) - 1 - len(unpruned)


def test_snapshot_and_restore_state_round_trip_exactly():
    pm = tf_asap.make_prunable(tiny_model())
    pm.compile(sgd(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    pm.fit(*TRAIN, epochs=1, batch_size=BATCH, verbose=0)
    saved = snapshot_state(pm)
    pm.fit(*TRAIN, epochs=1, batch_size=BATCH, verbose=0)
    tf_asap.apply_masks(pm, {"conv1": np.arange(8) % 2 == 0})
    assert not same_state(snapshot_state(pm), saved)
    restore_state(pm, saved)
    assert same_state(snapshot_state(pm), saved)


# ---------------------------------------------------------- the run directory


def test_run_directory_holds_log_manifest_checkpoints_models_report_and_tensorboard(finished_run):
    controller, result, _, run_dir = finished_run
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["best_round"] == result.best_round
    assert manifest["model"]["fingerprint"] == controller.fingerprint
    assert manifest["policy"]["kind"] == "AccuracyGuaranteed"
    assert manifest["policy_state"]["history"][-1]["round"] == len(result.rounds) - 1
    assert manifest["threshold_reference"] > 0
    assert manifest["settings"]["rewinding"] == "lr"
    for record in result.rounds:
        checkpoint = run_dir / "checkpoints" / f"round_{record['round']:04d}.npz"
        assert checkpoint.exists() == (record["round"] == 0 or record["acceptable"])
    masked = keras.models.load_model(run_dir / "final" / "model.keras")
    small = keras.models.load_model(run_dir / "final" / "slim.keras")
    x = VALIDATION[0][:16]
    np.testing.assert_allclose(small(x), masked(x), atol=1e-5)
    assert small.count_params() < tiny_model().count_params()
    assert tf_asap.count_cost(small).params == result.best["params"]
    assert (run_dir / "rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| round |" in (run_dir / "report.md").read_text()
    events = list((run_dir / "tensorboard").iterdir())
    assert events and events[0].name.startswith("events.out.tfevents")
    # No temporary files are left behind.
    assert not [p for p in run_dir.rglob(".*") if p.is_file()]


def test_running_a_finished_run_again_returns_its_result_without_retraining(finished_run, baseline):
    _, result, _, run_dir = finished_run
    spy = RoundSpy()
    again = RoundController(
        fresh_copy(baseline),
        AccuracyGuaranteed(max_accuracy_drop=0.05, step=0.5, max_rounds=4),
        TRAIN, VALIDATION, run_dir=run_dir, epochs=4, rewind_epoch=2,
        batch_size=BATCH, optimizer=sgd(), callbacks=[spy], retrain="masked", verbose=0,
    ).run()
    assert spy.starts == []
    assert again.best_round == result.best_round
    assert again.rounds == result.rounds


RESUMABLE_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    sys.path.insert(0, {tests_dir!r})
    sys.path.insert(0, os.path.dirname(os.path.dirname({tests_dir!r})))  # for the tests package
    from test_controller import TRAIN, VALIDATION, BATCH, tiny_model
    from tf_asap.rounds.controller import RoundController
    from tf_asap.pruning.policies import ParamsTarget

    class Slow(keras.callbacks.Callback):
        # Makes each round last long enough to be killed in the middle.
        def on_epoch_end(self, epoch, logs=None):
            if os.environ.get("SLOW"):
                time.sleep(0.4)

    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(*TRAIN, epochs=3, batch_size=BATCH, verbose=0)
    result = RoundController(
        model, ParamsTarget(reduction=0.6, step=0.4, max_rounds=5),
        TRAIN, VALIDATION, run_dir=sys.argv[1], epochs=4, rewind_epoch=2,
        batch_size=BATCH, callbacks=[Slow()], verbose=1,
    ).run()
    print("BEST", result.best_round)
    """
)


def test_run_killed_mid_round_resumes_and_keeps_every_completed_round(tmp_path):
    script = tmp_path / "prune.py"
    script.write_text(
        RESUMABLE_SCRIPT.format(tests_dir=os.path.dirname(os.path.abspath(__file__)))
    )
    run_dir = tmp_path / "run"
    environment = dict(os.environ, SLOW="1", TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, str(script), str(run_dir)], env=environment,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    log = run_dir / "rounds.jsonl"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail("the run ended before it could be killed")
            if log.exists() and len(read_round_log(log)) >= 2:
                break  # round 1 is complete; round 2 is retraining
            time.sleep(0.05)
        else:
            pytest.fail("round 1 never completed")
        time.sleep(0.3)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    completed = read_round_log(log)
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "running"
    assert len(completed) >= 2

    environment.pop("SLOW")
    finished = subprocess.run(
        [sys.executable, str(script), str(run_dir)], env=environment,
        capture_output=True, text=True, timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "Resuming" in finished.stdout
    records = read_round_log(log)
    assert records[: len(completed)] == completed  # completed rounds untouched
    assert [r["round"] for r in records] == list(range(len(records)))
    assert len(records) > len(completed)
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "finished"
    assert f"BEST {manifest['best_round']}" in finished.stdout
    assert (run_dir / "final" / "slim.keras").exists()


def test_atomic_write_leaves_the_old_file_whole_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    files_module.atomic_write_json(path, {"round": 1})

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files_module.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        files_module.atomic_write_json(path, {"round": 2})
    assert json.loads(path.read_text()) == {"round": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


# -------------------------------------------------------------- bad input


def test_run_directory_of_a_different_model_is_refused(finished_run):
    _, _, _, run_dir = finished_run
    other = RoundController(
        tiny_model(conv1_filters=6), AccuracyGuaranteed(0.05, step=0.5, max_rounds=4),
        TRAIN, VALIDATION, run_dir=run_dir, epochs=4, rewind_epoch=2, batch_size=BATCH,
        verbose=0,
    )
    with pytest.raises(RunDirectoryError, match="different model"):
        other.run()


def test_run_directory_with_other_settings_is_refused(finished_run, baseline):
    _, _, _, run_dir = finished_run
    other = RoundController(
        fresh_copy(baseline), AccuracyGuaranteed(0.05, step=0.5, max_rounds=4),
        TRAIN, VALIDATION, run_dir=run_dir, epochs=6, rewind_epoch=2, batch_size=BATCH,
        verbose=0,
    )
    with pytest.raises(RunDirectoryError, match="epochs"):
        other.run()


def test_missing_validation_data_without_a_split_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="validation_data is missing"):
        RoundController(
            tiny_model(), AccuracyGuaranteed(), TRAIN, None, run_dir=tmp_path, epochs=4,
            validation_split=0,
        )
    with pytest.raises(ConfigurationError, match="validation_data is missing"):
        train_baseline(tiny_model(), TRAIN, None, epochs=4, run_dir=tmp_path)


@pytest.mark.parametrize("rewind_epoch", [4, 7, -1])
def test_rewind_epoch_beyond_training_is_refused(tmp_path, rewind_epoch):
    with pytest.raises(ConfigurationError, match="`rewind_epoch` must be an integer in \\[0, 3\\]"):
        RoundController(
            tiny_model(), AccuracyGuaranteed(), TRAIN, VALIDATION, run_dir=tmp_path,
            epochs=4, rewind_epoch=rewind_epoch,
        )
    with pytest.raises(ConfigurationError, match="rewind_epoch"):
        train_baseline(tiny_model(), TRAIN, VALIDATION, epochs=4, run_dir=tmp_path,
                       rewind_epoch=rewind_epoch)


def test_rewind_checkpoint_of_another_epoch_is_refused(baseline, tmp_path):
    with pytest.raises(ConfigurationError, match="saved at epoch 2"):
        RoundController(
            fresh_copy(baseline), AccuracyGuaranteed(), TRAIN, VALIDATION, run_dir=tmp_path,
            epochs=4, rewind_epoch=1, rewind_checkpoint=baseline.rewind_checkpoint,
        )


@pytest.mark.parametrize("epochs", [0, -3, 2.5])
def test_non_positive_epochs_are_refused(tmp_path, epochs):
    with pytest.raises(ConfigurationError, match="`epochs` must be an integer >= 1"):
        RoundController(tiny_model(), AccuracyGuaranteed(), TRAIN, VALIDATION,
                        run_dir=tmp_path, epochs=epochs)


@pytest.mark.parametrize(
    "make_policy",
    [
        lambda: ParamsTarget(reduction=-0.2),
        lambda: ParamsTarget(reduction=1.5),
        lambda: FlopsTarget(reduction=-0.1),
        lambda: FlopsTarget(reduction=2.0),
        lambda: AccuracyGuaranteed(max_accuracy_drop=-0.01),
        lambda: AccuracyGuaranteed(max_accuracy_drop=1.5),
    ],
)
def test_targets_outside_zero_one_are_refused(make_policy):
    with pytest.raises(ConfigurationError, match="must be a number in"):
        make_policy()


def test_a_policy_that_already_ran_is_refused(tmp_path):
    policy = ParamsTarget(0.5)
    policy.start(tf_asap.pruning.policies.RoundResult(0, 0.0, 0.9, 100, 1000))
    with pytest.raises(ConfigurationError, match="already been started"):
        RoundController(tiny_model(), policy, TRAIN, VALIDATION, run_dir=tmp_path, epochs=4)


def test_run_directory_in_use_by_another_run_is_refused(baseline, tmp_path):
    controller = RoundController(
        fresh_copy(baseline), AccuracyGuaranteed(0.05, step=0.5, max_rounds=1),
        TRAIN, VALIDATION, run_dir=tmp_path, epochs=4, rewind_epoch=2, batch_size=BATCH,
        verbose=0,
    )
    with controller_module.RunDirectory(tmp_path).locked():
        with pytest.raises(RunDirectoryError, match="in use by another process"):
            controller.run()
    assert controller.run().best_round in (0, 1)  # released: the run goes ahead


def test_target_round_that_would_overshoot_is_trimmed_into_the_window(baseline, tmp_path):
    # The same big step that overshoots the 20-25% window when untrimmed
    # (test_rollback_restores_identical_weights_masks_and_optimizer).
    policy = ParamsTarget(reduction=0.2, tolerance=0.05, step=5.0, max_rounds=3)
    controller = RoundController(
        fresh_copy(baseline), policy, TRAIN, VALIDATION, run_dir=tmp_path, epochs=4,
        rewind_epoch=2, batch_size=BATCH, optimizer=sgd(), verbose=0,
    )
    result = controller.run()
    assert [r["decision"] for r in result.rounds if r["decision"] == "rollback"] == []
    best = result.rounds[result.best_round]
    assert 0.2 <= best["params_reduction"] <= 0.25 + 1e-9


def test_the_trim_prices_the_policys_objective_when_thresholds_weigh_another(baseline, tmp_path):
    # A FLOPs target with params-weighted thresholds: T=5 removes 66% of the
    # FLOPs untrimmed (measured before the trim priced the policy's objective,
    # when it was off for differing objectives, and the round was rolled back).
    policy = FlopsTarget(reduction=0.1, tolerance=0.03, step=5.0, max_rounds=2)
    controller = RoundController(
        fresh_copy(baseline), policy, TRAIN, VALIDATION, run_dir=tmp_path, epochs=4,
        rewind_epoch=2, batch_size=BATCH, optimizer=sgd(), verbose=0, objective="params",
    )
    result = controller.run()
    assert [r for r in result.rounds if r["decision"] == "rollback"] == []
    trimmed = result.rounds[2]
    assert trimmed["threshold"] == 5.0 and 0.0 < trimmed["flops_reduction"] <= 0.13 + 1e-9
    assert trimmed["reduction_limit"] == pytest.approx(0.13)  # the round log says what bound it
