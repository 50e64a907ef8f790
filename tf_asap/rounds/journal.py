"""The durable record of a pruning run: manifest, round log, checkpoints, resume.

`RunJournal` is what makes a run survive a crash, shared by both front doors
(`RoundController` and the `AdaptivePruning` callback with a `run_dir`):

- `open` checks that the directory belongs to this model (fingerprint with
  wiring, naming the first layer that differs), these settings and this
  policy, and returns the saved policy state when there is one;
- `resume` rebuilds the policy and the round log up to the last committed
  round (a round logged but not committed is dropped, and redone);
- `commit` makes a round durable in order: checkpoint (round 0 and
  acceptable rounds, weights and masks only), then the log line, then the
  manifest, which is the commit point; afterwards the checkpoints no rollback
  can reach any more are deleted;
- `finish` saves the best round's masked and slimmed models and the report.

Under a multi-worker strategy only the chief writes the run directory; every
other worker journals into a scratch directory of its own
(`tf_asap.rounds.placement.writing_directory`). When it opens, a worker
first copies the chief's committed state (manifest, log, rewind state,
checkpoints) into its scratch directory if the run directory is on a file
system it can read (the chief waits for every worker before it writes), so
that a run resumed after the chief restarted resumes from the same round on
every worker.
"""

from __future__ import annotations

import datetime
import logging
import os

import numpy as np

from tf_asap.core.counting import count_cost
from tf_asap.core.layers import MaskedLayer
from tf_asap.errors import RunDirectoryError
from tf_asap.files import atomic_save_model
from tf_asap.pruning.policies import policy_from_state
from tf_asap.rounds import report
from tf_asap.rounds.placement import wait_for_workers, writing_directory
from tf_asap.rounds.run_directory import (
    MANIFEST_NAME,
    RUN_FORMAT,
    RunDirectory,
    ScalarWriter,
    describe_architecture,
    model_fingerprint,
    read_round_log,
)
from tf_asap.rounds.state import load_state, restore_state, save_state, snapshot_state
from tf_asap.rounds.step import format_round_line

__all__ = ["RunJournal", "layer_summary", "reachable_rounds"]

logger = logging.getLogger("tf_asap")

_SCALARS = (
    "accuracy", "accuracy_drop", "params_left", "flops_left",
    "params_reduction", "flops_reduction", "threshold",
)


def reachable_rounds(policy, decision):
    """Rounds whose checkpoints may still be restored.

    Round 0, the best round so far, and every round on the policy's lineage:
    a rollback returns to the lineage's last round, or walks back along it
    when that round is exhausted. A rolled-back or exhausted round has left
    the lineage and is never restored again.

    Args:
        policy: The policy, after it decided on the latest round.
        decision: Its latest `Decision`.

    Returns:
        A set of round numbers.
    """
    lineage = policy.state_dict().get("lineage") or []
    keep = {0, policy.best_round}
    keep.update(entry["round"] for entry in lineage)
    if decision.rollback_to is not None:
        keep.add(decision.rollback_to)
    return keep


def layer_summary(model):
    """Per prunable layer: filters as built and kept, params and FLOPs (dense, effective).

    Returns:
        A list of dicts, in graph order, for the report's per-layer chart.
    """
    costs = {layer.name: layer for layer in count_cost(model).layers}
    rows = []
    for layer in model.layers:
        if not isinstance(layer, MaskedLayer) or layer.name not in costs:
            continue
        mask = np.asarray(layer.filter_mask.numpy()) > 0.5
        cost = costs[layer.name]
        rows.append({
            "name": layer.name,
            "type": cost.type,
            "filters": int(mask.size),
            "kept": int(mask.sum()),
            "params": int(cost.params),
            "effective_params": int(cost.effective_params),
            "flops": int(cost.flops),
            "effective_flops": int(cost.effective_flops),
        })
    return rows


