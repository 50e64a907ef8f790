"""How `T` moves: the paper's threshold search (Algorithm 2, lines 8-23).

A search is the part of a policy that, told whether a round was acceptable,
answers with the next threshold: raise it, or roll back and retry with a
smaller one. The policy (`tf_asap.pruning.policies.base.Policy`) keeps the
history, judges rounds, picks the best one and stops on targets; the search
keeps the lineage of acceptable rounds the current model descends from and
the step λ. `PaperSearch` is Algorithm 2 as published; `BisectSearch`
(`tf_asap.pruning.policies.bisection`) is the faster alternative.

The convergence rule lives here too, since it is counted along the lineage:
the run stops when the size changed by at most `min_relative_change` over
`patience` consecutive acceptable rounds (line 9). Two refinements keep it
from ending a run that has not started: the first round after the baseline
never counts (at `T = 0` it prunes only dead filters), and the rule is armed
only once a later round has changed the size (until then `T` is still below
every live filter's score). A rolled-back round, whose model was discarded,
neither breaks nor extends a streak.
"""

from __future__ import annotations

import dataclasses

from tf_asap.pruning.policies.results import percent, prune, rollback, stop, times

__all__ = ["LineageEntry", "PaperSearch"]


@dataclasses.dataclass
class LineageEntry:
    """One acceptable round on the line of rounds the current model descends from."""

    round: int
    # T this round pruned with (for the baseline: where a retry from it starts).
    threshold: float
    # λ that continues from this round: λ_k in Algorithm 2, lines 12 and 22.
    step: float
    # Consecutive rounds on this lineage whose size changed by at most
    # `min_relative_change` (the convergence rule, Algorithm 2, line 9).
    streak: int
    # Whether a round after the first one has moved the size metric yet.
    armed: bool
    # N in Algorithm 2, line 22: how many times the policy rolled back here.
    rollbacks: int = 0
    # The unacceptable rounds pruned from this round, in order.
    failed_rounds: list = dataclasses.field(default_factory=list)
    # The smallest T known to fail from this model or an ancestor's; only
    # the bisecting search sets it.
    ceiling: float | None = None
    # The reduction of the policy's size metric this round's model reached
    # (a share of the baseline's), and the smallest reduction known to fail
    # from this model or an ancestor's; only the bisecting search reads them.
    reduction: float = 0.0
    failed_reduction: float | None = None


