"""A faster threshold search: grow `T` geometrically, then bisect a bracket.

The paper's search (`PaperSearch`) raises `T` by a fixed λ and, after a
failure, halves λ for the rest of the run: near the limit every further
round moves `T` by less, and each costs a retraining. `BisectSearch` spends
the rounds differently:

1. **Grow.** From `initial_threshold` (which the round controller may size
   from a cheap sensitivity scan), `T` rises by λ after every acceptable
   round and λ doubles each time, so the first failure comes after a
   logarithmic number of rounds even from a poor start.
2. **Bracket.** A failure at `T_fail` from round `k` marks `T_fail` as the
   *ceiling*: the smallest `T` known to fail from `k`'s model. The search
   rolls back to `k` and retries halfway between `k`'s own `T` (the floor;
   `0` for the baseline) and the ceiling.
3. **Bisect.** A passing retry becomes the new floor (and the model the
   next round prunes), a failing one the new ceiling; the next `T` is the
   midpoint. Later rounds prune on top of a smaller model, for which the
   inherited ceiling still prunes at least as much, so it stays a failing
   bound.
4. **Stop** when the bracket is narrower than `threshold_tolerance`, when a
   round inside the bracket changed the size by at most
   `min_relative_change` (the paper's 0.1% rule, without waiting for
   `patience` rounds: the bracket no longer pays), after `max_rollbacks`
   failures from the same round, or by the paper's convergence rule while
   still growing. A failure that pruned the same model to the same size as
   an earlier failure from it (a threshold cliff, reported by the controller
   without retraining) lowers the ceiling but does not count against
   `max_rollbacks`: it cost no epochs, and the cliff's edge is below it.

A failed round that pruned nothing is retraining noise, as in the paper's
search: its parent is kept and `T` moves on (by λ, or to the midpoint).
"""

from __future__ import annotations

from tf_asap.pruning.policies.results import ROUNDING_SLACK, percent, prune, rollback, stop, times
from tf_asap.pruning.policies.search import LineageEntry, PaperSearch

__all__ = ["BisectSearch"]


class BisectSearch(PaperSearch):
    """Geometric growth of `T` until a failure, then bisection (see the module docstring).

    Args:
        threshold_tolerance: The bracket width `T_fail - T_pass` at which
            the search stops, `> 0`.
        **options: The arguments of `PaperSearch`; `step_growth` is not used
            (λ doubles while growing).
    """

    name = "bisect"

    def __init__(self, *, threshold_tolerance, **options):
        super().__init__(**options)
        self.threshold_tolerance = threshold_tolerance

    def begin(self):
        # The baseline is the floor of a bracket that fails at round 1: a
        # retry from it goes halfway between 0 and the failing T.
        self.lineage = [LineageEntry(0, 0.0, self.step, 0, False)]
        return self.initial_threshold

    def _narrow(self, floor, ceiling):
        return ceiling - floor <= self.threshold_tolerance + ROUNDING_SLACK

    def _bracket_closed(self, verdict, floor, ceiling):
        return stop(
            f"{verdict}; the bracket T in [{floor:.6g}, {ceiling:.6g}] is within "
            f"threshold_tolerance={self.threshold_tolerance:.6g}: converged"
        )

    def accepted(self, round_number, threshold, moved, verdict):
        ceiling = self.parent.ceiling
        entry = self._extend(round_number, threshold, moved)
        if ceiling is None:
            if entry.streak >= self.patience:
                return self._converged(entry.streak)
            next_threshold = threshold + self.step
            decision = prune(next_threshold, f"{verdict}: raise T to {next_threshold:.6g} (step {self.step:.6g})")
            self.step *= 2.0
            return decision
        if not moved:
            return stop(
                f"{verdict}; {self.objective} changed by at most "
                f"{percent(self.min_relative_change)} inside the bracket: converged"
            )
        if self._narrow(threshold, ceiling):
            return self._bracket_closed(verdict, threshold, ceiling)
        next_threshold = (threshold + ceiling) / 2.0
        return prune(
            next_threshold, f"{verdict}: T={next_threshold:.6g}, halfway to the failing T={ceiling:.6g}"
        )

    def noise(self, threshold, verdict):
        ceiling = self.parent.ceiling
        if ceiling is None:
            return super().noise(threshold, verdict)
        if self._narrow(threshold, ceiling):
            return self._bracket_closed(verdict, threshold, ceiling)
        next_threshold = (threshold + ceiling) / 2.0
        return rollback(
            self.parent.round,
            next_threshold,
            f"{verdict}, but nothing was pruned (retraining noise): keep round "
            f"{self.parent.round}, T={next_threshold:.6g}, halfway to the failing T={ceiling:.6g}",
        )

    def rejected(self, round_number, threshold, verdict, model_of):
        k = self.parent
        # A failure that pruned k's model to the size of an earlier failure
        # from k repeats it (a threshold cliff: under the per-round cap a
        # smaller T often picks the same filters). The controller reports it
        # without retraining, so it lowers the ceiling without using up a
        # retry; the bracket tolerance still bounds such rounds.
        repeat = any(model_of(earlier) == model_of(round_number) for earlier in k.failed_rounds)
        k.failed_rounds.append(round_number)
        k.ceiling = threshold if k.ceiling is None else min(k.ceiling, threshold)
        if self.max_rollbacks == 0:
            return stop(f"{verdict}; max_rollbacks=0 allows no retry")
        if k.rollbacks >= self.max_rollbacks and not repeat:
            self.exhausted.append(k.round)
            return stop(f"{verdict}; round {k.round} was already retried {times(self.max_rollbacks)}")
        if self._narrow(k.threshold, k.ceiling):
            return self._bracket_closed(verdict, k.threshold, k.ceiling)
        k.rollbacks += 0 if repeat else 1
        retry = (k.threshold + k.ceiling) / 2.0
        return rollback(
            k.round,
            retry,
            f"{verdict}: roll back to round {k.round}, T={retry:.6g}, halfway between "
            f"{k.threshold:.6g} and the failing T={k.ceiling:.6g}",
        )
