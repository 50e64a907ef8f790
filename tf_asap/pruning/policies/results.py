"""What a round reports to a policy (`RoundResult`) and what a policy answers (`Decision`).

Also the few numeric and wording conventions every policy module shares, so
that each is spelt once.
"""

from __future__ import annotations

import dataclasses
import math

from tf_asap.checks import check_choice, check_fraction, check_int, check_number
from tf_asap.errors import ConfigurationError

__all__ = ["Decision", "RoundResult"]

ACTIONS = ("prune", "rollback", "stop")
# A drop of exactly the allowed 1% computes as 0.010000000000000009 in floating
# point; this slack keeps such a round acceptable without loosening any bound
# a user could notice.
ROUNDING_SLACK = 1e-9
# The controller may carry T through float32 (a Keras variable, a log); a
# reported T this close to the requested one is the same T.
THRESHOLD_RTOL = 1e-6
# The directions of a metric: larger is better, or smaller is.
MODES = ("max", "min")
# Metrics whose values are fractions, printed in percent (`accuracy`,
# `sparse_categorical_accuracy`, `auc`, `mean_io_u`...).
_FRACTION_WORDS = ("accuracy", "auc", "io_u", "iou", "precision", "recall")


def is_fraction_metric(metric):
    """Whether `metric`'s values are fractions in `[0, 1]` (shown in percent)."""
    return any(word in metric.lower() for word in _FRACTION_WORDS)


def percent(fraction):
    """`0.0123` -> `'1.23%'`."""
    return f"{100.0 * fraction:.2f}%"


def times(count):
    """`1` -> `'1 time'`, `3` -> `'3 times'`."""
    return f"{count} time" if count == 1 else f"{count} times"


def relative_change(before, after):
    """`|after - before| / before`; infinite when only `before` is 0."""
    if before == 0:
        return 0.0 if after == 0 else math.inf
    return abs(after - before) / before


@dataclasses.dataclass(frozen=True, init=False)
class RoundResult:
    """What one pruning round produced, as reported to a policy.

    The quality of a round is one number, `score`: the value of the metric
    the policy watches (validation accuracy by default; a loss, MAE, AUC or
    mean IoU for other models, see the policies' `metric` and `mode`). It may
    be given as `accuracy=` (checked to be a fraction in `[0, 1]`, as the
    round controller reports it) or as `score=` (any finite number), and
    reads back under both names.

    Values are validated and normalised to plain Python numbers, so that a
    policy's state stays JSON-serialisable and a resumed policy computes
    exactly what the original did.

    Args:
        round: The round number: `0` is the unpruned baseline, `1, 2, ...`
            are pruning rounds, numbered in the order they ran.
        threshold: The global threshold `T` the round pruned with (`0.0` for
            the baseline), in the relative units described in
            `tf_asap.pruning.policies`.
        accuracy: Validation accuracy after retraining, in `[0, 1]`. Give
            this or `score`.
        params: Remaining (effective, unmasked) parameters.
        flops: Remaining (effective, unmasked) FLOPs.
        score: The watched metric's value after retraining, any finite
            number (keyword only). Give this or `accuracy`.

    Raises:
        ConfigurationError: If a value is outside its range, for example an
            accuracy given in percent, or if neither or two different
            values of `accuracy` and `score` are given.

    Example:

    >>> RoundResult(1, 0.1, 0.92, 9000, 800_000).score
    0.92
    >>> RoundResult(1, 0.1, params=9000, flops=800_000, score=0.35).accuracy
    0.35
    """

    round: int
    threshold: float
    score: float
    params: int
    flops: int

    def __init__(self, round, threshold, accuracy=None, params=None, flops=None, *, score=None):
        if accuracy is None and score is None:
            raise ConfigurationError(
                f"Round {round!r} reports no quality: pass `accuracy=` (a fraction "
                "in [0, 1]) or `score=` (the value of the policy's metric)."
            )
        if accuracy is not None:
            accuracy = check_fraction("accuracy", accuracy)
        if score is not None:
            score = check_number("score", score)
        if accuracy is not None and score is not None and accuracy != score:
            raise ConfigurationError(
                f"Round {round!r} reports accuracy={accuracy!r} and score={score!r}; "
                "they name the same value: pass only one of them."
            )
        values = {
            "round": check_int("round", round, minimum=0),
            "threshold": check_number("threshold", threshold, 0.0),
            "score": score if accuracy is None else accuracy,
            "params": check_int("params", params, minimum=0),
            "flops": check_int("flops", flops, minimum=0),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def accuracy(self) -> float:
        """`score`, under the name the round controller and older code use."""
        return self.score


@dataclasses.dataclass(frozen=True)
class Decision:
    """What a policy asks the controller to do next.

    Args:
        action: `"prune"`: prune the next round with `threshold` on top of
            the current model. `"rollback"`: first restore the saved state
            of round `rollback_to` (weights, masks, optimizer), then prune
            the next round with `threshold`. `"stop"`: the run is over and
            `best_round` is its result.
        threshold: `T` for the next round; `None` on stop.
        rollback_to: The round whose saved state must be restored first;
            only set for `"rollback"`.
        best_round: The round whose model is the result; only set for
            `"stop"`.
        reason: One human-readable line saying why, for logs and progress.
    """

    action: str
    threshold: float | None
    rollback_to: int | None
    best_round: int | None
    reason: str

    def __post_init__(self):
        check_choice("action", self.action, ACTIONS)


def prune(threshold, reason):
    """A `"prune"` decision."""
    return Decision("prune", threshold, None, None, reason)


def rollback(round_number, threshold, reason):
    """A `"rollback"` decision: restore `round_number`, then prune with `threshold`."""
    return Decision("rollback", threshold, round_number, None, reason)


def stop(reason):
    """A `"stop"` decision without its best round; `Policy` fills that in."""
    return Decision("stop", None, None, None, reason)
