"""Test doubles shared by several test files."""

import keras
import numpy as np

from tf_asap.pruning.policies import ParamsTarget


def quadrant_data(count, seed):
    """8x8 images whose class (0-3) is the bright quadrant: learnt in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, count)
    x = rng.normal(0.0, 0.5, (count, 8, 8, 1)).astype("float32")
    for index, label in enumerate(labels):
        row, column = divmod(int(label), 2)
        x[index, 4 * row : 4 * row + 4, 4 * column : 4 * column + 4] += 1.5
    return x, labels.astype("int32")


def quadrant_cnn():
    """Two small convolutions and a classifier for `quadrant_data`'s 8x8 images."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="tiny")


class UntrimmedParamsTarget(ParamsTarget):
    """A target whose rounds are not trimmed to the window, so a big step overshoots.

    Tests of rollback need an overshoot, which the real policy's
    `reduction_limit` now prevents.
    """

    @property
    def reduction_limit(self):
        return None
