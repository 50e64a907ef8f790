"""`ParamsTarget` and `FlopsTarget`: the most accurate model with a given size reduction (Algorithms 4, 5)."""

from __future__ import annotations

from typing import ClassVar

from tf_asap import defaults
from tf_asap.checks import check_fraction
from tf_asap.pruning.policies.base import Policy
from tf_asap.pruning.policies.results import ROUNDING_SLACK, RoundResult, percent

__all__ = ["FlopsTarget", "ParamsTarget", "ReductionTarget"]


class ReductionTarget(Policy, register=False):
    """Shared search of the memory- and FLOPs-constrained policies (Algorithms 4, 5).

    The paper raises `T` while the reduction is below the target and rolls
    back when it overshoots, stopping only when the size converges. A user
    who needs the model to fit wants the run to end as soon as it does, so a
    round whose reduction `1 - remaining / baseline` lies in `[reduction,
    reduction + tolerance]` meets the target and ends the run at once; below
    the target a round is acceptable and `T` keeps rising; above `reduction +
    tolerance` it overshoots and the policy retries a smaller `T`. The metric
    does not steer the search, so it works with any compiled metric or loss;
    it only picks the best of the rounds meeting the target.

    Args:
        reduction: Fraction of `objective` to remove, in `(0, 1)`.
        tolerance: How far beyond `reduction` still meets the target, in `[0, 1)`.
        **options: The keyword arguments of `Policy`.
    """

    objective: ClassVar[str]

    def __init__(self, reduction, tolerance, **options):
        self.reduction = check_fraction(
            "reduction", reduction, allow_zero=False, allow_one=False,
            fix="" if isinstance(reduction, (int, float)) and reduction > 1
            else f"Pass the fraction of {self.objective} to remove.",
        )
        self.tolerance = check_fraction("tolerance", tolerance, allow_one=False)
        super().__init__(**options)

    def to_config(self):
        return {"reduction": self.reduction, "tolerance": self.tolerance, **super().to_config()}

    @property
    def reduction_limit(self) -> float:
        """`reduction + tolerance` (the far edge of the target window), or a
        trimmed retry's smaller limit."""
        window = min(self.reduction + self.tolerance, 1.0)
        trimmed = self._search.limit
        return window if trimmed is None else min(window, trimmed)

    def achieved_reduction(self, result: RoundResult) -> float:
        """Returns `1 - remaining / baseline` of the target metric for `result`."""
        return 1.0 - self._size(result) / self._size(self._require_baseline())

    def acceptable(self, result: RoundResult) -> bool:
        """Returns whether `result` does not overshoot `reduction + tolerance`."""
        return self.achieved_reduction(result) <= self.reduction + self.tolerance + ROUNDING_SLACK

    def meets_target(self, result: RoundResult) -> bool:
        """Returns whether the reduction of `result` is within `[reduction, reduction + tolerance]`."""
        return self.acceptable(result) and self.achieved_reduction(result) >= self.reduction - ROUNDING_SLACK

    def _verdict(self, result):
        achieved = percent(self.achieved_reduction(result))
        window = f"[{percent(self.reduction)}, {percent(self.reduction + self.tolerance)}]"
        if self.meets_target(result):
            return f"{self.objective} reduction {achieved} within {window}"
        if self.acceptable(result):
            return f"{self.objective} reduction {achieved} < target {percent(self.reduction)}"
        return f"{self.objective} reduction {achieved} > {window} (overshoot)"

    def _best(self):
        accepted = self._acceptable_results()
        meeting = [r for r in accepted if self.meets_target(r)]
        if meeting:
            best = min(meeting, key=lambda r: (self._rank(r), self._size(r), r.round))
            prefix = f"best round {best.round}"
        else:
            # Closest to the target from below: the smallest acceptable size.
            best = min(accepted, key=lambda r: (self._size(r), self._rank(r), r.round))
            prefix = f"target not met: best round {best.round}"
        return best.round, (
            f"{prefix} reduces {self.objective} by {percent(self.achieved_reduction(best))} "
            f"(target {percent(self.reduction)}), {self.metric} {self.format_score(best.score)}"
        )


