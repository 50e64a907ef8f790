"""One round's retraining (Algorithm 1, lines 6-8), and the final fine-tuning of the result.

`Retraining` owns what happens between a round's masks and its evaluation:

1. **Rewind** (lines 6-7): the optimizer, learning-rate schedule included,
   goes back to its state at epoch `k` (`rewind.npz` in the run directory);
   with weight rewinding the surviving weights go back to epoch `k` too.
2. **Fit** for the remaining `T - k` epochs, either
   - `retrain="slim"` (the default): the physically slimmed model trains
     (`tf_asap.rounds.slim_training`), started from the rewound state sliced
     to the kept channels, and its values are written back into the masked
     model, which stays the record of the run directory (rollback and resume
     restore masked states, as before). Slim and masked training compute the
     same function and the same gradients, so this only saves time; or
   - `retrain="masked"`: the masked model trains in place, as Algorithm 1 is
     written (every pruned channel still costs its FLOPs).
3. Optionally **distil** from the unpruned model (`distillation=`, see
   `tf_asap.rounds.distillation`): the teacher is a frozen, slimmed copy of
   round 0. For training arrays, the teacher's outputs are computed once and
   reused by every round.
4. **Reject early** (`early_rejection=True`; not in the paper): when a round
   retrains for two epochs or more, the policy's metric is measured on the
   validation data after every epoch but the last, and the round stops as
   soon as `Policy.early_reject` says it can no longer reach the bound. The
   round is then evaluated and reported as it stands.

`fine_tune` trains the chosen model once more after the rounds (see its
docstring for the learning rate).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import keras
import numpy as np

from tf_asap import defaults
from tf_asap.checks import check_bool, check_choice, check_int
from tf_asap.core.surgery import slim
from tf_asap.rounds.distillation import Distiller, TeacherOutputs, distillation_config
from tf_asap.rounds.slim_training import train_slim
from tf_asap.rounds.state import (
    ModelState,
    built_optimizer,
    load_state,
    restore_state,
    save_state,
    snapshot_state,
)
from tf_asap.rounds.step import read_metric

__all__ = [
    "RETRAIN_MODES", "Retraining", "RetrainingOutcome", "check_retraining_settings",
    "retraining_settings",
]

RETRAIN_MODES = ("slim", "masked")


def check_retraining_settings(retrain, distillation, early_rejection, final_epochs):
    """Validates the retraining arguments of the controller.

    Returns:
        `(retrain, Distillation or None, early_rejection, final_epochs)`.

    Raises:
        ConfigurationError: For a value outside its range, naming the fix.
    """
    retrain = check_choice(
        "retrain", retrain, RETRAIN_MODES,
        fix="'slim' trains the physically smaller model (faster, same function); "
        "'masked' trains the masked model in place, as Algorithm 1 is written.",
    )
    distillation = distillation_config(distillation)
    early_rejection = check_bool(
        "early_rejection", early_rejection,
        fix="Pass True to stop rounds that cannot reach the bound, False to retrain every round fully.",
    )
    final_epochs = check_int(
        "final_epochs", final_epochs, minimum=0,
        fix="Pass 0 to keep the best round as it is, or the epochs to fine-tune it, e.g. 2.",
    )
    return retrain, distillation, early_rejection, final_epochs


def retraining_settings(retrain, distillation, early_rejection):
    """The retraining part of the run settings (a resumed run must share them)."""
    if distillation is not None:
        teacher = distillation.teacher
        distillation = {
            "alpha": distillation.alpha, "temperature": distillation.temperature,
            "teacher": "round 0" if teacher is None else f"given: {teacher.name}",
        }
    return {"retrain": retrain, "distillation": distillation, "early_rejection": early_rejection}


@dataclasses.dataclass(frozen=True)
class RetrainingOutcome:
    """What one round's retraining did.

    Attributes:
        epochs: Epochs actually trained.
        early_rejected: Whether the round was stopped by early rejection.
    """

    epochs: int
    early_rejected: bool = False


class _EarlyRejection(keras.callbacks.Callback):
    """Measures the policy's metric after each epoch but the last; stops a hopeless round."""

    def __init__(self, policy, validation, metric, first_epoch, epochs_total):
        super().__init__()
        self.policy, self.validation, self.metric = policy, validation, metric
        self.first_epoch, self.epochs_total = first_epoch, epochs_total
        self.epochs_done, self.rejected = 0, False

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_done = epoch + 1 - self.first_epoch
        if self.epochs_done >= self.epochs_total:
            return  # the controller evaluates the finished round itself
        logs = self.model.evaluate(self.validation, verbose=0, return_dict=True)
        value = read_metric(logs, self.metric)
        if self.policy.early_reject(value, self.epochs_done, self.epochs_total):
            self.rejected = True
            self.model.stop_training = True


