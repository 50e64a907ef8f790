"""Iterative pruning with rewinding (Algorithm 1), durable and resumable: `RoundController`.

The paper prunes in rounds. Round 0 is the trained, unpruned model. Every
round `r >= 1` then

1. scores the filters of the current model (activation attention on
   calibration data, Section 3.1),
2. turns the policy's global threshold `T[r]` into masks (Algorithm 3),
   which only ever shrink,
3. rewinds to epoch `k` and retrains for the remaining `T - k` epochs
   (`tf_asap.rounds.retraining`), then evaluates on held-out validation
   data (never the test data, which is only reported),
4. asks the policy (`tf_asap.pruning.policies`) what to do next: prune harder, roll
   back to an earlier round (its weights and masks are restored exactly), or
   stop with the best acceptable round.

The pieces live beside this module: `state` (snapshots), `run_directory`
(files, lock, fingerprint), `journal` (manifest, log, checkpoints, resume),
`step` (one round's pieces, shared with the `fit` callback), `retraining`
(rewind, slim or masked fit, distillation, early rejection, final
fine-tuning), `training` (batches, splits, compiling) and `baseline`
(`train_baseline`); their public names are importable from here too.

A round counts as done once `run.json` records the policy's decision on it;
its checkpoint and log line are written before that. A run started again
with the same directory (after a crash, a kill or Ctrl-C) restores the last
done round's state and carries on with the decision the policy had made, so
no completed round is lost or repeated; a round in flight is redone.
"""

from __future__ import annotations

import logging
import os
import time

import keras

from tf_asap import defaults
from tf_asap.checks import check_choice, check_int
from tf_asap.core.masks import mask_digest
from tf_asap.core.surgery import slim
from tf_asap.errors import ConfigurationError
from tf_asap.rounds.baseline import (
    Baseline, check_rewind_checkpoint, load_rewind_checkpoint, train_baseline,
)
from tf_asap.rounds.final_tuning import FinalStage
from tf_asap.rounds.journal import RunJournal
from tf_asap.rounds.result import PruningResult
from tf_asap.rounds.retraining import Retraining, check_retraining_settings, retraining_settings
from tf_asap.rounds.calibration import pin_calibration
from tf_asap.rounds.placement import builds_in_strategy_scope, prunable_in_scope, runs_in_strategy_scope
from tf_asap.rounds.run_directory import RunDirectory, read_round_log  # noqa: F401 - re-exported
from tf_asap.rounds.threshold_scan import first_threshold
from tf_asap.rounds.state import (  # noqa: F401 - save_state re-exported
    ModelState, load_state, restore_state, save_state, snapshot_state,
)
from tf_asap.rounds.step import (  # noqa: F401 - PruningStep, round_record re-exported
    PruningStep, check_policy, mask_rules, criterion_name, evaluate_metric, evaluate_round,
    measure_threshold_reference, policy_metric, prune_filters, repeated_round, resolve_criterion,
    round_record,
)
from tf_asap.rounds.training import (
    check_verbose, compile_model, default_optimizer, fresh_optimizer, prepare_round_data, require_data,
)

__all__ = [  # RoundController, and the names importable from here before the split
    "Baseline", "ModelState", "PruningResult", "PruningStep", "RoundController", "evaluate_round",
    "load_state", "measure_threshold_reference", "prune_filters", "read_round_log",
    "restore_state", "round_record", "save_state", "snapshot_state", "train_baseline",
]

logger = logging.getLogger("tf_asap")


