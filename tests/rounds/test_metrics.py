"""A model that is not a classifier is pruned with the accuracy-guaranteed policy on its own metric."""

import keras
import numpy as np
import pytest

from tf_asap.pruning.policies import AccuracyGuaranteed
from tf_asap.rounds.controller import RoundController
from tests.helpers import quadrant_data


def regression_data(count, seed):
    """8x8 images whose target is the bright quadrant's index as a number (0-3)."""
    x, labels = quadrant_data(count, seed)
    return x, labels.astype("float32")[:, None]


def regressor():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(1, name="value")(x)
    return keras.Model(inputs, outputs, name="regressor")


def test_a_regressor_is_pruned_under_a_bound_on_its_mean_absolute_error(tmp_path):
    keras.utils.set_random_seed(0)
    policy = AccuracyGuaranteed(max_metric_drop=0.25, metric="mae", mode="min", step=1.0, max_rounds=3)
    run = RoundController(
        regressor(), policy, regression_data(256, 0), regression_data(96, 1),
        run_dir=tmp_path, epochs=2, rewind_epoch=1, batch_size=64, loss="mse",
        optimizer=keras.optimizers.Adam(0.01), verbose=0,
    )
    result = run.run()
    baseline, best = result.rounds[0], result.best
    # The policy read MAE (a loss, lower is better): every accepted round's
    # error rose by at most the bound, and the values are not fractions.
    assert best["metric"] == "mae"
    assert best["validation_mae"] <= baseline["validation_mae"] + 0.25 + 1e-6
    accepted = [r for r in result.rounds[1:] if r["acceptable"]]
    rejected = [r for r in result.rounds[1:] if not r["acceptable"]]
    assert all(r["validation_mae"] <= baseline["validation_mae"] + 0.25 + 1e-6 for r in accepted)
    assert all(r["validation_mae"] > baseline["validation_mae"] + 0.25 for r in rejected)
    assert any(r["params"] < baseline["params"] for r in result.rounds[1:])