class Retraining:
    """Rewinds and retrains the rounds of one run (see the module docstring).

    Args:
        model: The compiled masked model of the run.
        run_dir: The run's `RunDirectory` (its `rewind` file and round-0
            checkpoint are read).
        data: The run's `RoundData`.
        epochs: `T`, the length of one full training.
        rewind_epoch: `k`.
        rewinding: `"weights"` or `"lr"`.
        metric: The policy's metric name.
        retrain: `"slim"` or `"masked"`. Defaults to `"slim"`.
        distillation: A `Distillation` or `None`. Defaults to `None`.
        early_rejection: Whether to stop hopeless rounds early. Defaults to
            `True`.
        callbacks: Keras callbacks for every fit. Defaults to `()`.
        verbose: Keras' fit verbosity. Defaults to `0`.
    """

    def __init__(self, model, run_dir, data, *, epochs, rewind_epoch, rewinding, metric,
                 retrain=defaults.RETRAIN, distillation=None, early_rejection=True, callbacks=(), verbose=0):
        self.model, self.run_dir, self.data = model, run_dir, data
        self.epochs, self.rewind_epoch, self.rewinding = epochs, rewind_epoch, rewinding
        self.metric, self.retrain = metric, retrain
        self.distillation, self.early_rejection = distillation, early_rejection
        self.callbacks, self.verbose = list(callbacks), verbose
        self._teacher = None
        self._teacher_outputs = None

    # ------------------------------------------------------------ rewinding
    def prepare_rewind_state(self, rewind_weights):
        """Saves what every round rewinds to (`rewind.npz`), once per run.

        Args:
            rewind_weights: The `ModelState` of epoch `k` (weight rewinding),
                or `None` for learning-rate rewinding.
        """
        path = self.run_dir.rewind
        if os.path.exists(path):
            return
        state = rewind_weights
        if state is None:
            # Learning-rate rewinding of a trained model without a checkpoint:
            # the freshly compiled optimizer, positioned at epoch k of its
            # schedule (the schedule is a function of optimizer.iterations).
            built_optimizer(self.model).iterations.assign(
                self.rewind_epoch * self.data.steps_per_epoch
            )
            state = ModelState([], snapshot_state(self.model).optimizer)
        save_state(path, state, {"epoch": self.rewind_epoch, "rewinding": self.rewinding})

    def rewind_state(self):
        """The `ModelState` a round starts from: epoch `k`'s optimizer (and weights)."""
        state, _ = load_state(self.run_dir.rewind)
        if self.rewinding != "weights":
            state = ModelState([], state.optimizer)
        return state

    def restore_rewind(self, weights):
        """Rewinds the masked model's optimizer, and with `weights` its weights, to epoch k.

        Algorithm 1, lines 6-7: the surviving filters go back to their values
        at epoch k (the masks stay the new round's), and the learning-rate
        schedule with the optimizer state goes back to epoch k.
        """
        state, _ = load_state(self.run_dir.rewind)
        restore_state(self.model, state, weights=weights and bool(state.weights), masks=False)

    # ------------------------------------------------------------- training
    def retrain_round(self, policy, epochs_total):
        """Rewinds and retrains the current round for `epochs_total = T - k` epochs.

        Args:
            policy: The running policy (asked `early_reject` after each epoch).
            epochs_total: Epochs the round retrains for.

        Returns:
            A `RetrainingOutcome`.
        """
        monitor = None
        callbacks = list(self.callbacks)
        if self.early_rejection and epochs_total >= 2:
            monitor = _EarlyRejection(
                policy, self.data.validation, self.metric, self.rewind_epoch, epochs_total
            )
            callbacks.append(monitor)
        fit = dict(
            epochs=self.epochs, initial_epoch=self.rewind_epoch, callbacks=callbacks,
            verbose=min(self.verbose, 2), shuffle=False,  # see training_batches
        )
        if self.retrain == "slim":
            train_slim(
                self.model, self._training_data(), state=self.rewind_state(),
                optimizer=self.model.optimizer, loss=self.model.loss, metrics=[self.metric],
                trainer=self._trainer(), **fit,
            )
        else:
            self.restore_rewind(weights=self.rewinding == "weights")
            trainer = self._trainer()
            model = self.model if trainer is None else trainer(self.model)
            if model is not self.model:
                model.compile(optimizer=self.model.optimizer, loss=self.model.loss, metrics=[self.metric])
            model.fit(self._training_data(), **fit)
        if monitor is None:
            return RetrainingOutcome(epochs_total)
        return RetrainingOutcome(monitor.epochs_done or epochs_total, monitor.rejected)

    def fine_tune(self, epochs):
        """Fine-tunes the chosen (restored) model for `epochs` epochs, slim, then writes back.

        A fresh optimizer of the run's kind, whose learning rate decays on a
        cosine from the run's initial learning rate (step 0 of its schedule)
        to zero over the `epochs` epochs: a warm restart. The chosen model is
        much smaller than the one the schedule was made for and every round
        removed a block of filters at once, so it gains from a high rate that
        anneals again. Measured on the shipped Fashion-MNIST baseline, one
        seed: 70% of params removed, 6 epochs on 54,000 images, cosine from
        0.05 ends 0.80 points under the baseline's test accuracy where cosine
        from 0.01 (with distillation) ends 1.26 under (benchmarks/RESULTS.md,
        "Final fine-tuning"). Distillation is used when configured.

        Args:
            epochs: Epochs to train, `>= 1`.
        """
        steps = self.data.steps_per_epoch
        rate = self.fine_tuning_learning_rate()
        optimizer = _with_learning_rate(
            self.model.optimizer, keras.optimizers.schedules.CosineDecay(rate, epochs * steps)
        )
        train_slim(
            self.model, self._training_data(), state=None, optimizer=optimizer,
            loss=self.model.loss, metrics=[self.metric], trainer=self._trainer(),
            epochs=epochs, callbacks=list(self.callbacks), verbose=min(self.verbose, 2),
            shuffle=False,
        )

    def fine_tuning_learning_rate(self):
        """The learning rate the final fine-tuning starts from: step 0 of the run's schedule."""
        return self._learning_rate_at(0)

    def rewind_learning_rate(self):
        """The learning rate at epoch `k` of the run's optimizer schedule."""
        return self._learning_rate_at(self.rewind_epoch * self.data.steps_per_epoch)

    def _learning_rate_at(self, step):
        rate = self.model.optimizer.get_config()["learning_rate"]
        if isinstance(rate, dict):  # a serialized LearningRateSchedule
            schedule = keras.optimizers.schedules.deserialize(rate)
            return float(schedule(step))
        return float(np.asarray(rate))

    # ---------------------------------------------------------- distillation
    def _trainer(self):
        """`trainer(student) -> Distiller` when distilling, else `None`."""
        config = self.distillation
        if config is None:
            return None
        return functools.partial(
            Distiller, teacher=self.teacher(), alpha=config.alpha, temperature=config.temperature
        )

    def teacher(self):
        """The teacher: the user's, or a frozen slimmed copy of round 0's model."""
        if self._teacher is None:
            teacher = self.distillation.teacher
            if teacher is None:
                copy = keras.models.clone_model(self.model)
                state, _ = load_state(self.run_dir.checkpoint(0))
                restore_state(copy, state, optimizer=False)
                teacher = slim(copy)
            teacher.trainable = False
            self._teacher = teacher
        return self._teacher

    def _training_data(self):
        """The training batches; with distillation on arrays, with cached teacher outputs."""
        arrays = self.data.train_arrays
        if self.distillation is None or arrays is None or len(arrays) != 2:
            return self.data.train
        if self._teacher_outputs is None:
            self._teacher_outputs = TeacherOutputs(self.teacher())
        x, y = arrays
        return self._teacher_outputs.dataset(
            x, y, batch_size=self.data.batch_size, shuffle=True, seed=self.data.seed
        )


def _with_learning_rate(optimizer, learning_rate):
    """A new, unbuilt optimizer like `optimizer` with another learning rate (or schedule)."""
    config = optimizer.get_config()
    config["learning_rate"] = learning_rate
    return type(optimizer).from_config(config)