class ParamsTarget(ReductionTarget):
    """The most accurate model with a given parameter reduction (Algorithm 4).

    Memory-constrained pruning, for a model that must fit a memory budget.
    A round whose parameter reduction `1 - params / baseline.params` lies in
    `[reduction, reduction + tolerance]` meets the target and ends the run;
    below it `T` keeps rising; above it the policy rolls back and retries with
    a halved step (see `Policy`). Accuracy does not steer the search, only
    the choice of result: the most accurate round meeting the target, else
    the acceptable round closest to it, with the stop reason saying that the
    target was not met.

    The tolerance window makes the target reachable: a step of `T` moves the
    reduction in jumps of whole filters, and a window of 3 points is usually
    hit after one or two halvings; a tighter window costs more rounds. The
    default `step=0.2` (relative units, `T ≈ 1` is a typical filter's
    attention) is twice the accuracy policy's, since accuracy is not at stake
    and a 50-80% reduction typically needs `T` beyond 1: about 5-10 rounds
    reach the target and an overshoot costs one round each.

    Args:
        reduction: Fraction of the baseline's parameters to remove, in
            `(0, 1)`. Defaults to `0.7`.
        tolerance: How far beyond `reduction` still meets the target, in
            `[0, 1)`. Defaults to `0.03`.
        step: Initial increment λ of `T` per acceptable round, `> 0`.
            Defaults to `0.2`.
        initial_threshold: `T` of round 1, `>= 0`. Defaults to `0.0`.
        patience: Consecutive acceptable rounds of unchanged size that end
            the run, `>= 1`. Defaults to `3`.
        min_relative_change: Largest relative size change, in `[0, 1)`, that
            counts as unchanged. Defaults to `0.001`.
        max_rollbacks: Rollbacks to one round before going further back
            (the bisecting search stops instead), `>= 0`. Defaults to `3`.
        max_rounds: The last pruning round, `>= 1`. Defaults to `50`.
        step_growth: With `schedule="paper"`, after an acceptable round that
            changed the size, λ is multiplied by this, up to `step`. `1`
            keeps the halved λ for the rest of the run, as Algorithm 2 does.
            Defaults to `1`.

        metric: The metric that picks the most accurate round meeting the
            target, as `model.evaluate` names it. Defaults to `"accuracy"`.
        mode: `"max"` if larger values of `metric` are better, `"min"` if
            smaller ones are. Defaults to `"max"`.
        schedule: `"paper"` (Algorithm 2's halving λ) or `"bisect"` (grow,
            then bisect the bracket; see `Policy`). Defaults to `"paper"`.
        threshold_tolerance: With `schedule="bisect"`, the bracket width at
            which the search stops, `> 0`. Defaults to `0.01`.
        size_tolerance: With `schedule="bisect"`, the size bracket above
            which trimmed retries follow a closed `T` bracket, in `(0, 1)`;
            `None` bisects `T` only. Defaults to `0.02`.

    Raises:
        ConfigurationError: If an argument is outside its range.

    Example:

    >>> policy = ParamsTarget(reduction=0.5)
    >>> _ = policy.start(RoundResult(0, 0.0, 0.9, 1000, 50_000))
    >>> policy.observe(RoundResult(1, 0.0, 0.9, 480, 30_000)).reason
    'params reduction 52.00% within [50.00%, 53.00%]: target met; best round 1 reduces params by 52.00% (target 50.00%), accuracy 90.00%'
    """

    objective = "params"

    def __init__(self, reduction=0.7, tolerance=defaults.TARGET_TOLERANCE, step=0.2,
                 initial_threshold=0.0, patience=defaults.PATIENCE, min_relative_change=0.001,
                 max_rollbacks=3, max_rounds=defaults.MAX_ROUNDS, step_growth=defaults.STEP_GROWTH,
                 metric=defaults.METRIC, mode=defaults.MODE, schedule=defaults.SCHEDULE,
                 threshold_tolerance=0.01, size_tolerance=defaults.SIZE_TOLERANCE):
        super().__init__(
            reduction, tolerance, step=step, initial_threshold=initial_threshold, patience=patience,
            min_relative_change=min_relative_change, max_rollbacks=max_rollbacks, max_rounds=max_rounds,
            step_growth=step_growth, metric=metric, mode=mode, schedule=schedule,
            threshold_tolerance=threshold_tolerance, size_tolerance=size_tolerance,
        )


