"""Test doubles shared by several test files."""

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


class UntrimmedParamsTarget(ParamsTarget):
    """A target whose rounds are not trimmed to the window, so a big step overshoots.

    Tests of rollback need an overshoot, which the real policy's
    `reduction_limit` now prevents.
    """

    @property
    def reduction_limit(self):
        return None
