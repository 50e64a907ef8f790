"""The last stage of a run: fine-tune the chosen model, durably, within an optional bound.

After the policy stops, the best round (chosen on validation data) is
restored and trained for `final_epochs` more epochs
(`Retraining.fine_tune`). Every attempt is its own commit point: its model
is saved to `tuned.npz` and then recorded in the manifest
(`final_tuning`). A run killed during an attempt redoes only that attempt;
a run started again after the stage restores the saved result.

With `max_drop` (the controller's `final_max_drop`) the stage also keeps a
promise about the *fine-tuned* model. A round is accepted after one short
retraining, on a bound that stands in for the accuracy its fine-tuned model
will reach; how much fine-tuning recovers is only known afterwards. So when
the fine-tuned model misses `max_drop` on the validation data, the stage
walks back: it fine-tunes the next smaller accepted round that still has a
checkpoint (the policy's lineage, most pruned first), and so on, until one
holds. When none does, the result is round 0, the unpruned model, and the
record says so. Each step back costs one more fine-tuning.

`max_drop` is not a run setting that a resumed run must share: it judges
recorded results, so a finished run may be resumed with another bound, and
only the attempts the new bound needs are trained.
"""

from __future__ import annotations

import os
import time

from tf_asap.checks import check_number
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies.results import ROUNDING_SLACK
from tf_asap.rounds.state import load_state, restore_state, save_state, snapshot_state
from tf_asap.rounds.step import evaluate_metric

__all__ = ["FinalStage", "fallback_rounds"]


def quality(model, metric, validation, test=None):
    """`{"validation_<metric>": v[, "test_<metric>": t]}` of `model` (test reported only)."""
    values = {f"validation_{metric}": evaluate_metric(model, validation, metric)}
    if test is not None:
        values[f"test_{metric}"] = evaluate_metric(model, test, metric)
    return values


def fallback_rounds(records, checkpointed, chosen, objective):
    """The rounds the stage may fine-tune, in the order it tries them.

    The chosen round first, then every other round with a checkpoint that
    removed some but less of `objective` than the chosen one, most first.
    Checkpoints exist only for acceptable rounds, so all of them met the
    policy's per-round bound.

    Args:
        records: The round log (dicts with `round` and `<objective>_reduction`).
        checkpointed: Round numbers that have a checkpoint.
        chosen: The policy's best round.
        objective: `"params"` or `"flops"`.

    Returns:
        A list of round numbers.
    """
    reduction = {r["round"]: r[f"{objective}_reduction"] for r in records}
    smaller = [
        r for r in checkpointed
        if r not in (0, chosen) and r in reduction and 0.0 < reduction[r] < reduction[chosen]
    ]
    return [chosen] + sorted(smaller, key=lambda r: (-reduction[r], -r))


