"""The last stage of a run: fine-tune the chosen model once, durably.

After the policy stops, the best round (chosen on validation data) is
restored and trained for `final_epochs` more epochs
(`Retraining.fine_tune`). The stage is its own commit point: its result is
saved to `tuned.npz` and then recorded in the manifest (`final_tuning`). A
run killed during the stage restores the best round again and redoes only
the stage; a run started again after it restores the saved result.
"""

from __future__ import annotations

import os
import time

from tf_asap.rounds.state import load_state, restore_state, save_state, snapshot_state
from tf_asap.rounds.step import evaluate_metric

__all__ = ["fine_tune_best"]


def quality(model, metric, validation, test=None):
    """`{"validation_<metric>": v[, "test_<metric>": t]}` of `model` (test reported only)."""
    values = {f"validation_{metric}": evaluate_metric(model, validation, metric)}
    if test is not None:
        values[f"test_{metric}"] = evaluate_metric(model, test, metric)
    return values


def fine_tune_best(model, retraining, journal, epochs, policy, validation, test=None):
    """Fine-tunes the restored best round for `epochs` epochs, or restores a finished stage.

    Args:
        model: The masked model, holding the best round's state.
        retraining: The run's `Retraining`.
        journal: The run's `RunJournal` (its `final_tuning` record and
            manifest are written).
        epochs: Epochs to fine-tune, `>= 1`.
        policy: The policy (for the manifest).
        validation: The validation batches.
        test: Test batches, reported only. Defaults to `None`.

    Returns:
        The stage's record: epochs, learning rate, wall time and the
        metrics before (`*_before`) and after (`*_after`).
    """
    tuned = journal.directory.tuned
    if journal.final_tuning and os.path.exists(tuned):
        restore_state(model, load_state(tuned)[0], optimizer=False)
        return journal.final_tuning
    metric = retraining.metric
    before = quality(model, metric, validation, test)
    started = time.monotonic()
    retraining.fine_tune(epochs)
    after = quality(model, metric, validation, test)
    save_state(tuned, snapshot_state(model, optimizer=False), {"stage": "final_tuning"})
    journal.final_tuning = {
        "epochs": epochs,
        "learning_rate": retraining.fine_tuning_learning_rate(),
        "wall_time_s": round(time.monotonic() - started, 3),
        **{f"{key}_before": value for key, value in before.items()},
        **{f"{key}_after": value for key, value in after.items()},
    }
    journal.write_manifest(policy)  # the stage's commit point
    return journal.final_tuning
