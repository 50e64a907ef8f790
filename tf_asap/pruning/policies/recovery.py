"""Early rejection: stop retraining a round that cannot reach the metric bound.

Not in the paper, whose rounds always retrain for their full epochs. A round
whose validation metric is still far from the bound part-way through
retraining usually fails anyway, and every remaining epoch is wasted. The
rule, conservative by construction:

    reject when  partial + best_gain * epochs_left  still misses the bound,

where `best_gain` is the largest per-epoch improvement of the metric seen so
far in any round's retraining: between two partial values of one round, and
between a round's last partial value and its final result. Until one gain
has been seen, nothing is rejected; a round is never rejected on the first
call of a run. Gains are measured after the first epoch (the controller
reports no value before retraining), and later epochs recover less than the
first, so the projection overestimates what the remaining epochs can do
rather than underestimating it.
"""

from __future__ import annotations

__all__ = ["RecoveryTracker"]


class RecoveryTracker:
    """Remembers per-epoch gains of the metric and projects a round's final value.

    Args:
        mode: `"max"` or `"min"`: the metric's better direction.
    """

    def __init__(self, mode):
        self.sign = 1.0 if mode == "max" else -1.0
        self.best_gain: float | None = None
        # The last partial value reported: (round, epochs done, score, epochs in all).
        self.partial: tuple[int, int, float, int] | None = None

    def _learn(self, before, after, epochs):
        if epochs > 0:
            gain = max(self.sign * (after - before) / epochs, 0.0)
            self.best_gain = gain if self.best_gain is None else max(self.best_gain, gain)

    def partial_value(self, round_number, score, epochs_done, epochs_total):
        """Records a partial value of `round_number` after `epochs_done` of `epochs_total` epochs."""
        if self.partial is not None and self.partial[0] == round_number and epochs_done > self.partial[1]:
            self._learn(self.partial[2], score, epochs_done - self.partial[1])
        self.partial = (round_number, epochs_done, score, epochs_total)

    def final_value(self, round_number, score):
        """Records a round's final result; learns the gain of its last epochs."""
        if self.partial is not None and self.partial[0] == round_number:
            self._learn(self.partial[2], score, self.partial[3] - self.partial[1])
        self.partial = None

    def best_reachable(self, score, epochs_left):
        """The best final value the remaining epochs could reach; `None` without evidence."""
        if self.best_gain is None:
            return None
        return score + self.sign * self.best_gain * epochs_left

    def state_dict(self):
        """The tracker's state as plain data."""
        return {"best_gain": self.best_gain, "partial": None if self.partial is None else list(self.partial)}

    def load_state(self, state):
        """Restores `state_dict()`; a missing state (an older policy) is empty."""
        state = state or {}
        self.best_gain = None if state.get("best_gain") is None else float(state["best_gain"])
        partial = state.get("partial")
        self.partial = (
            None if partial is None else (int(partial[0]), int(partial[1]), float(partial[2]), int(partial[3]))
        )
