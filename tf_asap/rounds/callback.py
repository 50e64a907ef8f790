"""Adaptive pruning inside an ordinary `model.fit`: the `AdaptivePruning` callback.

The callback is the second front door to Algorithm 1 (the first is
`tf_asap.rounds.controller.RoundController`). Both run the same steps with the same
code: `prune_filters` (scores -> layer-aware thresholds -> masks that only
shrink), `evaluate_round`, `snapshot_state` / `restore_state` for rewinding
and rollback, and a `tf_asap.pruning.policies` policy that decides. The callback
counts a round in epochs of the `fit` call instead of `T - k` epochs of a
schedule. Its round states live in memory, or, with `run_dir`, in a run
directory written by the controller's `RunJournal`, so that a restarted `fit`
continues the pruning where it was.

What the callback does not do, and why: it retrains the masked model, not
the slimmed one, and takes no `distillation=`. Both would need another
model, or another loss, than the one the user's `fit` is training: a
callback cannot swap the model or recompile it while that `fit` runs. Use
`RoundController(retrain="slim", distillation=...)` for either.
"""

from __future__ import annotations

import logging
import os
import time

import keras

from tf_asap.checks import check_choice, check_int
from tf_asap.core.masks import is_prunable_model, mask_digest
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies import Policy
from tf_asap.core.surgery import slim
from tf_asap.distribute import check_built_in_scope
from tf_asap.rounds.journal import RunJournal
from tf_asap.rounds.placement import chosen_strategy, runs_in_strategy_scope
from tf_asap.rounds.state import load_state, restore_state, save_state, snapshot_state
from tf_asap.rounds.step import (
    DEFAULT_MAX_FRACTION,
    criterion_name,
    evaluate_metric,
    evaluate_round,
    format_round_line,
    mask_rules,
    measure_threshold_reference,
    policy_metric,
    prune_filters,
    repeated_round,
    resolve_criterion,
    round_record,
)
from tf_asap.rounds.training import labelled_batches

__all__ = ["AdaptivePruning"]

logger = logging.getLogger("tf_asap")

_REWIND_MODES = ("lr", "weights", "none")