class FlopsTarget(ReductionTarget):
    """The most accurate model with a given FLOPs reduction (Algorithm 5).

    Latency-constrained pruning. It works as `ParamsTarget` with FLOPs in
    place of parameters: the reduction is `1 - flops / baseline.flops`, and
    the convergence rule watches FLOPs. The paper's reference code compared
    the remaining FLOPs with the remaining *parameters*; here FLOPs are
    compared with FLOPs only.

    The defaults follow `ParamsTarget`: a window of 3 points above the
    target, and `step=0.2` in relative units (`T ≈ 1` is a typical filter's
    attention), which reaches a 50% FLOPs reduction in about 5-10 rounds.

    Args:
        reduction: Fraction of the baseline's FLOPs to remove, in `(0, 1)`.
            Defaults to `0.5`.
        tolerance: How far beyond `reduction` still meets the target, in
            `[0, 1)`. Defaults to `0.03`.
        step: Initial increment λ of `T` per acceptable round, `> 0`.
            Defaults to `0.2`.
        initial_threshold: `T` of round 1, `>= 0`. Defaults to `0.0`.
        patience: Consecutive acceptable rounds of unchanged FLOPs that end
            the run, `>= 1`. Defaults to `3`.
        min_relative_change: Largest relative FLOPs change, in `[0, 1)`, that
            counts as unchanged. Defaults to `0.001`.
        max_rollbacks: Rollbacks to one round before going further back
            (the bisecting search stops instead), `>= 0`. Defaults to `3`.
        max_rounds: The last pruning round, `>= 1`. Defaults to `50`.
        step_growth: With `schedule="paper"`, after an acceptable round that
            changed the size, λ is multiplied by this, up to `step`. `1`
            keeps the halved λ for the rest of the run, as Algorithm 2 does.
            Defaults to `1`.

        metric: The metric that picks the most accurate round meeting the
            target, as `model.evaluate` names it. Defaults to `"accuracy"`.
        mode: `"max"` if larger values of `metric` are better, `"min"` if
            smaller ones are. Defaults to `"max"`.
        schedule: `"paper"` (Algorithm 2's halving λ) or `"bisect"` (grow,
            then bisect the bracket; see `Policy`). Defaults to `"paper"`.
        threshold_tolerance: With `schedule="bisect"`, the bracket width at
            which the search stops, `> 0`. Defaults to `0.01`.
        size_tolerance: With `schedule="bisect"`, the size bracket above
            which trimmed retries follow a closed `T` bracket, in `(0, 1)`;
            `None` bisects `T` only. Defaults to `0.02`.

    Raises:
        ConfigurationError: If an argument is outside its range.

    Example:

    >>> policy = FlopsTarget(reduction=0.5)
    >>> _ = policy.start(RoundResult(0, 0.0, 0.9, 1000, 50_000))
    >>> policy.observe(RoundResult(1, 0.0, 0.9, 900, 40_000)).threshold
    0.2
    """

    objective = "flops"

    def __init__(self, reduction=0.5, tolerance=defaults.TARGET_TOLERANCE, step=0.2,
                 initial_threshold=0.0, patience=defaults.PATIENCE, min_relative_change=0.001,
                 max_rollbacks=3, max_rounds=defaults.MAX_ROUNDS, step_growth=defaults.STEP_GROWTH,
                 metric=defaults.METRIC, mode=defaults.MODE, schedule=defaults.SCHEDULE,
                 threshold_tolerance=0.01, size_tolerance=defaults.SIZE_TOLERANCE):
        super().__init__(
            reduction, tolerance, step=step, initial_threshold=initial_threshold, patience=patience,
            min_relative_change=min_relative_change, max_rollbacks=max_rollbacks, max_rounds=max_rounds,
            step_growth=step_growth, metric=metric, mode=mode, schedule=schedule,
            threshold_tolerance=threshold_tolerance, size_tolerance=size_tolerance,
        )
