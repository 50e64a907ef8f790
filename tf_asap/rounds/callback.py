"""Adaptive pruning inside an ordinary `model.fit`: the `AdaptivePruning` callback.

The callback is the second front door to Algorithm 1 (the first is
`tf_asap.rounds.controller.RoundController`). Both run the same steps with the same
code: `prune_filters` (scores -> layer-aware thresholds -> masks that only
shrink), `evaluate_round`, `snapshot_state` / `restore_state` for rewinding
and rollback, and a `tf_asap.pruning.policies` policy that decides. The callback
keeps its round states in memory instead of a run directory, and counts a
round in epochs of the `fit` call instead of `T - k` epochs of a schedule.
"""

from __future__ import annotations

import logging
import time

import keras

from tf_asap.core.masks import is_prunable_model, mask_digest
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies import Policy
from tf_asap.rounds.state import restore_state, snapshot_state
from tf_asap.rounds.step import (
    evaluate_round,
    format_round_line,
    measure_threshold_reference,
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
    is restored, so the model is always left in an accepted state. The
    states of acceptable rounds are kept in memory (one copy of the weights
    and optimizer variables each); use `RoundController` for large models or
    long runs that must survive a crash.

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

    Attributes:
        records: One dict per completed round (the controller's log format),
            for `tf_asap.rounds.report.rounds_table` and `plot_rounds`.
        best_round: The round the model was left in, once finished.
        threshold_reference: The attention scale of `T = 1`.

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
    ):
        super().__init__()
        if not isinstance(policy, Policy):
            raise ConfigurationError(
                "policy must be a tf_asap.pruning.policies policy (AccuracyGuaranteed, "
                f"ParamsTarget or FlopsTarget); received {type(policy).__name__}."
            )
        if policy.history:
            raise ConfigurationError(
                "This policy has already been started; pass a new policy to AdaptivePruning."
            )
        if (
            isinstance(epochs_per_round, bool)
            or not isinstance(epochs_per_round, int)
            or epochs_per_round < 1
        ):
            raise ConfigurationError(
                "epochs_per_round must be an integer >= 1 (the epochs of training "
                f"between two pruning rounds); received {epochs_per_round!r}."
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
        if rewind not in _REWIND_MODES:
            raise ConfigurationError(
                f"rewind must be one of {_REWIND_MODES}; received {rewind!r}."
            )
        objective = policy.objective if objective is None else objective
        if objective not in ("params", "flops"):
            raise ConfigurationError(
                f"objective must be 'params' or 'flops'; received {objective!r}."
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
        self.records = []
        self.best_round = None
        self.threshold_reference = None
        self._states = {}
        self._validation = None
        self._rewind_state = None
        self._threshold = None
        self._pruned = 0
        self._epochs_in_round = 0
        self._round_started = None
        self._finished = False
        self._stopped_in_this_fit = False

    # ---------------------------------------------------------- Keras hooks
    def on_train_begin(self, logs=None):
        model = self.model
        if self.policy.history:
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
        started = time.monotonic()
        self._validation = labelled_batches(self.validation_data, model, name="validation_data")
        # What every round rewinds to: the state when training started.
        self._rewind_state = snapshot_state(model)
        result, cost = evaluate_round(model, self._validation, 0, 0.0)
        decision = self.policy.start(result)
        self._states[0] = snapshot_state(model)
        self._log(round_record(
            self.policy, result, decision, cost, epochs=0,
            wall_time_s=round(time.monotonic() - started, 3), rewinding=self.rewind,
        ))
        self._carry_out(decision)

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

    def on_train_end(self, logs=None):
        if self._stopped_in_this_fit:
            # Restored again because a stop decided before the first epoch
            # (when the first rounds prune nothing) still lets Keras run
            # that epoch.
            restore_state(self.model, self._states[self.best_round])
            self._stopped_in_this_fit = False
            return
        if self._finished or not self.policy.history:
            return
        # fit() ended before the policy stopped: leave the best accepted round.
        best = self.policy.best_round
        restore_state(self.model, self._states[best])
        self.best_round = best
        self._finished = True
        self._say(
            f"fit() ended before the pruning policy stopped; restored the best "
            f"acceptable round so far, round {best}."
        )

    # ------------------------------------------------------------- helpers
    def _end_round(self, epochs, repeat=None):
        """Evaluates the round in progress, tells the policy, keeps its state if acceptable.

        `repeat` is `repeated_round`'s answer for a round that repeats an
        earlier failure: its result is used instead of evaluating.
        """
        model = self.model
        round_number = self.policy.next_round
        if repeat is None:
            result, cost = evaluate_round(model, self._validation, round_number, self._threshold)
        else:
            result, cost, _ = repeat
        decision = self.policy.observe(result)
        if self.policy.acceptable(result):
            self._states[round_number] = snapshot_state(model)
        self._log(round_record(
            self.policy, result, decision, cost,
            epochs=epochs,
            pruned_channels=self._pruned,
            wall_time_s=round(time.monotonic() - self._round_started, 3),
            rewinding=self.rewind,
            threshold_reference=self.threshold_reference,
            mask_digest=mask_digest(model),
            repeat_of=None if repeat is None else repeat[2],
        ))
        return decision

    def _carry_out(self, decision):
        """Executes the policy's decision and starts the next round."""
        model = self.model
        while True:
            if decision.action == "stop":
                restore_state(model, self._states[decision.best_round])
                self.best_round = decision.best_round
                self._finished = True
                self._stopped_in_this_fit = True
                self._threshold = None
                model.stop_training = True
                self._say(f"Pruning done: best round {decision.best_round}. {decision.reason}")
                return
            if decision.action == "rollback":
                restore_state(model, self._states[decision.rollback_to])
            self._round_started = time.monotonic()
            scores = self.criterion.score(model, self.calibration_data)
            if self.threshold_reference is None:
                self.threshold_reference = measure_threshold_reference(scores, model, self.objective)
            limit = self.policy.reduction_limit if self.objective == self.policy.objective else None
            step = prune_filters(
                model, scores, decision.threshold, self.objective, self.threshold_reference,
                max_reduction=limit,
            )
            self._threshold = decision.threshold
            self._pruned = step.removed
            self._epochs_in_round = 0
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

    def _log(self, record):
        self.records.append(record)
        line = format_round_line(record)
        logger.info(line)
        if self.verbose:
            print(line, flush=True)

    def _say(self, text):
        logger.info(text)
        if self.verbose:
            print(text, flush=True)
