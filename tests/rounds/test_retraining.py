"""Tests of tf_asap.rounds.retraining wired into RoundController: slim or masked
retraining, distillation, early rejection and the final fine-tuning stage."""

import json
import os

import keras
import numpy as np
import pytest

import tf_asap
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies import AccuracyGuaranteed, ParamsTarget
from tf_asap.rounds import retraining as retraining_module
from tf_asap.rounds.controller import RoundController, load_state
from tf_asap.rounds.retraining import Retraining
from tests.helpers import quadrant_cnn as tiny_model
from tests.helpers import quadrant_data

BATCH = 64
TRAIN = quadrant_data(256, 0)
VALIDATION = quadrant_data(128, 1)
TEST = quadrant_data(96, 2)


@pytest.fixture(scope="module")
def trained_weights():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(*TRAIN, epochs=3, batch_size=BATCH, verbose=0)
    return model.get_weights()


def trained_model(weights):
    model = tiny_model()
    model.set_weights(weights)
    return model


class FitSpy(keras.callbacks.Callback):
    """Records, for every fit, the trained model's parameter count and its epochs."""

    def __init__(self):
        super().__init__()
        self.sizes, self.epochs = [], []

    def on_train_begin(self, logs=None):
        self.sizes.append(self.model.count_params())
        self.epochs.append(0)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[-1] += 1


def run(weights, run_dir, policy=None, **options):
    keras.utils.set_random_seed(0)
    options.setdefault("epochs", 4)
    options.setdefault("rewind_epoch", 2)
    return RoundController(
        trained_model(weights),
        policy or ParamsTarget(reduction=0.5, step=1.0, max_rounds=2),
        TRAIN, VALIDATION, run_dir=run_dir, batch_size=BATCH,
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9), verbose=0, **options,
    ).run()


def round_masks(run_dir, records):
    """{round: masks} of every round that kept a checkpoint."""
    found = {}
    for record in records:
        path = os.path.join(run_dir, "checkpoints", f"round_{record['round']:04d}.npz")
        if os.path.exists(path):
            state, _ = load_state(path)
            found[record["round"]] = [v for n, v in state.weights if n.endswith("_mask")]
    return found


def test_slim_and_masked_retraining_make_the_same_decisions(trained_weights, tmp_path):
    slim = run(trained_weights, tmp_path / "slim", retrain="slim")
    masked = run(trained_weights, tmp_path / "masked", retrain="masked")
    assert len(slim.rounds) == len(masked.rounds) == 3
    assert any(r["pruned_channels"] for r in slim.rounds[1:])
    for ours, theirs in zip(slim.rounds, masked.rounds):
        assert ours["decision"] == theirs["decision"]
        assert ours.get("mask_digest") == theirs.get("mask_digest")
        assert ours["params"] == theirs["params"]
        # Same function and gradients; only float summation order differs.
        assert ours["accuracy"] == pytest.approx(theirs["accuracy"], abs=0.02)
    slim_masks = round_masks(tmp_path / "slim", slim.rounds)
    masked_masks = round_masks(tmp_path / "masked", masked.rounds)
    assert slim_masks.keys() == masked_masks.keys()
    for number in slim_masks:
        for a, b in zip(slim_masks[number], masked_masks[number]):
            np.testing.assert_array_equal(a, b)


def test_slim_retraining_trains_a_smaller_model(trained_weights, tmp_path):
    slim_spy, masked_spy = FitSpy(), FitSpy()
    slim = run(trained_weights, tmp_path / "slim", retrain="slim", callbacks=[slim_spy])
    run(trained_weights, tmp_path / "masked", retrain="masked", callbacks=[masked_spy])
    dense = trained_model(trained_weights).count_params()
    trained = [r for r in slim.rounds[1:] if r["epochs"]]
    assert trained and len(slim_spy.sizes) == len(trained)
    for params, record in zip(slim_spy.sizes, trained):
        assert params < dense
        # The slim model holds only the kept weights: its count is the round's.
        assert params == record["params"]
    assert all(params >= dense for params in masked_spy.sizes)


