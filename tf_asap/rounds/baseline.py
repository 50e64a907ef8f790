"""`train_baseline`: the trained model and the epoch-`k` checkpoint that weight rewinding needs.

Algorithm 1, lines 1-3: train for `k` epochs, keep the state, train to the
end. The result goes to the run directory's `baseline/` folder, so a script
re-run after a crash reuses it instead of training again.
"""

from __future__ import annotations

import dataclasses
import os

import keras

from tf_asap.errors import ConfigurationError, RunDirectoryError
from tf_asap.files import atomic_save_model, atomic_write_json
from tf_asap.rounds.placement import builds_in_strategy_scope, prunable_in_scope, writing_directory
from tf_asap.rounds.run_directory import (
    BASELINE_DIR,
    BASELINE_INFO_NAME,
    BASELINE_MODEL_NAME,
    REWIND_NAME,
    model_fingerprint,
    read_json,
)
from tf_asap.rounds.state import (
    built_optimizer,
    check_state_fits,
    load_state,
    optimizer_variable_name,
    save_state,
    snapshot_state,
)
from tf_asap.rounds.step import read_metric
from tf_asap.rounds.training import (
    check_epochs,
    check_verbose,
    compile_model,
    default_optimizer,
    fresh_optimizer,
    labelled_batches,
    require_data,
    steps_per_epoch,
    training_batches,
)

__all__ = ["Baseline", "check_rewind_checkpoint", "load_rewind_checkpoint", "train_baseline"]


@dataclasses.dataclass
class Baseline:
    """A trained baseline and its rewind checkpoint (Algorithm 1, lines 1-3).

    Attributes:
        model: The trained model, prunable (every mask one) and compiled.
        rewind_checkpoint: Path of the state saved at `rewind_epoch`
            (weights and optimizer), for weight rewinding.
        final_model_path: Path of the trained model (`.keras`).
        epochs: Length of the training, `T`.
        rewind_epoch: `k`.
        accuracy: Validation accuracy of the trained model.
        history: `keras.callbacks.History.history` of the training (`{}`
            when an earlier run's baseline was reused).
    """

    model: keras.Model
    rewind_checkpoint: str
    final_model_path: str
    epochs: int
    rewind_epoch: int
    accuracy: float
    history: dict


class _SaveRewindState(keras.callbacks.Callback):
    """Saves weights and optimizer state once `rewind_epoch` epochs are done."""

    def __init__(self, path, rewind_epoch, metadata):
        super().__init__()
        self.path = path
        self.rewind_epoch = rewind_epoch
        self.metadata = metadata

    def _save(self, epoch):
        save_state(self.path, snapshot_state(self.model), dict(self.metadata, epoch=epoch))

    def on_train_begin(self, logs=None):
        if self.rewind_epoch == 0:
            self._save(0)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.rewind_epoch:
            self._save(self.rewind_epoch)


