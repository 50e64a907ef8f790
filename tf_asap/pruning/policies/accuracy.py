"""`AccuracyGuaranteed`: the smallest model whose metric drop stays within a bound (Algorithm 2)."""

from __future__ import annotations

import math

from tf_asap import defaults
from tf_asap.checks import check_choice, check_number
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies.base import Policy
from tf_asap.pruning.policies.results import ROUNDING_SLACK, RoundResult, is_fraction_metric, percent

__all__ = ["AccuracyGuaranteed"]

OBJECTIVES = ("params", "flops")
DEFAULT_MAX_DROP = 0.01


class AccuracyGuaranteed(Policy):
    """The smallest model whose accuracy (or other metric) drop stays within a bound (Algorithm 2).

    A round is acceptable when its metric is at most `max_accuracy_drop`
    worse than the baseline's: `baseline.score - result.score` for
    `mode="max"` (accuracy, AUC, IoU), `result.score - baseline.score` for
    `mode="min"` (a loss, MAE, MSE). The threshold grows while rounds are
    acceptable, retries smaller ones after a failure, and the run stops when
    the size has converged (see `Policy` and its `schedule`). The result is
    the acceptable round with the smallest `minimize` metric, ties going to
    the better score.

    The default `step=0.1` is in relative units (`T ≈ 1` is a typical filter's
    attention): about ten rounds reach typical filters, so a run finds its
    limit within roughly 10-25 rounds, leaving room under `max_rounds` for the
    rollbacks near the bound, where every failure costs a round.

    Args:
        max_accuracy_drop: Largest acceptable drop of the metric from the
            baseline, `>= 0`, in the metric's units: for accuracy a fraction
            in `[0, 1)` (`0.01` is one percentage point); for MAE with
            `mode="min"` an absolute increase. Defaults to `0.01`.
        minimize: `"params"` or `"flops"`: the size to minimise, watched by
            the convergence rule and used to pick the result. Pass the same
            objective to the layer-aware thresholds. Defaults to `"params"`.
        step: Initial increment λ of `T` per acceptable round, `> 0`.
            Defaults to `0.1`.
        initial_threshold: `T` of round 1, `>= 0`; `0` prunes only dead
            filters. Defaults to `0.0`.
        patience: Consecutive acceptable rounds of unchanged size that end the
            run, `>= 1`. Defaults to `3`.
        min_relative_change: Largest relative size change, in `[0, 1)`, that
            counts as unchanged (the paper's 0.1%). Defaults to `0.001`.
        max_rollbacks: Rollbacks to one round before going further back
            (the bisecting search stops instead), `>= 0`. Defaults to `3`.
        max_rounds: The last pruning round, `>= 1`. Defaults to `50`.
        step_growth: With `schedule="paper"`, after an acceptable round that
            changed the size, λ is multiplied by this, up to `step`. `1`
            keeps the halved λ for the rest of the run, as Algorithm 2 does.
            Defaults to `1`.
        metric: The metric to watch, as `model.evaluate` names it.
            Defaults to `"accuracy"`.
        mode: `"max"` if larger values of `metric` are better, `"min"` if
            smaller ones are. Defaults to `"max"`.
        schedule: `"paper"` (Algorithm 2's halving λ) or `"bisect"` (grow,
            then bisect the bracket; see `Policy`). Defaults to `"paper"`.
        threshold_tolerance: With `schedule="bisect"`, the bracket width at
            which the search stops, `> 0`. Defaults to `0.01`.
        size_tolerance: With `schedule="bisect"`, the size bracket above
            which trimmed retries follow a closed `T` bracket, in `(0, 1)`;
            `None` bisects `T` only. Defaults to `0.02`.
        max_metric_drop: Another name for `max_accuracy_drop`, for metrics
            that are not accuracy; give one of the two. Defaults to `None`.

    Raises:
        ConfigurationError: If an argument is outside its range.

    Example:

    >>> policy = AccuracyGuaranteed(max_accuracy_drop=0.01)
    >>> policy.start(RoundResult(0, 0.0, 0.92, 100_000, 9_000_000)).threshold
    0.0
    >>> policy.observe(RoundResult(1, 0.0, 0.918, 90_000, 8_000_000)).reason
    'accuracy drop 0.20% <= 1.00%: raise T to 0.1 (step 0.1)'

    A regression model whose mean absolute error may grow by at most 0.05:

    >>> policy = AccuracyGuaranteed(max_metric_drop=0.05, metric="mae", mode="min")
    >>> _ = policy.start(RoundResult(0, 0.0, params=5000, flops=90_000, score=0.30))
    >>> policy.observe(RoundResult(1, 0.0, params=4000, flops=70_000, score=0.33)).reason
    'mae rise 0.03 <= 0.05: raise T to 0.1 (step 0.1)'
    """

    def __init__(self, max_accuracy_drop=None, minimize="params", step=0.1, initial_threshold=0.0,
                 patience=defaults.PATIENCE, min_relative_change=0.001, max_rollbacks=3,
                 max_rounds=defaults.MAX_ROUNDS, step_growth=defaults.STEP_GROWTH,
                 metric=defaults.METRIC, mode=defaults.MODE, schedule=defaults.SCHEDULE,
                 threshold_tolerance=0.01, size_tolerance=defaults.SIZE_TOLERANCE, max_metric_drop=None):
        if max_accuracy_drop is not None and max_metric_drop is not None:
            raise ConfigurationError(
                f"`max_accuracy_drop`={max_accuracy_drop!r} and `max_metric_drop`="
                f"{max_metric_drop!r} name the same bound; pass only one of them."
            )
        bound = max_metric_drop if max_accuracy_drop is None else max_accuracy_drop
        name = "max_accuracy_drop" if max_metric_drop is None else "max_metric_drop"
        bound = DEFAULT_MAX_DROP if bound is None else bound
        fraction = isinstance(metric, str) and is_fraction_metric(metric)
        self.max_accuracy_drop = check_number(
            name, bound, 0.0, 1.0 if fraction else math.inf, high_open=fraction,
            fix="A fraction: 0.01 is one percentage point." if fraction else "",
        )
        self.objective = check_choice("minimize", minimize, OBJECTIVES)
        super().__init__(
            step=step, initial_threshold=initial_threshold, patience=patience,
            min_relative_change=min_relative_change, max_rollbacks=max_rollbacks, max_rounds=max_rounds,
            step_growth=step_growth, metric=metric, mode=mode, schedule=schedule,
            threshold_tolerance=threshold_tolerance, size_tolerance=size_tolerance,
        )

    @property
    def max_metric_drop(self) -> float:
        """`max_accuracy_drop`, under the name that fits any metric."""
        return self.max_accuracy_drop

    def to_config(self):
        return {"max_accuracy_drop": self.max_accuracy_drop, "minimize": self.objective, **super().to_config()}

    def metric_drop(self, result: RoundResult) -> float:
        """How much worse `result` is than the baseline (negative when better)."""
        return self.improvement(result.score, self._require_baseline().score)

    def accuracy_drop(self, result: RoundResult) -> float:
        """`metric_drop(result)`: `baseline.accuracy - result.accuracy` for accuracy."""
        return self.metric_drop(result)

    def acceptable(self, result: RoundResult) -> bool:
        """Returns whether the metric drop of `result` is within `max_accuracy_drop`."""
        return self.metric_drop(result) <= self.max_accuracy_drop + ROUNDING_SLACK

    def score_bound(self) -> float:
        """The worst acceptable score: the baseline's, `max_accuracy_drop` worse."""
        baseline = self._require_baseline().score
        return baseline - self.max_accuracy_drop if self.mode == "max" else baseline + self.max_accuracy_drop

    def _drop_phrase(self, drop):
        word = "drop" if self.mode == "max" else "rise"
        return f"{self.metric} {word} {self.format_score(drop)}"

    def _verdict(self, result):
        relation = "<=" if self.acceptable(result) else ">"
        return f"{self._drop_phrase(self.metric_drop(result))} {relation} {self.format_score(self.max_accuracy_drop)}"

    def _best(self):
        best = min(self._acceptable_results(), key=lambda r: (self._size(r), self._rank(r), r.round))
        remaining = self._size(best) / self._size(self._history[0])
        return best.round, (
            f"best round {best.round}: {self.objective} {percent(remaining)} of "
            f"baseline, {self._drop_phrase(self.metric_drop(best))}"
        )