class RunJournal:
    """Manifest, round log and checkpoints of one run directory.

    Args:
        path: The run directory.
        model: The prunable model of the run.
        settings: The run's settings (saved; a resume must match them).
        verbose: Print each round's line. Defaults to `True`.
    """

    def __init__(self, path, model, settings, verbose=True):
        self.shared = RunDirectory(path)
        self.directory = RunDirectory(writing_directory(self.shared.path))
        self.path = self.directory.path
        self.model = model
        self.settings = settings
        self.verbose = verbose
        self.architecture = describe_architecture(model)
        self.fingerprint = model_fingerprint(model)
        self.records = []
        self.threshold_reference = None
        self.test_metrics = None
        self.final_tuning = None
        self.threshold_scan = None
        self.layers = None
        self._writer = None

    def locked(self):
        """The directory's exclusive lock (a context manager)."""
        return self.directory.locked()

    def manifest(self, policy, status, best_round=None):
        """The manifest for the current state of the run."""
        return {
            "format": RUN_FORMAT,
            "status": status,
            "model": {
                "name": self.model.name,
                "fingerprint": self.fingerprint,
                "architecture": self.architecture,
            },
            "settings": self.settings,
            "policy": {"kind": type(policy).__name__, "config": policy.to_config()},
            "policy_state": policy.state_dict() if policy.history else None,
            "threshold_reference": self.threshold_reference,
            "test": self.test_metrics,
            "final_tuning": self.final_tuning,
            "threshold_scan": self.threshold_scan,
            "layers": self.layers,
            "rounds_completed": len(self.records),
            "best_round": best_round,
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def write_manifest(self, policy, status="running", best_round=None):
        """Writes the manifest (atomically)."""
        self.directory.write_manifest(self.manifest(policy, status, best_round))

    def open(self, policy):
        """Starts the directory, or checks that it holds this run.

        Returns:
            The saved manifest, or `None` for a new run.

        Raises:
            RunDirectoryError: If the directory holds another model's run, or
                one with other settings or another policy, or is damaged.
        """
        if self.directory.path != self.shared.path:
            self.directory.copy_committed_state(self.shared)
        wait_for_workers()
        manifest = self.directory.read_manifest()
        if manifest is None:
            if os.path.exists(self.directory.log):
                raise RunDirectoryError(
                    f"'{self.path}' has a round log but no {MANIFEST_NAME}; "
                    "it is damaged or not a tf_asap run. Use a new run directory."
                )
            os.makedirs(self.path, exist_ok=True)
            self.write_manifest(policy)
            return None
        self.directory.check_model(manifest, self.fingerprint, self.architecture, self.model.name)
        self.directory.check_settings(
            manifest, self.settings, type(policy).__name__, policy.to_config()
        )
        return manifest

    def resume(self, manifest):
        """The saved policy, with the log cut back to its last committed round.

        Returns:
            The policy rebuilt from the manifest.

        Raises:
            RunDirectoryError: If the log and the manifest disagree.
        """
        policy = policy_from_state(manifest["policy_state"])
        self.threshold_reference = manifest.get("threshold_reference")
        self.test_metrics = manifest.get("test")
        self.final_tuning = manifest.get("final_tuning")
        self.threshold_scan = manifest.get("threshold_scan")
        done = policy.history[-1].round
        records = read_round_log(self.directory.log)
        kept = [r for r in records if r["round"] <= done]
        if [r["round"] for r in kept] != list(range(done + 1)):
            raise RunDirectoryError(
                f"The round log of '{self.path}' lists rounds "
                f"{[r['round'] for r in records]}, but the manifest says rounds "
                f"0-{done} are done. The run directory is damaged; start a new one."
            )
        if len(kept) != len(records):
            # A round was logged but its decision never committed: it is redone.
            self.directory.write_log(kept)
        self.records = kept
        return policy

    def commit(self, policy, result, decision, record):
        """Makes a round durable: checkpoint, then log, then the manifest.

        Checkpoints hold weights and masks only: the optimizer state they
        would carry is overwritten by the rewind before any retraining.
        Afterwards the checkpoints no rollback can reach any more are deleted,
        and the log line records the directory's size.
        """
        if result.round == 0 or policy.acceptable(result):
            save_state(
                self.directory.checkpoint(result.round),
                snapshot_state(self.model, optimizer=False),
                {"round": result.round, "threshold": result.threshold},
            )
        self.directory.prune_checkpoints(reachable_rounds(policy, decision))
        record["run_dir_bytes"] = self.directory.size()
        self.records.append(record)
        self.directory.write_log(self.records)
        self.write_manifest(policy)
        self._tensorboard(record)
        line = format_round_line(record)
        logger.info(line)
        if self.verbose:
            print(line, flush=True)

    def restore_round(self, round_number):
        """Restores the saved weights and masks of a round into the model.

        Raises:
            RunDirectoryError: If that round has no checkpoint.
        """
        path = self.directory.checkpoint(round_number)
        if not os.path.exists(path):
            raise RunDirectoryError(
                f"Round {round_number} has no checkpoint in '{self.path}' "
                "(only round 0, the best round and the acceptable rounds a "
                "rollback can still reach are kept)."
            )
        state, _ = load_state(path)
        restore_state(self.model, state)

    def finish(self, policy, best_round, slim_model):
        """Saves the best round's models, the finished manifest and the report."""
        self.layers = layer_summary(self.model)
        test = self.test_metrics or {}
        if test.get("final") is not None:
            # The best round's line gets its test metric too (reported only),
            # so the table's test column shows the baseline and the result.
            best = next(r for r in self.records if r["round"] == best_round)
            best[f"test_{test['metric']}"] = test["final"]
            self.directory.write_log(self.records)
        atomic_save_model(self.model, self.directory.final_model)
        atomic_save_model(slim_model, self.directory.slim_model)
        self.write_manifest(policy, "finished", best_round=best_round)
        try:
            report.write_report(self.path)
        except ImportError as error:  # matplotlib is optional
            logger.warning("No round plot written: %s", error)

    def close(self):
        """Closes the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _tensorboard(self, record):
        if self._writer is None:
            self._writer = ScalarWriter(self.directory.tensorboard)
        values = {key: record[key] for key in _SCALARS}
        values["acceptable"] = float(record["acceptable"])
        values["run_dir_megabytes"] = record["run_dir_bytes"] / 1e6
        self._writer.write(values, step=record["round"])
