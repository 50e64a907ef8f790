"""Tests of tf_asap.rounds.threshold_scan: the first threshold of the bisecting search."""

import json

import keras
import numpy as np
import pytest

import tf_asap
from tf_asap.pruning.policies import AccuracyGuaranteed, ParamsTarget
from tf_asap.pruning.importance import get_criterion
from tf_asap.pruning.thresholds import attention_reference
from tf_asap.rounds import threshold_scan as scan_module
from tf_asap.rounds.controller import RoundController
from tf_asap.rounds.threshold_scan import SCAN_DROP_FACTOR, scan_thresholds
from tf_asap.rounds.training import labelled_batches
from tests.helpers import quadrant_data

BATCH = 64
TRAIN = quadrant_data(256, 0)
VALIDATION = quadrant_data(128, 1)


def trained_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="classifier")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(*TRAIN, epochs=3, batch_size=BATCH, verbose=0)
    return model


def bisect_policy(**options):
    return AccuracyGuaranteed(
        max_accuracy_drop=0.05, schedule="bisect", step=0.25, max_rounds=1, **options
    )


def controller(run_dir, policy, **options):
    return RoundController(
        trained_model(), policy, TRAIN, VALIDATION, run_dir=run_dir, epochs=4,
        rewind_epoch=3, batch_size=BATCH, optimizer=keras.optimizers.SGD(0.05), verbose=0,
        **options,
    )


def test_scan_starts_at_the_largest_threshold_within_three_times_the_bound(tmp_path):
    result = controller(tmp_path, bisect_policy(), scan_samples=64).run()
    scan = json.loads((tmp_path / "run.json").read_text())["threshold_scan"]
    assert scan["samples"] == 64
    assert scan["limit"] == pytest.approx(SCAN_DROP_FACTOR * 0.05)
    thresholds = [c["threshold"] for c in scan["candidates"]]
    assert thresholds == pytest.approx([0.25 * 2**k for k in range(len(thresholds))])
    passing = [c["threshold"] for c in scan["candidates"] if c["drop"] <= scan["limit"]]
    # The scan stops at the first candidate beyond the limit.
    assert all(c["drop"] <= scan["limit"] for c in scan["candidates"][:-1])
    assert scan["chosen"] == (max(passing) if passing else None)
    # Masks only grow with T: so does the share of params the candidates remove.
    reductions = [c["params_reduction"] for c in scan["candidates"]]
    assert reductions == sorted(reductions) and reductions[-1] > 0
    expected = scan["chosen"] if scan["chosen"] is not None else 0.0
    assert result.rounds[1]["threshold"] == pytest.approx(expected)


def test_scan_leaves_the_models_masks_as_they_were():
    model = tf_asap.make_prunable(trained_model())
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = tf_asap.get_masks(model)
    scores = get_criterion("attention").score(model, TRAIN[0][:128])
    policy = bisect_policy()
    scan = scan_thresholds(
        model, policy, scores, attention_reference(scores),
        labelled_batches(VALIDATION, model, 32), objective="params", max_fraction=0.5, samples=96,
    )
    assert len(scan["candidates"]) >= 1
    for name, keep in tf_asap.get_masks(model).items():
        np.testing.assert_array_equal(keep, before[name])


def test_a_scan_in_the_manifest_is_not_redone_on_resume(tmp_path, monkeypatch):
    def interrupted(self, baseline, initial_threshold=None):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(AccuracyGuaranteed, "start", interrupted)
        with pytest.raises(KeyboardInterrupt):
            controller(tmp_path, bisect_policy(), scan_samples=64).run()
    saved = json.loads((tmp_path / "run.json").read_text())["threshold_scan"]
    assert saved is not None

    def scan_again(*args, **kwargs):
        raise AssertionError("the scan ran again")

    monkeypatch.setattr(scan_module, "scan_thresholds", scan_again)
    result = controller(tmp_path, bisect_policy(), scan_samples=64).run()
    expected = saved["chosen"] if saved["chosen"] is not None else 0.0
    assert result.rounds[1]["threshold"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "policy, samples",
    [
        (lambda: bisect_policy(initial_threshold=0.1), 0),  # disabled
        (lambda: AccuracyGuaranteed(0.05, step=0.25, initial_threshold=0.1, max_rounds=1), 64),
        (lambda: ParamsTarget(0.5, step=0.25, initial_threshold=0.1, max_rounds=1), 64),
    ],
)
def test_no_scan_without_bisect_and_a_metric_bound_or_with_zero_samples(tmp_path, policy, samples):
    result = controller(tmp_path, policy(), scan_samples=samples).run()
    assert json.loads((tmp_path / "run.json").read_text())["threshold_scan"] is None
    assert result.rounds[1]["threshold"] == pytest.approx(0.1)


def test_negative_scan_samples_are_refused(tmp_path):
    with pytest.raises(tf_asap.errors.ConfigurationError, match="0 disables the scan"):
        controller(tmp_path, bisect_policy(), scan_samples=-1)