@builds_in_strategy_scope
def train_baseline(
    model,
    train_data,
    validation_data,
    epochs,
    run_dir,
    rewind_epoch=None,
    batch_size=None,
    optimizer=None,
    loss=None,
    callbacks=None,
    verbose=1,
    *,
    strategy=None,
):
    """Trains a model from scratch and keeps the weights of epoch `k` for rewinding.

    Algorithm 1, lines 1-3: train for `k` epochs and save the weights (and,
    here, the optimizer state, whose iteration count positions the
    learning-rate schedule), then train to the end. The model is made
    prunable first (all masks one; the overhead is within noise), so that
    the checkpoint restores into the pruning rounds' model exactly.

    If `run_dir` already holds a finished baseline of the same architecture,
    it is loaded instead of trained again, so that a script re-run after a
    crash resumes without retraining.

    Args:
        model: An untrained functional or Sequential `keras.Model` (or one
            from `make_prunable`).
        train_data: Training data with labels: `(x, y)` arrays, a
            `tf.data.Dataset`, or a generator (see `tf_asap.inputs`). One
            pass is one epoch.
        validation_data: Validation data with labels.
        epochs: Epochs of training, `T`.
        run_dir: Directory of the pruning run; the baseline goes to its
            `baseline/` subdirectory.
        rewind_epoch: `k`, the epoch whose state is saved, in `[0, epochs)`.
            Defaults to `None`: 60% of `epochs` (appendix A.1).
        batch_size: Batch size for array data. Defaults to `None`: batched
            data keeps its batches, arrays use 128.
        optimizer: A `keras.optimizers.Optimizer` (a fresh copy is used).
            Defaults to `None`: the paper's recipe,
            `tf_asap.recipe.paper_optimizer(epochs, steps_per_epoch)`.
        loss: A Keras loss. Defaults to `None`: sparse categorical
            cross-entropy, from logits unless the model ends in a softmax.
        callbacks: More Keras callbacks for `fit`. Defaults to `None`.
        verbose: `0` silent, `1` progress bar, `2` one line per epoch.
            Defaults to `1`.
        strategy: The `tf.distribute.Strategy` to train on; the model and
            its optimizer are built under it, and only the chief worker
            writes `run_dir`. Defaults to `None`: the strategy in scope.

    Returns:
        A `Baseline`.

    Raises:
        ConfigurationError: For a missing validation set, `epochs < 1` or a
            rewind epoch beyond training.
        RunDirectoryError: If `run_dir` holds the baseline of another model.

    Example:

    >>> baseline = train_baseline(model, (x, y), (x_val, y_val), epochs=30,
    ...                           run_dir="runs/fmnist")
    >>> controller = RoundController(baseline.model, AccuracyGuaranteed(0.01),
    ...     (x, y), (x_val, y_val), run_dir="runs/fmnist", epochs=30,
    ...     rewind_checkpoint=baseline.rewind_checkpoint)
    """
    require_data(train_data, "train_data", "the baseline must be trained on something")
    require_data(
        validation_data, "validation_data", "the baseline accuracy is measured on it"
    )
    epochs, rewind_epoch = check_epochs(epochs, rewind_epoch)
    verbose = check_verbose(verbose)
    pm = prunable_in_scope(model, strategy)
    directory = os.path.join(writing_directory(os.fspath(run_dir), strategy), BASELINE_DIR)
    paths = {
        "rewind": os.path.join(directory, REWIND_NAME),
        "model": os.path.join(directory, BASELINE_MODEL_NAME),
        "info": os.path.join(directory, BASELINE_INFO_NAME),
    }
    if os.path.exists(paths["info"]):
        return _reuse_baseline(pm, directory, paths, epochs, rewind_epoch, verbose)

    train = training_batches(train_data, pm, batch_size, "train_data")
    validation = labelled_batches(validation_data, pm, batch_size, "validation_data")
    steps = steps_per_epoch(train, "train_data")
    optimizer = (
        default_optimizer(epochs, steps) if optimizer is None else fresh_optimizer(optimizer)
    )
    compile_model(pm, optimizer, loss)
    metadata = {
        "fingerprint": model_fingerprint(pm),
        "epochs": epochs,
        "rewind_epoch": rewind_epoch,
        "steps_per_epoch": steps,
        "optimizer": keras.optimizers.serialize(pm.optimizer),
    }
    saver = _SaveRewindState(paths["rewind"], rewind_epoch, metadata)
    history = pm.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        callbacks=[saver, *(callbacks or [])],
        verbose=verbose,
        shuffle=False,  # arrays are shuffled by training_batches; datasets shuffle themselves
    )
    if not os.path.exists(paths["rewind"]):
        raise RunDirectoryError(
            f"Training stopped before epoch {rewind_epoch}, so no rewind "
            "checkpoint was saved (a callback set stop_training?)."
        )
    accuracy = read_metric(pm.evaluate(validation, verbose=0, return_dict=True), "accuracy")
    atomic_save_model(pm, paths["model"])
    atomic_write_json(paths["info"], dict(metadata, accuracy=accuracy, optimizer=None))
    return Baseline(
        pm, paths["rewind"], paths["model"], epochs, rewind_epoch, accuracy, history.history
    )