class PaperSearch:
    """The threshold search of Algorithm 2, shared by Algorithms 4 and 5.

    `T` starts at `initial_threshold` and grows by λ after every acceptable
    round (lines 12-13). After an unacceptable round it rolls back to the last
    acceptable round `k` and retries with `T[k] + λ_k / 2^(N+1)`, where λ_k is
    the step in effect when `k` was accepted and `N` the number of earlier
    rollbacks to `k`; the halved step then carries on (lines 21-23). After
    `max_rollbacks` rollbacks to `k`, `k` is exhausted and the search goes
    back to the acceptable round before it (lines 17-19); rounds before `k`
    that hold the same model (they pruned nothing since) are exhausted with
    it. A rollback to the baseline retries from `initial_threshold` with the
    halved step, since no `T` is smaller than the one round 1 used.

    Args:
        objective: `"params"` or `"flops"`, named in the convergence reason.
        step: The initial λ, `> 0`.
        initial_threshold: `T` of round 1, `>= 0`.
        patience: Unchanged acceptable rounds that count as converged.
        min_relative_change: The largest relative size change that counts
            as unchanged (named in the convergence reason).
        max_rollbacks: Rollbacks to one round before it is exhausted.
        step_growth: λ is multiplied by this after an acceptable round that
            changed the size, up to `step`; `1` is the paper.
    """

    name = "paper"
    # The paper's search never trims a round (see `BisectSearch.limit`).
    limit = None

    def __init__(self, *, objective, step, initial_threshold, patience, min_relative_change,
                 max_rollbacks, step_growth=1.0):
        self.objective = objective
        self.initial_step = step
        self.initial_threshold = initial_threshold
        self.patience = patience
        self.min_relative_change = min_relative_change
        self.max_rollbacks = max_rollbacks
        self.step_growth = step_growth
        self.lineage: list[LineageEntry] = []
        self.exhausted: list[int] = []
        self.step = step

    @property
    def parent(self) -> LineageEntry:
        """The acceptable round the next round prunes from."""
        return self.lineage[-1]

    def begin(self) -> float:
        """Records the baseline as the lineage's root; returns `T` of round 1."""
        self.lineage = [LineageEntry(0, self.initial_threshold, self.step, 0, False)]
        return self.initial_threshold

    def _extend(self, round_number, threshold, moved, reduction=0.0):
        """Appends an accepted round to the lineage with its convergence streak."""
        parent = self.parent
        if parent.round == 0:
            streak, armed = 0, False
        else:
            armed = parent.armed or moved
            streak = parent.streak + 1 if armed and not moved else 0
        entry = LineageEntry(
            round_number, threshold, self.step, streak, armed, ceiling=parent.ceiling,
            reduction=reduction, failed_reduction=parent.failed_reduction,
        )
        self.lineage.append(entry)
        return entry

    def _converged(self, streak):
        return stop(
            f"{self.objective} changed by at most {percent(self.min_relative_change)} "
            f"over {streak} acceptable rounds: converged"
        )

    def accepted(self, round_number, threshold, moved, verdict, reduction=0.0):
        """Algorithm 2, lines 8-13: an acceptable round; raise `T` by λ or stop.

        `reduction` is the round's reduction of the size metric (a share of
        the baseline's); the paper's search does not read it.
        """
        if moved and self.step_growth > 1.0:
            self.step = min(self.step * self.step_growth, self.initial_step)
        entry = self._extend(round_number, threshold, moved, reduction)
        if entry.streak >= self.patience:
            return self._converged(entry.streak)
        next_threshold = threshold + self.step
        return prune(next_threshold, f"{verdict}: raise T to {next_threshold:.6g} (step {self.step:.6g})")

    def noise(self, threshold, verdict):
        """A failed round that removed nothing: keep its parent, raise `T`.

        The round pruned nothing (its size is its parent's), so its metric
        change is retraining noise, not damage done by pruning. Halving λ or
        counting a rollback would let noise stall the search at a threshold
        that removes nothing (at a 0% accuracy bound it never starts).
        """
        next_threshold = threshold + self.step
        return rollback(
            self.parent.round,
            next_threshold,
            f"{verdict}, but nothing was pruned (retraining noise): keep round "
            f"{self.parent.round}, raise T to {next_threshold:.6g} (step {self.step:.6g})",
        )

    def rejected(self, round_number, threshold, verdict, model_of, reduction=0.0):
        """Algorithm 2, lines 16-23: roll back to the last round not yet exhausted.

        Args:
            round_number: The unacceptable round.
            threshold: The `T` it pruned with.
            verdict: The phrase judging it, which starts the reason.
            model_of: `round -> (params, flops)`, to see which rounds hold
                the same model.
            reduction: The round's reduction of the size metric; the paper's
                search does not read it.
        """
        del reduction
        self.parent.failed_rounds.append(round_number)
        walked_past, same_model_rounds = [], []
        exhausted_model = None
        while True:
            k = self.parent
            same_model = exhausted_model == model_of(k.round)
            if k.rollbacks < self.max_rollbacks and not same_model:
                break
            if k.round == 0:
                if same_model:
                    return stop(
                        f"{verdict}; round {walked_past[0]} still held the baseline's "
                        f"model and was already retried {times(self.max_rollbacks)}"
                    )
                return stop(f"{verdict}; the baseline was already retried {times(self.max_rollbacks)}")
            exhausted_model = model_of(k.round)
            self.exhausted.append(k.round)
            (same_model_rounds if same_model else walked_past).append(k.round)
            self.lineage.pop()
        step = k.step / 2.0 ** (k.rollbacks + 1)
        k.rollbacks += 1
        self.step = step
        retry = self.initial_threshold if k.round == 0 else k.threshold + step
        further = _walked_past_phrase(walked_past, same_model_rounds, self.max_rollbacks)
        return rollback(
            k.round, retry, f"{verdict}: roll back to round {k.round}{further}, T={retry:.6g}, step {step:.6g}"
        )

    def state_dict(self):
        """The search's state as plain data (merged into the policy's state)."""
        return {
            "lineage": [dataclasses.asdict(entry) for entry in self.lineage],
            "exhausted": list(self.exhausted),
            "step": self.step,
            "initial_threshold": self.initial_threshold,
        }

    def load_state(self, state):
        """Restores `state_dict()`; raises `KeyError`/`TypeError` on a broken one."""
        # "failed_sizes" is a field of format-1 states written before failed
        # rounds were recorded by number; it is recomputed, not read.
        self.lineage = [
            LineageEntry(**{k: v for k, v in entry.items() if k != "failed_sizes"})
            for entry in state["lineage"]
        ]
        self.exhausted = [int(r) for r in state["exhausted"]]
        self.step = float(state["step"])
        # States written before `start(initial_threshold=...)` keep the configured one.
        self.initial_threshold = float(state.get("initial_threshold", self.initial_threshold))


def _walked_past_phrase(walked_past, same_model_rounds, max_rollbacks):
    """` (round 3 already retried 2 times, so further back)`, or `""`."""
    if not walked_past:
        return ""
    label = "round" if len(walked_past) == 1 else "rounds"
    further = f"{label} {', '.join(str(r) for r in walked_past)} already retried {times(max_rollbacks)}"
    if same_model_rounds:
        label = "round" if len(same_model_rounds) == 1 else "rounds"
        holds = "holds" if len(same_model_rounds) == 1 else "hold"
        same = ", ".join(str(r) for r in same_model_rounds)
        further += f" and {label} {same} before it {holds} the same model"
    return f" ({further}, so further back)"
