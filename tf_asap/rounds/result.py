"""`PruningResult`: what a finished `RoundController` run returns."""

from __future__ import annotations

import dataclasses

import keras

__all__ = ["PruningResult"]


@dataclasses.dataclass
class PruningResult:
    """What a finished run produced.

    Attributes:
        model: The best round's masked model (compiled), fine-tuned when the
            run had `final_epochs`.
        slim_model: The same model with its pruned channels removed
            (uncompiled).
        best_round: The round number of the result: the policy's best
            round, or the smaller round the final stage stepped back to when
            `final_max_drop` was missed (round 0 when no pruned round kept it).
        rounds: The round log, one dict per completed round (round 0 first).
        run_dir: The run directory.
        test: `{"metric", "baseline", "final"}`: the policy's metric on
            `test_data` for the unpruned and the returned model, or `None`
            without test data. Reported only; no decision used it.
        final_tuning: The final fine-tuning stage's record (the result's
            round, epochs, learning rate, validation and test metric before
            and after, `max_drop`, `met`, and every `attempts` entry), or
            `None` without it.
    """

    model: keras.Model
    slim_model: keras.Model
    best_round: int
    rounds: list
    run_dir: str
    test: dict | None = None
    final_tuning: dict | None = None

    @property
    def best(self) -> dict:
        """The log record of the best round."""
        return next(r for r in self.rounds if r["round"] == self.best_round)