class AdaptivePruning(keras.callbacks.Callback):
    """Prunes a model adaptively while `model.fit` trains it.

    At the start of `fit` the model as it is counts as round 0 (the
    baseline): it is evaluated on `validation_data` and the policy gives the
    threshold of round 1, which is applied at once. Then every
    `epochs_per_round` epochs the callback

    1. evaluates the model and tells the policy the round's result;
    2. keeps the round's state (weights, masks, optimizer) if the round is
       acceptable, since the policy may roll back to it or choose it;
    3. carries out the decision: on `"rollback"` it restores the saved state
       of that round; on `"prune"` and `"rollback"` it scores the filters on
       `calibration_data`, sets the masks of the next threshold (they only
       shrink), and rewinds; on `"stop"` it restores the best round and sets
       `model.stop_training`.

    A round whose threshold prunes nothing is evaluated at once and takes no
    epochs (see `skip_unpruned_rounds`), as in `RoundController`.

    Rewinding (`rewind`): `"lr"` restores the optimizer state taken when `fit`
    started, so every round retrains with the same stretch of the
    learning-rate schedule and the same `optimizer.iterations` (the paper's
    learning-rate rewinding); `"weights"` also puts the surviving weights back
    to their values at the start of `fit` (weight rewinding, with `fit`'s start
    as epoch `k`); `"none"` keeps training on.

    When `fit` ends before the policy stops, the best acceptable round so far
    is restored, so the model is always left in an accepted state. Without
    `run_dir` the states of acceptable rounds are kept in memory (one copy of
    the weights and optimizer variables each). With `run_dir` they go to a run
    directory instead (weights and masks; the layout of `RoundController`'s,
    with the same atomic writes, plus `callback.npz`, the state every round
    rewinds to): every round is committed as it ends, and a `fit` started
    again with the same `run_dir` (after a crash, or resumed by Keras'
    `BackupAndRestore`) restores the last committed round and carries on with
    the policy's decision; committed rounds are not run again. With
    `rewind="none"` and a `run_dir`, a rollback restores weights and masks
    but not the optimizer. With `BackupAndRestore`, list it before
    `AdaptivePruning` in `callbacks`, so that the pruning's state (restored
    from `run_dir` when `fit` starts) is the one training continues from.

    The threshold `T` is relative (see `tf_asap.pruning.policies`): the attention
    threshold is `T * threshold_reference`, where the reference is measured
    on the scores of the first pruned round and kept for the whole run.

    Args:
        policy: A new `tf_asap.pruning.policies` policy.
        calibration_data: Data the filters are scored on (labels ignored).
        validation_data: Data with labels the accuracy is measured on.
        epochs_per_round: Epochs of training per round, `>= 1`.
        criterion: An importance criterion name or object (see
            `tf_asap.pruning.importance`). Defaults to `"attention"`.
        objective: `"params"` or `"flops"` for the layer-aware thresholds.
            Defaults to `None`: the policy's objective.
        rewind: `"lr"`, `"weights"` or `"none"` (see above). Defaults to
            `"lr"`.
        skip_unpruned_rounds: A round whose threshold prunes no channel is
            evaluated and reported at once, without training epochs (its
            model is the one it started from), and the next round starts in
            the same epoch; so is a retry whose masks are exactly those of an
            earlier failed round from the same model (it takes that round's
            accuracy). `False` trains every round. Defaults to `True`, as in
            `RoundController`.
        verbose: `1` prints one line per round, `0` is silent. Defaults to
            `1`.
        test_data: Labelled data that is only reported: its metric at the
            start and for the final model goes to `test_metrics` (and the
            round log as `test_<metric>`); no decision uses it. Defaults to
            `None`.
        max_fraction: The largest fraction of a group's live channels one
            round may remove (`threshold_masks`); `None` is the paper's rule.
            Defaults to `0.5`.
        round_to: Every group that loses channels keeps a multiple of this
            many, the runtime's channel block (`threshold_masks`). Defaults to `None`.
        run_dir: A directory that makes the pruning durable and resumable
            (see above). Defaults to `None`: states in memory.
        strategy: The `tf.distribute.Strategy` the model was built under;
            every hook runs in its scope (slimmed models are built there),
            and a model built outside it is refused when `fit` starts.
            Defaults to `None`: the strategy in scope when the callback is
            created, or, created outside any scope, the model's own.

    The policy decides on its `metric` (`"accuracy"` unless it says
    otherwise); the model must be compiled with it.

    Attributes:
        records: One dict per completed round (the controller's log format),
            for `tf_asap.rounds.report.rounds_table` and `plot_rounds`.
        best_round: The round the model was left in, once finished.
        threshold_reference: The attention scale of `T = 1`.
        test_metrics: `{"metric", "baseline", "final"}` on `test_data`, or
            `None` without it.

    Raises:
        ConfigurationError: For `epochs_per_round < 1`, missing data, an
            unknown `rewind`, an already used policy, or (at the start of
            `fit`) a model without masks or without an optimizer.

    Example:

    >>> pm = tf_asap.make_prunable(model)
    >>> pm.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> pruning = AdaptivePruning(AccuracyGuaranteed(0.01), x_train[:2000],
    ...                           (x_val, y_val), epochs_per_round=2)
    >>> pm.fit(x_train, y_train, epochs=100, callbacks=[pruning])
    """

    def __init__(
        self,
        policy,
        calibration_data,
        validation_data,
        epochs_per_round,
        criterion="attention",
        objective=None,
        rewind="lr",
        skip_unpruned_rounds=True,
        verbose=1,
        *,
        test_data=None,
        max_fraction=DEFAULT_MAX_FRACTION,
        round_to=None,
        run_dir=None,
        strategy=None,
    ):
        super().__init__()
        self.strategy = chosen_strategy(strategy)
        if not isinstance(policy, Policy):
            raise ConfigurationError(
                "policy must be a tf_asap.pruning.policies policy (AccuracyGuaranteed, "
                f"ParamsTarget or FlopsTarget); received {type(policy).__name__}."
            )
        if policy.history:
            raise ConfigurationError(
                "This policy has already been started; pass a new policy to AdaptivePruning."
            )
        epochs_per_round = check_int(
            "epochs_per_round", epochs_per_round, minimum=1,
            fix="It is the number of training epochs between two pruning rounds.",
        )
        if calibration_data is None:
            raise ConfigurationError(
                "calibration_data is missing: the filters are scored on it. Pass a "
                "few thousand training samples (x or (x, y))."
            )
        if validation_data is None:
            raise ConfigurationError(
                "validation_data is missing: every round's accuracy is measured on "
                "it, and the policy decides on that accuracy. Pass (x_val, y_val) "
                "or a labelled dataset."
            )
        check_choice("rewind", rewind, _REWIND_MODES)
        objective = check_choice(
            "objective", policy.objective if objective is None else objective, ("params", "flops")
        )
        self.policy = policy
        self.calibration_data = calibration_data
        self.validation_data = validation_data
        self.epochs_per_round = epochs_per_round
        self.criterion = resolve_criterion(criterion)
        self.objective = objective
        self.rewind = rewind
        self.skip_unpruned_rounds = bool(skip_unpruned_rounds)
        self.verbose = int(verbose)
        self.test_data = test_data
        self.mask_rules = mask_rules(max_fraction, round_to)
        self.metric, self.mode = policy_metric(policy)
        self.run_dir = None if run_dir is None else os.fspath(run_dir)
        self.records = []
        self.test_metrics = None
        self._journal = None
        self._test = None
        self.best_round = None
        self.threshold_reference = None
        self._states = {}
        self._validation = None
        self._rewind_state = None
        self._threshold = None
        self._pruned = 0
        self._limit = None  # the reduction limit the current round was pruned under
        self._epochs_in_round = 0
        self._round_started = None
        self._finished = False
        self._stopped_in_this_fit = False

    # ---------------------------------------------------------- Keras hooks
    @runs_in_strategy_scope
    def on_train_begin(self, logs=None):
        model = self.model
        if self._finished or (self.policy.history and self._journal is None):
            # A later fit() with a used callback trains without pruning.
            self._finished = True
            return
        if not is_prunable_model(model):
            raise ConfigurationError(
                f"AdaptivePruning needs a model with masks; model '{model.name}' "
                "has none. Train pm = tf_asap.make_prunable(model) instead."
            )
        if getattr(model, "optimizer", None) is None:
            raise ConfigurationError("Compile the model before fit().")
        check_built_in_scope(model, self.strategy)
        self._validation = labelled_batches(self.validation_data, model, name="validation_data")
        if self.test_data is not None:
            self._test = labelled_batches(self.test_data, model, name="test_data")
        if self.run_dir is not None:
            self._journal = RunJournal(self.run_dir, model, self._settings(), bool(self.verbose))
            with self._journal.locked():
                manifest = self._journal.open(self.policy)
            if manifest is not None and manifest.get("policy_state"):
                self._resume(manifest)
                return
        self._start()

    @runs_in_strategy_scope
    def on_epoch_end(self, epoch, logs=None):
        if self._finished or self._threshold is None:
            return
        self._epochs_in_round += 1
        if self._epochs_in_round < self.epochs_per_round:
            return
        decision = self._end_round(self._epochs_in_round)
        if logs is not None:
            logs["pruning_round"] = self.records[-1]["round"]
            logs["pruning_accuracy_drop"] = self.records[-1]["accuracy_drop"]
            logs["pruning_params_left"] = self.records[-1]["params_left"]
        self._carry_out(decision)

    @runs_in_strategy_scope
    def on_train_end(self, logs=None):
        if self._stopped_in_this_fit:
            # Restored again because a stop decided before the first epoch
            # (when the first rounds prune nothing) still lets Keras run
            # that epoch.
            self._restore_round(self.best_round)
            self._stopped_in_this_fit = False
            return
        if self._finished or not self.policy.history:
            return
        # fit() ended before the policy stopped: leave the best accepted round.
        best = self.policy.best_round
        self._restore_round(best)
        self.best_round = best
        self._finished = self._journal is None  # with a run_dir, a later fit resumes
        self._say(
            f"fit() ended before the pruning policy stopped; restored the best "
            f"acceptable round so far, round {best}."
        )

    # ------------------------------------------------------------- helpers
    def _settings(self):
        return {
            "epochs_per_round": self.epochs_per_round,
            "criterion": criterion_name(self.criterion),
            "objective": self.objective,
            "rewind": self.rewind,
            "skip_unpruned_rounds": self.skip_unpruned_rounds,
            "metric": self.metric,
            "mode": self.mode,
            **self.mask_rules,  # max_fraction, round_to
        }

    def _start(self):
        """Round 0: the model as `fit` starts (the baseline)."""
        model = self.model
        started = time.monotonic()
        # What every round rewinds to: the state when training started.
        self._rewind_state = snapshot_state(model)
        if self._journal is not None:
            save_state(self._journal.directory.callback_rewind, self._rewind_state)
        result, cost = evaluate_round(model, self._validation, 0, 0.0, self.metric)
        extra = {}
        if self._test is not None:
            baseline = evaluate_metric(model, self._test, self.metric)
            self.test_metrics = {"metric": self.metric, "baseline": baseline, "final": None}
            extra[f"test_{self.metric}"] = baseline
            if self._journal is not None:
                self._journal.test_metrics = self.test_metrics
        decision = self.policy.start(result)
        if self._journal is None:
            self._states[0] = snapshot_state(model)
        self._log(result, decision, round_record(
            self.policy, result, decision, cost, epochs=0,
            wall_time_s=round(time.monotonic() - started, 3), rewinding=self.rewind, **extra,
        ))
        self._carry_out(decision)

    def _resume(self, manifest):
        """Continues a pruning whose rounds a run directory holds (a restarted fit)."""
        journal = self._journal
        self.policy = journal.resume(manifest)
        self.records = journal.records
        self.threshold_reference = journal.threshold_reference
        self.test_metrics = journal.test_metrics
        self._rewind_state, _ = load_state(journal.directory.callback_rewind)
        decision = self.policy.last_decision
        done = self.policy.history[-1].round
        self._say(
            f"Resuming the pruning in '{journal.path}' after round {done}: next, "
            f"{decision.action}."
        )
        if decision.action == "prune":
            # The last committed round was acceptable (or the baseline): its
            # state is where the next round starts.
            self._restore_round(done)
        self._carry_out(decision)

    def _save_round(self, round_number):
        if self._journal is None:
            self._states[round_number] = snapshot_state(self.model)
        # With a run directory, RunJournal.commit writes the checkpoint.

    def _restore_round(self, round_number):
        if self._journal is None:
            restore_state(self.model, self._states[round_number])
        else:
            self._journal.restore_round(round_number)

    def _end_round(self, epochs, repeat=None):
        """Evaluates the round in progress, tells the policy, keeps its state if acceptable.

        `repeat` is `repeated_round`'s answer for a round that repeats an
        earlier failure: its result is used instead of evaluating.
        """
        model = self.model
        round_number = self.policy.next_round
        if repeat is None:
            result, cost = evaluate_round(
                model, self._validation, round_number, self._threshold, self.metric
            )
        else:
            result, cost, _ = repeat
        decision = self.policy.observe(result)
        if self.policy.acceptable(result):
            self._save_round(round_number)
        self._log(result, decision, round_record(
            self.policy, result, decision, cost,
            epochs=epochs,
            pruned_channels=self._pruned,
            reduction_limit=self._limit,
            wall_time_s=round(time.monotonic() - self._round_started, 3),
            rewinding=self.rewind,
            threshold_reference=self.threshold_reference,
            mask_digest=mask_digest(model),
            repeat_of=None if repeat is None else repeat[2],
        ))
        return decision

    def _stop(self, decision):
        model = self.model
        self._restore_round(decision.best_round)
        self.best_round = decision.best_round
        self._finished = True
        self._stopped_in_this_fit = True
        self._threshold = None
        model.stop_training = True
        if self._test is not None:
            self.test_metrics = dict(
                self.test_metrics or {"metric": self.metric, "baseline": None},
                final=evaluate_metric(model, self._test, self.metric),
                best_round=decision.best_round,
            )
        if self._journal is not None:
            self._journal.test_metrics = self.test_metrics
            with self._journal.locked():
                self._journal.finish(self.policy, decision.best_round, slim(model))
        elif self.test_metrics is not None:
            best = next(r for r in self.records if r["round"] == decision.best_round)
            best[f"test_{self.metric}"] = self.test_metrics["final"]
        self._say(f"Pruning done: best round {decision.best_round}. {decision.reason}")

    def _prune(self, decision):
        """Scores the filters and sets the masks of the decision's threshold."""
        model = self.model
        self._round_started = time.monotonic()
        scores = self.criterion.score(model, self.calibration_data)
        if self.threshold_reference is None:
            self.threshold_reference = measure_threshold_reference(scores, model, self.objective)
            if self._journal is not None:
                self._journal.threshold_reference = self.threshold_reference
                with self._journal.locked():
                    self._journal.write_manifest(self.policy)
        # The trim measures what the policy measures, whatever the thresholds weigh.
        self._limit = self.policy.reduction_limit
        step = prune_filters(
            model, scores, decision.threshold, self.objective, self.threshold_reference,
            max_reduction=self._limit, reduction_objective=self.policy.objective, **self.mask_rules,
        )
        self._threshold = decision.threshold
        self._pruned = step.removed
        self._epochs_in_round = 0
        return step

    def _carry_out(self, decision):
        """Executes the policy's decision and starts the next round."""
        model = self.model
        while True:
            if decision.action == "stop":
                self._stop(decision)
                return
            if decision.action == "rollback":
                self._restore_round(decision.rollback_to)
            step = self._prune(decision)
            if not self.skip_unpruned_rounds:
                break
            if step.removed:
                repeat = repeated_round(
                    self.policy, self.records, model, self.policy.next_round, decision.threshold
                )
                if repeat is None:
                    break
                # The same masks from the same model already failed: its
                # result stands, nothing is retrained (as the controller does).
                decision = self._end_round(0, repeat)
                continue
            # Nothing pruned: the round's model is the one it starts from, so
            # it is evaluated at once instead of trained (as the controller does).
            decision = self._end_round(0)
        if self.rewind != "none":
            restore_state(
                model, self._rewind_state,
                weights=self.rewind == "weights", masks=False, optimizer=True,
            )

    def _log(self, result, decision, record):
        if self._journal is not None:
            with self._journal.locked():
                self._journal.commit(self.policy, result, decision, record)
            self.records = self._journal.records
            return
        self.records.append(record)
        line = format_round_line(record)
        logger.info(line)
        if self.verbose:
            print(line, flush=True)

    def _say(self, text):
        logger.info(text)
        if self.verbose:
            print(text, flush=True)
