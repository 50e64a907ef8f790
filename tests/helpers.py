"""Test doubles shared by several test files."""

from tf_asap.policies import ParamsTarget


class UntrimmedParamsTarget(ParamsTarget):
    """A target whose rounds are not trimmed to the window, so a big step overshoots.

    Tests of rollback need an overshoot, which the real policy's
    `reduction_limit` now prevents.
    """

    @property
    def reduction_limit(self):
        return None