@pytest.mark.parametrize("retrain", ["slim", "masked"])
def test_distillation_with_alpha_one_equals_no_distillation(trained_weights, tmp_path, retrain):
    plain = run(trained_weights, tmp_path / "plain", retrain=retrain)
    distilled = run(
        trained_weights, tmp_path / "distilled", retrain=retrain,
        distillation={"alpha": 1.0, "temperature": 4.0},
    )
    assert [r["params"] for r in plain.rounds] == [r["params"] for r in distilled.rounds]
    for ours, theirs in zip(plain.rounds, distilled.rounds):
        assert ours["accuracy"] == pytest.approx(theirs["accuracy"], abs=1e-6)
    for a, b in zip(plain.model.get_weights(), distilled.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_distillation_uses_a_frozen_copy_of_round_zero_as_teacher(trained_weights, tmp_path):
    result = run(trained_weights, tmp_path, distillation={"alpha": 0.5, "temperature": 2.0})
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["settings"]["distillation"] == {
        "alpha": 0.5, "temperature": 2.0, "teacher": "round 0",
    }
    assert any(r["epochs"] for r in result.rounds[1:])
    # The teacher computes the unpruned model's outputs.
    teacher_check = trained_model(trained_weights)
    controller = RoundController(
        trained_model(trained_weights), ParamsTarget(reduction=0.5, step=1.0, max_rounds=2),
        TRAIN, VALIDATION, run_dir=tmp_path, epochs=4, rewind_epoch=2, batch_size=BATCH,
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9), verbose=0,
        distillation={"alpha": 0.5, "temperature": 2.0},
    )
    teacher = controller.retraining.teacher()
    assert not teacher.trainable
    np.testing.assert_allclose(
        teacher.predict(VALIDATION[0], verbose=0),
        teacher_check.predict(VALIDATION[0], verbose=0), atol=1e-5,
    )


def scripted_metric(monkeypatch, values):
    """Makes the per-epoch validation metric of early rejection follow `values`."""
    calls = []
    script = iter(values)

    def read_metric(logs, metric="accuracy"):
        value = next(script)
        calls.append(value)
        return value

    monkeypatch.setattr(retraining_module, "read_metric", read_metric)
    return calls


def test_early_rejection_stops_a_round_that_cannot_reach_the_bound(
    trained_weights, tmp_path, monkeypatch
):
    # 4 epochs per round. Epoch 1: 0.00; epoch 2: 0.01, so the best gain seen
    # is 0.01 per epoch and 0.01 + 2 x 0.01 is far below the bound: rejected.
    calls = scripted_metric(monkeypatch, [0.0, 0.01] + [0.0] * 20)
    spy = FitSpy()
    result = run(
        trained_weights, tmp_path, epochs=6, rewind_epoch=2, callbacks=[spy],
        policy=AccuracyGuaranteed(max_accuracy_drop=0.01, initial_threshold=1.0, max_rounds=1),
    )
    first = result.rounds[1]
    assert first["pruned_channels"] > 0
    assert first["early_rejected"] is True
    assert first["epochs"] == 2 == spy.epochs[0]
    assert calls[:2] == [0.0, 0.01]
    logged = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
    assert logged[1]["early_rejected"] is True and logged[1]["epochs"] == 2


def test_without_early_rejection_every_round_trains_fully(trained_weights, tmp_path, monkeypatch):
    calls = scripted_metric(monkeypatch, [0.0] * 20)
    spy = FitSpy()
    result = run(
        trained_weights, tmp_path, epochs=6, rewind_epoch=2, callbacks=[spy],
        early_rejection=False,
        policy=AccuracyGuaranteed(max_accuracy_drop=0.01, initial_threshold=1.0, max_rounds=1),
    )
    assert calls == []
    assert spy.epochs == [4]
    assert result.rounds[1]["epochs"] == 4 and not result.rounds[1]["early_rejected"]