def _reuse_baseline(pm, directory, paths, epochs, rewind_epoch, verbose):
    """Loads the finished baseline of an earlier call, after checking it is this model's.

    Baselines written before fingerprints saw the wiring carry the older
    fingerprint (types and shapes only); both are accepted.
    """
    info = read_json(paths["info"], "baseline description")
    saved = info.get("fingerprint")
    if saved not in (model_fingerprint(pm), model_fingerprint(pm, wiring=False)):
        raise RunDirectoryError(
            f"'{directory}' holds the baseline of another model (architecture "
            f"fingerprint {str(saved)[:12]}, this model's is "
            f"{model_fingerprint(pm)[:12]}). Use a new run_dir for this model."
        )
    if (info.get("epochs"), info.get("rewind_epoch")) != (epochs, rewind_epoch):
        raise RunDirectoryError(
            f"'{directory}' holds a baseline trained for {info.get('epochs')} "
            f"epochs with rewind epoch {info.get('rewind_epoch')}; asked for "
            f"{epochs} and {rewind_epoch}. Use a new run_dir, or the same settings."
        )
    trained = keras.models.load_model(paths["model"])
    if verbose:
        print(f"Reusing the trained baseline in '{directory}' "
              f"(accuracy {100 * info['accuracy']:.2f}%).")
    return Baseline(
        trained, paths["rewind"], paths["model"], epochs, rewind_epoch, info["accuracy"], {}
    )


def load_rewind_checkpoint(path, epochs, rewind_epoch=None):
    """Reads the epoch-`k` state `train_baseline` saved, checking the epochs against it.

    Args:
        path: The rewind checkpoint, or `None` (learning-rate rewinding).
        epochs: `T`, the length of the training.
        rewind_epoch: `k`. Defaults to `None`: the checkpoint's epoch (or
            60% of `epochs` without a checkpoint).

    Returns:
        `(ModelState or None, metadata dict or None, epochs, rewind_epoch)`.

    Raises:
        ConfigurationError: If `rewind_epoch` or `epochs` contradict the
            checkpoint, or are out of range.
    """
    state = metadata = None
    if path is not None:
        state, metadata = load_state(path)
        saved_epoch = metadata.get("epoch")
        if rewind_epoch is None:
            rewind_epoch = saved_epoch
        elif saved_epoch is not None and saved_epoch != rewind_epoch:
            raise ConfigurationError(
                f"rewind_epoch={rewind_epoch} but the rewind checkpoint "
                f"'{path}' was saved at epoch {saved_epoch}. "
                "Omit rewind_epoch, or pass the checkpoint of that epoch."
            )
        saved_epochs = metadata.get("epochs")
        if saved_epochs is not None and saved_epochs != epochs:
            raise ConfigurationError(
                f"epochs={epochs} but the rewind checkpoint comes from a "
                f"{saved_epochs}-epoch training. Pass epochs={saved_epochs}."
            )
    epochs, rewind_epoch = check_epochs(epochs, rewind_epoch)
    return state, metadata, epochs, rewind_epoch


def check_rewind_checkpoint(model, state, path):
    """Refuses, before any round, a rewind checkpoint that does not fit `model`.

    Raises:
        ConfigurationError: Naming the first variable that does not fit.
    """
    try:
        check_state_fits("weights", model.weights, state.weights, lambda v: v.path)
        if state.optimizer is not None:
            check_state_fits(
                "optimizer variables", built_optimizer(model).variables,
                state.optimizer, optimizer_variable_name,
            )
    except RunDirectoryError as error:
        raise ConfigurationError(
            f"The rewind checkpoint '{path}' does not fit this model and "
            f"optimizer: {error} Pass the checkpoint that train_baseline "
            "saved for this model (and omit `optimizer`, so that the one it "
            "was saved with is used), or use learning-rate rewinding "
            "(rewind_checkpoint=None)."
        ) from error