class FinalStage:
    """The final fine-tuning: how many epochs, and the validation bound it must keep.

    Args:
        epochs: Epochs of fine-tuning per attempt; `0` turns the stage off.
        max_drop: The largest drop of the policy's metric (in the metric's
            units: `0.005` is half a point of accuracy) the fine-tuned model
            may show against the unpruned model on the validation data, or
            `None` (the default): fine-tune the chosen round once, whatever
            it reaches.

    Raises:
        ConfigurationError: For a negative `max_drop`, or one without epochs.
    """

    def __init__(self, epochs, max_drop=None):
        self.epochs = epochs
        self.max_drop = check_number(
            "final_max_drop", max_drop, 0.0, allow_none=True,
            fix="Pass the largest validation drop the fine-tuned result may show, e.g. 0.005 "
            "for half a point of accuracy, or None to accept whatever fine-tuning reaches.",
        )
        if self.max_drop is not None and not epochs:
            raise ConfigurationError(
                f"final_max_drop={self.max_drop:g} needs final_epochs >= 1: it judges the "
                "fine-tuned model. Without fine-tuning, lower the policy's own bound instead."
            )

    @staticmethod
    def drop(policy, value):
        """How much worse `value` is than the policy's baseline, in the metric's direction."""
        return policy.improvement(value, policy.baseline.score)

    def meets(self, drop):
        """Whether a fine-tuned drop keeps `max_drop` (always, without one)."""
        return self.max_drop is None or drop <= self.max_drop + ROUNDING_SLACK

    def run(self, model, retraining, journal, policy, chosen, validation, test=None, say=print):
        """Fine-tunes the chosen round, stepping back while the bound is missed.

        Args:
            model: The masked model, holding the chosen round's state.
            retraining: The run's `Retraining`.
            journal: The run's `RunJournal` (its `final_tuning` record and
                manifest are written; its checkpoints are restored).
            policy: The run's policy, stopped (its baseline, direction, objective).
            chosen: Its best round.
            validation: The validation batches.
            test: Test batches, reported only. Defaults to `None`.
            say: Prints one progress line. Defaults to `print`.

        Returns:
            `(round, record)`: the round the result comes from and the
            stage's record (that attempt's epochs, learning rate, wall time,
            metrics before (`*_before`) and after (`*_after`); `max_drop`,
            `met` and every `attempts` entry).
        """
        metric = retraining.metric
        candidates = fallback_rounds(
            journal.records, journal.directory.checkpoint_rounds(), chosen, policy.objective
        )
        attempts = self._saved_attempts(journal, policy, chosen)
        kept = next((i for i, a in enumerate(attempts) if self.meets(a["validation_drop"])), None)
        if kept is not None:
            if kept == len(attempts) - 1 and self._restore_tuned(model, journal, attempts[kept]):
                return self._commit(journal, policy, attempts, attempts[kept])
            del attempts[kept:]  # only the last attempt's model is saved: train it again
        tried = {a["round"] for a in attempts}
        for round_number in candidates:
            if round_number in tried:
                continue
            journal.restore_round(round_number)
            say(f"Fine-tuning round {round_number} for {self.epochs} epoch(s)")
            attempt = self._fine_tune(model, retraining, journal, policy, round_number, validation, test)
            attempts.append(attempt)
            self._commit(journal, policy, attempts, attempt)
            if self.meets(attempt["validation_drop"]):
                return round_number, journal.final_tuning
            say(f"Round {round_number} ends {policy.format_score(attempt['validation_drop'])} "
                f"under the baseline on validation after fine-tuning, over final_max_drop "
                f"{policy.format_score(self.max_drop)}: trying a smaller round")
        journal.restore_round(0)
        say("No pruned round keeps final_max_drop after fine-tuning: the result is round 0, "
            "the unpruned model")
        values = quality(model, metric, validation, test)
        unpruned = {"round": 0, "epochs": 0, "validation_drop": 0.0, "wall_time_s": 0.0,
                    **{f"{key}_{when}": value for key, value in values.items() for when in ("before", "after")}}
        attempts.append(unpruned)
        return self._commit(journal, policy, attempts, unpruned)

    def _fine_tune(self, model, retraining, journal, policy, round_number, validation, test):
        metric = retraining.metric
        before = quality(model, metric, validation, test)
        started = time.monotonic()
        retraining.fine_tune(self.epochs)
        after = quality(model, metric, validation, test)
        save_state(journal.directory.tuned, snapshot_state(model, optimizer=False),
                   {"stage": "final_tuning", "round": round_number})
        return {
            "round": round_number,
            "epochs": self.epochs,
            "learning_rate": retraining.fine_tuning_learning_rate(),
            "wall_time_s": round(time.monotonic() - started, 3),
            "validation_drop": self.drop(policy, after[f"validation_{metric}"]),
            **{f"{key}_before": value for key, value in before.items()},
            **{f"{key}_after": value for key, value in after.items()},
        }

    def _commit(self, journal, policy, attempts, result):
        """Writes the stage's record with `result` on top: its commit point."""
        journal.final_tuning = {
            **{key: value for key, value in result.items() if key != "attempts"},
            "max_drop": self.max_drop,
            "met": None if self.max_drop is None else bool(
                result["epochs"] and self.meets(result["validation_drop"])
            ),
            "attempts": [dict(a) for a in attempts],
        }
        journal.write_manifest(policy)
        return result["round"], journal.final_tuning

    def _saved_attempts(self, journal, policy, chosen):
        """The attempts a resumed run already made (a record of an older run: one)."""
        record = journal.final_tuning
        if not record:
            return []
        if "attempts" in record:
            return [dict(a) for a in record["attempts"]]
        legacy = {**record, "round": chosen}
        legacy["validation_drop"] = self.drop(policy, record[f"validation_{policy.metric}_after"])
        return [legacy]

    def _restore_tuned(self, model, journal, attempt):
        """Restores a finished attempt's model, when `tuned.npz` holds it."""
        if not attempt["epochs"]:  # the unpruned fallback: nothing was trained
            journal.restore_round(0)
            return True
        path = journal.directory.tuned
        if not os.path.exists(path):
            return False
        state, metadata = load_state(path)
        if (metadata or {}).get("round", attempt["round"]) != attempt["round"]:
            return False  # killed after saving a later attempt: redo that one
        restore_state(model, state, optimizer=False)
        return True