class RoundController:
    """Runs Algorithm 1: prune, rewind, retrain, evaluate, ask the policy; repeat.

    Everything goes to `run_dir`; a run started again with it resumes after
    the last completed round. At the end the best round is saved as a masked
    and a slimmed `.keras` model and summarised in `report.md` and `rounds.png`.

    The model is compiled with `optimizer`, else the optimizer saved in
    `rewind_checkpoint`, else the paper's recipe (`tf_asap.recipe.paper_optimizer`);
    rewinding resets its `iterations`, hence its schedule, to epoch `rewind_epoch`.

    `T` is relative: a round's attention threshold is `T * reference`, the
    attention scale (`tf_asap.pruning.thresholds.attention_reference`) of the
    unpruned model's scores, stored in `run.json` so `T` means the same in
    every round, resumed or not.

    Args:
        model: The trained model: plain (it is made prunable, a copy) or from
            `make_prunable` (used and modified in place). On resume, any model
            of the same architecture will do: the state comes from `run_dir`.
        policy: A new `tf_asap.pruning.policies` policy (`AccuracyGuaranteed`,
            `ParamsTarget` or `FlopsTarget`). On resume its configuration
            must match the saved one; its state is read from `run_dir`.
        train_data: Training data with labels (arrays `(x, y)`, a
            `tf.data.Dataset`, a generator; see `tf_asap.inputs`). One pass is
            one epoch.
        validation_data: Held-out data with labels: every policy decision and
            the choice of the best round use the metric measured on it.
            Defaults to `None`: a seeded `validation_split` of `train_data`
            is held out (and not retrained on).
        run_dir: The run directory; created if needed. Required.
        epochs: `T`: the length of one full training of this model. Required.
        validation_split: The share of `train_data` held out when
            `validation_data` is not given (see
            `tf_asap.rounds.training.split_validation`). Defaults to `0.1`.
        seed: Seed of that split. Defaults to `0`.
        test_data: Data with labels that is only reported: the baseline's and
            the best round's metric on it go to `PruningResult.test`, the
            manifest, the round log (as `test_<metric>`) and `report.md`.
            The policy never sees it. Defaults to `None`.
        rewind_epoch: `k`, in `[0, epochs)`; each round retrains for
            `epochs - rewind_epoch` epochs. Defaults to `None`: the
            checkpoint's epoch if `rewind_checkpoint` is given, else 60% of
            `epochs`.
        rewind_checkpoint: The state saved at epoch `k` by `train_baseline`
            (`Baseline.rewind_checkpoint`). Given: weight rewinding. Defaults
            to `None`: learning-rate rewinding only (weights stay, the
            optimizer is reset to a fresh state at step `k *
            steps_per_epoch` of its schedule).
        calibration_data: Data the criterion scores filters on (labels
            ignored), chosen once and kept in `run_dir` (`calibration.npz`,
            see `tf_asap.rounds.calibration`). Defaults to `None`: 2048
            samples of `train_data` (a seeded choice among arrays, the
            first of one pass of a dataset).
        criterion: An importance criterion name (`tf_asap.pruning.importance`) or
            object with `score(model, data)`. Defaults to `"attention"`, the
            paper's mean activation with `p = 1`.
        objective: `"params"` or `"flops"`, what the layer-aware thresholds
            weigh layers by. Defaults to `None`: the policy's objective.
        max_fraction: The largest fraction of a group's live channels one
            round may remove (`tf_asap.pruning.thresholds.threshold_masks`);
            `None` is the paper's rule, no cap. Defaults to `0.5`.
        round_to: Every group that loses channels keeps a multiple of this
            many, the runtime's channel block (`threshold_masks`). Defaults to `None`.
        batch_size: Batch size for array data. Defaults to `None`: batched
            data keeps its batches, arrays use 128.
        optimizer: A `keras.optimizers.Optimizer` to retrain with (a fresh
            copy is used). Defaults to `None` (see above).
        loss: A Keras loss. Defaults to `None`: sparse categorical
            cross-entropy, from logits unless the model ends in a softmax.
        callbacks: More Keras callbacks for every retraining `fit` (with
            `retrain="slim"`, their `model` is the slim one). Defaults to `None`.
        retrain: `"slim"` retrains the physically slimmed model and writes
            it back into the masked model (the record in `run_dir`): the same
            function and gradients as `"masked"`, which trains the masked
            model in place as Algorithm 1 is written, at less cost (see
            `tf_asap.rounds.retraining`). Defaults to `"slim"`.
        distillation: Distil from the unpruned model (a frozen copy of round
            0) while retraining: `None`, `True`, a dict with `alpha`,
            `temperature` (and `teacher`) or a `Distillation`. Defaults to
            `None`.
        early_rejection: In rounds of 2 or more epochs, evaluate after each
            epoch and stop the round when `policy.early_reject` says the
            bound is out of reach (logged as `early_rejected`). Defaults to
            `True`.
        final_epochs: Fine-tune the chosen round (chosen on validation data)
            this many epochs after the policy stops: slim, distilled if set,
            a fresh optimizer on a cosine from the initial learning rate to 0
            (`tf_asap.rounds.final_tuning`). Defaults to `0` (off).
        final_max_drop: The largest validation drop of the policy's metric
            the fine-tuned result may show (`0.005`: half a point of
            accuracy); a round that misses it is given up for the next
            smaller accepted round, fine-tuned in turn (`FinalStage`).
            Needs `final_epochs`; may change on resume. Defaults to `None`.
        scan_samples: For `AccuracyGuaranteed(schedule="bisect")`, size round
            1's `T` by a scan of untrained candidate masks on this many
            validation samples (`tf_asap.rounds.threshold_scan`); `0` turns
            it off. Defaults to `512`.
        skip_unpruned_rounds: Do not rewind and retrain a round whose
            threshold prunes no channel: its model is the model it started
            from, so it is only evaluated and reported to the policy (with 0
            epochs in the log). Likewise a retry whose
            masks are exactly those of an earlier failed round from the same
            model (a threshold cliff, see `Policy.repeated_failure`) is not
            retrained: it takes that round's accuracy. `False` retrains
            every round, as Algorithm 1 is written. Defaults to `True`.
        verbose: `0` silent; `1` one line per round and a progress bar while
            retraining; `2` one line per round and per epoch. Defaults to `1`.
        strategy: The `tf.distribute.Strategy` every model and optimizer of
            the run is built under (`tf_asap.rounds.placement`); `model` must
            have been built in its scope. Defaults to `None`: the strategy in
            scope when the controller is created.

    The policy decides on its `metric` (`policy.metric`, default accuracy):
    the model is compiled with it, the log records `validation_<metric>`.
    Checkpoints are bounded (`tf_asap.rounds.journal`); each log line records
    the directory's size (`run_dir_bytes`). Arguments after `epochs` are keyword-only.

    Raises:
        ConfigurationError: For missing training or validation data, an
            already used policy, `epochs < 1`, a rewind epoch beyond training,
            or a rewind checkpoint of another epoch.
        RunDirectoryError: If `run_dir` holds the run of a different model,
            or of other settings.

    Example:

    >>> controller = RoundController(
    ...     model, AccuracyGuaranteed(max_accuracy_drop=0.01),
    ...     (x_train, y_train), run_dir="runs/fmnist", epochs=30,
    ...     test_data=(x_test, y_test))
    >>> result = controller.run()
    >>> result.best["params_reduction"]
    0.74
    """

    @builds_in_strategy_scope
    def __init__(
        self,
        model,
        policy,
        train_data,
        validation_data=None,
        run_dir=None,
        epochs=None,
        *,
        validation_split=defaults.VALIDATION_SPLIT,
        seed=0,
        test_data=None,
        rewind_epoch=None,
        rewind_checkpoint=None,
        calibration_data=None,
        criterion="attention",
        objective=None,
        max_fraction=defaults.MAX_FRACTION,
        round_to=None,
        batch_size=None,
        optimizer=None,
        loss=None,
        callbacks=None,
        retrain=defaults.RETRAIN,
        distillation=None,
        early_rejection=True,
        final_epochs=defaults.FINAL_EPOCHS,
        final_max_drop=None,
        scan_samples=defaults.SCAN_SAMPLES,
        skip_unpruned_rounds=True,
        verbose=1,
        strategy=None,
    ):
        self.strategy = strategy
        check_policy(policy)
        require_data(train_data, "train_data", "every round retrains on it")
        if run_dir is None:
            raise ConfigurationError(
                "run_dir is missing: the controller keeps the round log and the "
                "checkpoints that rollback and resume need in it. Pass a directory path."
            )
        if epochs is None:
            raise ConfigurationError(
                "epochs is missing: pass the length of one full training of this "
                "model (T in Algorithm 1), for example epochs=30."
            )
        self.verbose = check_verbose(verbose)
        self.policy = policy
        self.metric, self.mode = policy_metric(policy)
        self.objective = check_choice(
            "objective", policy.objective if objective is None else objective, ("params", "flops")
        )
        self.mask_rules = mask_rules(max_fraction, round_to)
        self.criterion = resolve_criterion(criterion)
        self.callbacks = list(callbacks or [])
        self.retrain, self.distillation, self.early_rejection, self.final_epochs = (
            check_retraining_settings(retrain, distillation, early_rejection, final_epochs)
        )
        self.final_stage = FinalStage(self.final_epochs, final_max_drop)
        self.scan_samples = check_int("scan_samples", scan_samples, minimum=0, fix="0 disables the scan.")
        self.skip_unpruned_rounds = bool(skip_unpruned_rounds)
        self._rewind_weights, rewind_metadata, self.epochs, self.rewind_epoch = (
            load_rewind_checkpoint(rewind_checkpoint, epochs, rewind_epoch)
        )
        self.rewinding = "weights" if rewind_checkpoint is not None else "lr"
        self.model = prunable_in_scope(model, strategy)
        data = prepare_round_data(
            self.model, train_data, validation_data=validation_data,
            validation_split=validation_split, seed=seed, test_data=test_data,
            calibration_data=calibration_data, batch_size=batch_size,
        )
        self.train, self.validation, self.test = data.train, data.validation, data.test
        self.calibration, self.steps_per_epoch = None, data.steps_per_epoch  # pinned by run()
        self._calibration_source = (data.calibration, self.model, data.calibration_samples, seed,
                                    batch_size)
        if optimizer is not None:
            optimizer = fresh_optimizer(optimizer)
        elif rewind_metadata and rewind_metadata.get("optimizer"):
            optimizer = keras.optimizers.deserialize(rewind_metadata["optimizer"])
        else:
            optimizer = default_optimizer(self.epochs, self.steps_per_epoch)
        compile_model(self.model, optimizer, loss, self.metric)
        if self._rewind_weights is not None:
            check_rewind_checkpoint(self.model, self._rewind_weights, rewind_checkpoint)
        self.settings = self._settings(data.validation_source)
        self.journal = RunJournal(run_dir, self.model, self.settings, verbose=bool(self.verbose))
        self.run_dir = self.journal.directory
        self.fingerprint = self.journal.fingerprint
        self.retraining = Retraining(
            self.model, self.run_dir, data, epochs=self.epochs, rewind_epoch=self.rewind_epoch,
            rewinding=self.rewinding, metric=self.metric, retrain=self.retrain,
            distillation=self.distillation, early_rejection=self.early_rejection,
            callbacks=self.callbacks, verbose=self.verbose,
        )

    # ------------------------------------------------------------ set-up
    def _settings(self, validation_source):
        """What a resumed run must share with the run it resumes."""
        return {
            "epochs": self.epochs,
            "rewind_epoch": self.rewind_epoch,
            "retrain_epochs": self.epochs - self.rewind_epoch,
            "rewinding": self.rewinding,
            "steps_per_epoch": self.steps_per_epoch,
            "criterion": criterion_name(self.criterion),
            "objective": self.objective,
            "metric": self.metric,
            "mode": self.mode,
            **self.mask_rules,  # max_fraction, round_to
            "validation": validation_source,
            "optimizer": type(self.model.optimizer).__name__,
            "skip_unpruned_rounds": self.skip_unpruned_rounds,
            "final_epochs": self.final_epochs,
            "scan_samples": self.scan_samples,
            **retraining_settings(self.retrain, self.distillation, self.early_rejection),
        }

    # ------------------------------------------------------------- the run
    @runs_in_strategy_scope
    def run(self) -> PruningResult:
        """Runs (or resumes) the rounds until the policy stops.

        Returns:
            A `PruningResult` with the best round's masked and slimmed models.

        Raises:
            RunDirectoryError: If `run_dir` belongs to another model or other
                settings, is damaged, or is in use by another process.
        """
        try:
            with self.run_dir.locked():
                manifest = self.journal.open(self.policy)
                self.calibration = pin_calibration(self.run_dir.calibration, *self._calibration_source)
                decision = self._resume_or_start(manifest)
                while decision.action != "stop":
                    decision = self._run_round(decision)
                return self._finish(decision)
        except KeyboardInterrupt:
            self._say(
                f"Interrupted. Completed rounds are saved in '{self.journal.path}'; "
                "run again with the same run_dir to resume."
            )
            raise
        finally:
            self.journal.close()

    def restore_round(self, round_number):
        """Restores the saved weights and masks of round 0, the best round or
        one a rollback can reach; `RunDirectoryError` if it has no checkpoint."""
        self.journal.restore_round(round_number)

    def _resume_or_start(self, manifest):
        if manifest is not None and manifest.get("policy_state"):
            return self._resume(manifest)
        # Round 0: the trained model as it is (Algorithm 1, lines 1-3).
        self.retraining.prepare_rewind_state(self._rewind_weights)
        started = time.monotonic()
        self.retraining.restore_rewind(weights=False)
        result, cost = evaluate_round(self.model, self.validation, 0, 0.0, self.metric)
        extra = {}
        if self.test is not None:
            baseline = evaluate_metric(self.model, self.test, self.metric)
            self.journal.test_metrics = {"metric": self.metric, "baseline": baseline, "final": None}
            extra[f"test_{self.metric}"] = baseline
        first = first_threshold(  # round 1's T from the sensitivity scan, or None
            self.model, self.policy, self.journal, manifest, self._scores, self.validation,
            objective=self.objective, samples=self.scan_samples, **self.mask_rules,
        )
        decision = self.policy.start(result, initial_threshold=first)
        record = round_record(
            self.policy, result, decision, cost, epochs=0,
            wall_time_s=round(time.monotonic() - started, 3), rewinding=self.rewinding,
            **extra,
        )
        self.journal.commit(self.policy, result, decision, record)
        return decision

    def _resume(self, manifest):
        self.policy = self.journal.resume(manifest)
        done = self.policy.history[-1].round
        kept = self.journal.records
        decision = self.policy.last_decision
        following = f" round {self.policy.next_round}" if decision.action != "stop" else ""
        self._say(f"Resuming '{self.journal.path}' after round {done} "
                  f"({len(kept)} completed rounds): next, {decision.action}{following}.")
        if decision.action == "prune":
            # The last completed round was acceptable (or the baseline): its
            # state is where the next round starts.
            self.restore_round(done)
        return decision

    # --------------------------------------------------------------- rounds
    def _run_round(self, decision):
        started = time.monotonic()
        if decision.action == "rollback":
            # Algorithm 1, line 10: back to the last acceptable round.
            self.restore_round(decision.rollback_to)
        round_number = self.policy.next_round
        threshold = decision.threshold
        limit = self.policy.reduction_limit  # a target's window or a trimmed retry's
        step = self._prune(threshold)
        retrain_epochs = self.epochs - self.rewind_epoch
        repeat, early_rejected = None, None
        if step.removed and self.skip_unpruned_rounds:
            repeat = repeated_round(
                self.policy, self.journal.records, self.model, round_number, threshold
            )
        if repeat is not None:
            # The same masks from the same model already failed: the same
            # experiment, so its result stands and nothing is retrained.
            result, cost, repeat_of = repeat
            retrain_epochs = 0
            self._say(
                f"round {round_number:3d}: T={threshold:.4g} pruned exactly what "
                f"round {repeat_of} pruned from this model; reusing its result"
            )
        elif step.removed or not self.skip_unpruned_rounds:
            self._say(
                f"round {round_number:3d}: T={threshold:.4g} pruned {step.removed} "
                f"channel(s); retraining {retrain_epochs} epoch(s) ({self.retrain})"
            )
            outcome = self.retraining.retrain_round(self.policy, retrain_epochs)
            retrain_epochs, early_rejected = outcome.epochs, outcome.early_rejected
        else:
            # Nothing pruned: the round's model is the model it starts from,
            # so retraining it would only train the same model longer.
            retrain_epochs = 0
        if repeat is None:
            result, cost = evaluate_round(
                self.model, self.validation, round_number, threshold, self.metric
            )
        decision = self.policy.observe(result)
        record = round_record(
            self.policy, result, decision, cost, epochs=retrain_epochs,
            pruned_channels=step.removed, reduction_limit=limit,
            wall_time_s=round(time.monotonic() - started, 3), rewinding=self.rewinding,
            threshold_reference=self.journal.threshold_reference, mask_digest=mask_digest(self.model),
            repeat_of=None if repeat is None else repeat[2], early_rejected=early_rejected,
        )
        self.journal.commit(self.policy, result, decision, record)
        return decision

    def _scores(self):
        """Scores the filters; the first scores of a run fix the threshold reference."""
        scores = self.criterion.score(self.model, self.calibration)
        if self.journal.threshold_reference is None:
            self.journal.threshold_reference = measure_threshold_reference(
                scores, self.model, self.objective
            )
            # Persisted before use, so a resumed run prunes on the same scale.
            self.journal.write_manifest(self.policy)
        return scores

    def _prune(self, threshold):
        """Scores the filters and sets this round's masks (Algorithm 1, line 5)."""
        scores = self._scores()
        return prune_filters(  # the trim is priced in the policy's objective
            self.model, scores, threshold, self.objective, self.journal.threshold_reference,
            max_reduction=self.policy.reduction_limit, reduction_objective=self.policy.objective,
            **self.mask_rules,
        )

    def _finish(self, decision):
        best, tuning = decision.best_round, None
        self.restore_round(best)
        if self.final_epochs:
            best, tuning = self.final_stage.run(self.model, self.retraining, self.journal, self.policy,
                                                best, self.validation, self.test, self._say)
        slim_model = slim(self.model)
        test = self.journal.test_metrics
        if self.test is not None:
            test = dict(test or {"metric": self.metric, "baseline": None})
            test.update(final=evaluate_metric(self.model, self.test, self.metric), best_round=best)
            self.journal.test_metrics = test
        self.journal.finish(self.policy, best, slim_model)
        self._say(f"Done: best round {best}. {decision.reason}")
        return PruningResult(
            self.model, slim_model, best, list(self.journal.records), self.journal.path,
            test=test, final_tuning=tuning,
        )

    def _say(self, text):
        logger.info(text)
        if self.verbose:
            print(text, flush=True)