@pytest.mark.parametrize(
    "option, value, fix",
    [
        ("retrain", "fast", "'slim' trains the physically smaller model"),
        ("distillation", {"alpha": 2.0}, "1 is plain training"),
        ("distillation", {"tau": 2.0}, "expected keys among"),
        ("early_rejection", "yes", "Pass True to stop rounds"),
        ("final_epochs", -1, "Pass 0 to keep the best round"),
    ],
)
def test_bad_retraining_settings_are_refused_with_the_fix(tmp_path, option, value, fix):
    with pytest.raises(ConfigurationError, match=fix):
        RoundController(
            tiny_model(), ParamsTarget(reduction=0.5), TRAIN, VALIDATION,
            run_dir=tmp_path, epochs=4, **{option: value},
        )


def test_a_resumed_run_must_use_the_same_retraining_settings(trained_weights, tmp_path):
    run(trained_weights, tmp_path, retrain="slim")
    with pytest.raises(tf_asap.errors.RunDirectoryError, match="retrain"):
        run(trained_weights, tmp_path, retrain="masked")


def test_final_fine_tuning_changes_weights_not_masks(trained_weights, tmp_path):
    result = RoundController(
        trained_model(trained_weights), ParamsTarget(reduction=0.5, step=1.0, max_rounds=2),
        TRAIN, VALIDATION, run_dir=tmp_path, epochs=4, rewind_epoch=2, batch_size=BATCH,
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9), verbose=0,
        test_data=TEST, final_epochs=2,
    ).run()
    best, _ = load_state(tmp_path / "checkpoints" / f"round_{result.best_round:04d}.npz")
    final = result.model.weights
    saved = dict(enumerate(best.weights))
    changed = False
    for index, variable in enumerate(final):
        name, value = saved[index]
        if name.endswith("_mask"):
            np.testing.assert_array_equal(variable.numpy(), value)
        elif not np.allclose(variable.numpy(), value):
            changed = True
    assert changed
    tuning = json.loads((tmp_path / "run.json").read_text())["final_tuning"]
    assert tuning == result.final_tuning
    assert tuning["epochs"] == 2
    for key in ("validation_accuracy", "test_accuracy"):
        assert 0.0 <= tuning[f"{key}_before"] <= 1.0 and 0.0 <= tuning[f"{key}_after"] <= 1.0
    # The reported test metric is the fine-tuned model's.
    logs = result.model.evaluate(*TEST, verbose=0, return_dict=True)
    assert result.test["final"] == pytest.approx(logs["accuracy"], abs=1e-6)
    assert tuning["test_accuracy_after"] == pytest.approx(logs["accuracy"], abs=1e-6)
    report = (tmp_path / "report.md").read_text()
    assert "Final fine-tuning of the chosen round: 2 epoch(s)" in report
    assert "validation accuracy" in report.split("Final fine-tuning")[1].splitlines()[0]


def test_a_run_killed_in_final_fine_tuning_redoes_only_that_stage(
    trained_weights, tmp_path, monkeypatch
):
    original = Retraining.fine_tune

    def killed(self, epochs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Retraining, "fine_tune", killed)
    with pytest.raises(KeyboardInterrupt):
        run(trained_weights, tmp_path, final_epochs=1)
    rounds = (tmp_path / "rounds.jsonl").read_text()
    monkeypatch.setattr(Retraining, "fine_tune", original)
    spy = FitSpy()
    result = run(trained_weights, tmp_path, final_epochs=1, callbacks=[spy])
    assert spy.epochs == [1]  # the fine-tuning only: no round was run again
    assert (tmp_path / "rounds.jsonl").read_text() == rounds
    assert result.final_tuning["epochs"] == 1
    # Run again once finished: the tuned model is restored, nothing trains.
    again_spy = FitSpy()
    again = run(trained_weights, tmp_path, final_epochs=1, callbacks=[again_spy])
    assert again_spy.epochs == []
    for a, b in zip(again.model.get_weights(), result.model.get_weights()):
        np.testing.assert_array_equal(a, b)
