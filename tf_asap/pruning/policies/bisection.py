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
   *ceiling* of `k`: the smallest `T` known to fail from `k`'s model. The
   search rolls back to `k` and retries halfway between `k`'s own `T` (the
   floor; `0` for the baseline) and the ceiling; λ becomes that half-width.
3. **Bisect.** A passing retry becomes the new floor (and the model the
   next round prunes); the next `T` is the midpoint to the ceiling it
   inherits. A failing one lowers the ceiling.
4. **Re-test a stale ceiling.** An inherited ceiling was measured on an
   earlier model; after retraining, scores shift and the same `T` often
   prunes less (measured on `vgg_small`: `T = 0.4` failed from one round
   and passed six rounds later). So when the bracket of a model that has
   not failed yet is narrower than `threshold_tolerance`, the next round
   tries the ceiling itself. If it passes, the ceiling is dropped and `T`
   grows again from there (λ doubling from the last half-width).
5. **Trim when `T` cannot resolve the size.** After retraining, the
   survivors' scores fall relative to the run's reference, so from a model
   that passed at `T_k` even `T_k` itself can prune far more than the last
   step did (measured on `resnet20`: 51 channels, from 77% to 90% of the
   FLOPs removed, at the accepted `T`). Every `T` in the bracket then fails
   alike and bisecting `T` cannot find the sizes in between. So the search
   also keeps a *size bracket*: the model's own reduction of the size
   metric and the smallest reduction known to fail from it or an ancestor.
   When the `T` bracket is narrower than `threshold_tolerance`, or a `T`
   below a failing one has just failed removing as much (within
   `size_tolerance`; a repeat of its masks, the cliff of step 6, is the
   extreme case), but the size bracket is wider than `size_tolerance`, the
   next round prunes with the failing `T` *trimmed* to the middle of the
   size bracket: the pruning step
   gives back the filters pruned with the least confidence until the
   reduction is at most that (`limit`, read by the controller through the
   policy's `reduction_limit`). A trimmed round that passes becomes the new
   floor and keeps the `T` ceiling; one that fails lowers the failing size.
   This is bisection on the size where bisection on `T` has run out. A
   passing round that stopped more than `size_tolerance / 2` short of its
   limit was not trimmed (its `T` pruned less from this model): its `T`
   ceiling was stale, as in step 4.
6. **Stop** when a model's own bracket (the floor and a failure measured
   from that model) is narrower than `threshold_tolerance`, after
   `max_rollbacks` failures from the same round, or, while growing, by the
   paper's convergence rule (`patience` rounds of unchanged size; inside a
   bracket, rounds that prune nothing are bisection steps). A failure that
   pruned the same model to the same size as an earlier failure from it (a
   threshold cliff, reported by the controller without retraining) lowers
   the ceiling but does not count against `max_rollbacks`: it cost no
   epochs, and the cliff's edge is below it.

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
        size_tolerance: The size bracket (a share of the baseline's size
            metric) at which trimmed retries stop, `> 0`; `None` never
            trims (bisection on `T` only).
        **options: The arguments of `PaperSearch`; `step_growth` is not used
            (λ doubles while growing).

    Attributes:
        limit: The largest reduction of the size metric the round asked for
            last may reach (the trimmed retry's), or `None`.
    """

    name = "bisect"

    def __init__(self, *, threshold_tolerance, size_tolerance=None, **options):
        super().__init__(**options)
        self.threshold_tolerance = threshold_tolerance
        self.size_tolerance = size_tolerance
        self.limit = None

    def begin(self):
        # The baseline is the floor of a bracket that fails at round 1: a
        # retry from it goes halfway between 0 and the failing T.
        self.lineage = [LineageEntry(0, 0.0, self.step, 0, False)]
        return self.initial_threshold

    def _narrow(self, floor, ceiling):
        return ceiling - floor <= self.threshold_tolerance + ROUNDING_SLACK

    def _next(self, entry, threshold, stuck=False):
        """`(next T, phrase, grows, limit)` from `entry`'s model after a round at `threshold`.

        `None` in place of `T` when `entry`'s own bracket is closed: the run
        has converged and the phrase says why. `limit` is the reduction the
        next round is trimmed to, or `None`. `stuck`: a smaller `T` just
        removed as much as a larger one that failed (within `size_tolerance`),
        so the size is bisected at once instead of `T`.
        """
        ceiling = entry.ceiling
        if ceiling is None:
            following = threshold + self.step
            return following, f"raise T to {following:.6g} (step {self.step:.6g})", True, None
        size_open = self._size_open(entry)
        if not (stuck and size_open) and not self._narrow(threshold, ceiling):
            following = (threshold + ceiling) / 2.0
            return following, f"T={following:.6g}, halfway to the failing T={ceiling:.6g}", False, None
        if size_open:
            low, high = self._size_bracket(entry)
            limit = (low + high) / 2.0
            return ceiling, (
                f"T={ceiling:.6g} trimmed to a {self.objective} reduction of at most {percent(limit)}, "
                f"halfway between this model's {percent(low)} and the failing {percent(high)}"
            ), False, limit
        if entry.failed_rounds:
            return None, (
                f"the bracket T in [{threshold:.6g}, {ceiling:.6g}] is within "
                f"threshold_tolerance={self.threshold_tolerance:.6g}{self._size_phrase(entry)}: converged"
            ), False, None
        return ceiling, f"T={ceiling:.6g}: retry the failing T of an earlier model on this one", False, None

    def _size_bracket(self, entry):
        """`(entry's reduction, the smallest failing one)`, or `None` when sizes are not bisected."""
        if self.size_tolerance is None or entry.failed_reduction is None:
            return None
        return entry.reduction, entry.failed_reduction

    def _size_open(self, entry):
        """Whether `entry`'s size bracket is wider than `size_tolerance`."""
        bracket = self._size_bracket(entry)
        return bracket is not None and bracket[1] - bracket[0] > self.size_tolerance + ROUNDING_SLACK

    def _size_phrase(self, entry):
        bracket = self._size_bracket(entry)
        if bracket is None:
            return ""
        return (
            f" and the {self.objective} reduction in [{percent(bracket[0])}, {percent(bracket[1])}]"
            f" within size_tolerance={percent(self.size_tolerance)}"
        )

    def accepted(self, round_number, threshold, moved, verdict, reduction=0.0):
        trimmed, self.limit = self.limit, None
        # A trim that took lands within one channel of its limit; a round that
        # stopped well short of it pruned what its T pruned, untrimmed.
        bound = trimmed is not None and reduction >= trimmed - self.size_tolerance / 2.0 - ROUNDING_SLACK
        ceiling = self.parent.ceiling
        entry = self._extend(round_number, threshold, moved, reduction)
        if ceiling is not None and threshold >= ceiling - ROUNDING_SLACK and not bound:
            entry.ceiling = None  # the ceiling passed on this model: it was stale
        if entry.failed_reduction is not None and reduction >= entry.failed_reduction - ROUNDING_SLACK:
            entry.failed_reduction = None  # a size that failed before passed on this model
        if entry.ceiling is not None:
            # Inside a bracket, rounds that prune nothing are bisection steps
            # (not retrained), not a sign of convergence: the bracket decides.
            entry.streak = 0
        if entry.streak >= self.patience:
            return self._converged(entry.streak)
        following, phrase, grows, self.limit = self._next(entry, threshold)
        if following is None:
            return stop(f"{verdict}; {phrase}")
        if grows:
            self.step *= 2.0
        return prune(following, f"{verdict}: {phrase}")

    def noise(self, threshold, verdict):
        trimmed, self.limit = self.limit, None
        parent = self.parent
        closed = trimmed is not None or not self._size_open(parent)  # a trimmed T pruned nothing
        if parent.ceiling is not None and self._narrow(threshold, parent.ceiling) and closed:
            # Nothing left to try between this T, which pruned nothing, and the ceiling.
            return stop(
                f"{verdict}, but nothing was pruned and the bracket T in [{threshold:.6g}, "
                f"{parent.ceiling:.6g}] is within threshold_tolerance={self.threshold_tolerance:.6g}: converged"
            )
        following, phrase, _, self.limit = self._next(parent, threshold)
        return rollback(
            parent.round,
            following,
            f"{verdict}, but nothing was pruned (retraining noise): keep round {parent.round}, {phrase}",
        )

    def rejected(self, round_number, threshold, verdict, model_of, reduction=0.0):
        trimmed, self.limit = self.limit, None
        k = self.parent
        # A failure that pruned k's model to the size of an earlier failure
        # from k repeats it (a threshold cliff: under the per-round cap a
        # smaller T often picks the same filters). The controller reports it
        # without retraining, so it lowers the ceiling without using up a
        # retry; the bracket tolerance still bounds such rounds.
        # A trimmed round that repeats one counts: the limit did not take (a
        # loop that ignores `reduction_limit`), so only retries bound it.
        repeat = trimmed is None and any(
            model_of(earlier) == model_of(round_number) for earlier in k.failed_rounds
        )
        k.failed_rounds.append(round_number)
        k.ceiling = threshold if k.ceiling is None else min(k.ceiling, threshold)
        # Stuck: this T, below a failing one, removed about as much or more
        # (a repeat, or scores that drifted): T does not resolve the size here.
        stuck = repeat
        if self.size_tolerance is not None:
            known = k.failed_reduction
            stuck = stuck or (trimmed is None and known is not None
                              and reduction >= known - self.size_tolerance - ROUNDING_SLACK)
            k.failed_reduction = reduction if known is None else min(known, reduction)
        if self.max_rollbacks == 0:
            return stop(f"{verdict}; max_rollbacks=0 allows no retry")
        if k.rollbacks >= self.max_rollbacks and not repeat:
            self.exhausted.append(k.round)
            return stop(f"{verdict}; round {k.round} was already retried {times(self.max_rollbacks)}")
        following, phrase, _, limit = self._next(k, k.threshold, stuck=stuck)
        if following is None:
            return stop(f"{verdict}; {phrase}")
        k.rollbacks += 0 if repeat else 1
        self.limit = limit
        if limit is None:
            self.step = following - k.threshold
            phrase = f"T={following:.6g}, halfway between {k.threshold:.6g} and the failing T={k.ceiling:.6g}"
        elif trimmed is None:
            phrase = f"{phrase} (a smaller T removed as much as a failing one)" if stuck else (
                f"{phrase} (every T in the bracket prunes too much from this model)")
        return rollback(k.round, following, f"{verdict}: roll back to round {k.round}, {phrase}")

    def state_dict(self):
        return {**super().state_dict(), "limit": self.limit}

    def load_state(self, state):
        super().load_state(state)
        self.limit = state.get("limit")  # states written before trimmed retries have none
