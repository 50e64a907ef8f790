"""Iterative pruning with rewinding (Algorithm 1), durable and resumable.

The paper prunes in rounds. Round 0 is the trained, unpruned model. Every
round `r >= 1` then

1. scores the filters of the current model (activation attention on
   calibration data, Section 3.1),
2. turns the policy's global threshold `T[r]` into masks (Algorithm 3),
   which only ever shrink,
3. rewinds: the surviving weights to their values at epoch `k` ("weight
   rewinding", when the checkpoint of epoch `k` exists) and the optimizer,
   learning-rate schedule included, to its state at epoch `k`; or the
   optimizer only ("learning-rate rewinding", which works for any trained
   model and is the default without an epoch-`k` checkpoint),
4. retrains for the remaining `T - k` epochs and evaluates,
5. asks the policy (`tf_asap.pruning.policies`) what to do next: prune harder, roll
   back to an earlier round (its weights, masks and optimizer state are
   restored exactly), or stop with the best acceptable round.

This module has the two front doors' shared parts (`snapshot_state`,
`restore_state`, `prune_filters`, `evaluate_round`, `round_record`), used by
both `RoundController` and the `fit()` callback
`tf_asap.rounds.callback.AdaptivePruning`, and `train_baseline`, which
trains from scratch with the paper's recipe and saves the epoch-`k`
checkpoint that weight rewinding needs.

What a run directory holds (every file written atomically: a temporary file
in the same directory, `fsync`, `os.replace`):

```
run_dir/
  run.json            manifest: model fingerprint, settings, policy config and
                      state, threshold reference, status (the commit point)
  run.lock            held (flock) while a process runs in the directory
  rounds.jsonl        one JSON line per completed round
  rewind.npz          what every round rewinds to (optimizer state; weights
                      too with weight rewinding)
  checkpoints/        round_0000.npz ...: weights, masks and optimizer state
                      of round 0 and of every acceptable round
  final/model.keras   the best round's masked model
  final/slim.keras    the same with the pruned channels removed
  report.md           the round table; rounds.png, the paper's Figure 4
  tensorboard/        per-round scalars
  baseline/           written by `train_baseline`: rewind.npz (epoch k) and
                      model.keras (the trained baseline)
```

A round counts as done once `run.json` records the policy's decision on it;
its checkpoint and log line are written before that. A run started again
with the same directory (after a crash, a kill or Ctrl-C) restores the last
done round's state and carries on with the decision the policy had made, so
no completed round is lost or repeated; a round in flight is redone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tf_asap.core.counting import count_cost
from tf_asap.files import (  # noqa: F401 - re-exported for report and callers
    atomic_save_model,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from tf_asap.errors import ConfigurationError, DataError, RunDirectoryError
from tf_asap.inputs import DEFAULT_BATCH_SIZE, as_batches
from tf_asap.core.layers import MaskedLayer
from tf_asap.core.masks import (
    apply_masks,
    get_masks,
    is_prunable_model,
    make_prunable,
    mask_digest,
)
from tf_asap.pruning.policies import Policy, RoundResult, policy_from_state

# Imported here, not lazily: it registers the recipe's optimizer and schedule
# with Keras, which the `.keras` files of runs reference when loaded.
from tf_asap.recipe import outputs_logits, paper_optimizer

__all__ = [
    "Baseline",
    "ModelState",
    "PruningResult",
    "PruningStep",
    "RoundController",
    "evaluate_round",
    "load_state",
    "measure_threshold_reference",
    "prune_filters",
    "restore_state",
    "round_record",
    "save_state",
    "snapshot_state",
    "train_baseline",
]

logger = logging.getLogger("tf_asap")

RUN_FORMAT = 1
MANIFEST_NAME = "run.json"
LOG_NAME = "rounds.jsonl"
LOCK_NAME = "run.lock"
REWIND_NAME = "rewind.npz"
BASELINE_DIR = "baseline"
CHECKPOINT_DIR = "checkpoints"
FINAL_DIR = "final"
TENSORBOARD_DIR = "tensorboard"

DEFAULT_REWIND_FRACTION = 0.6
"""Rewind epoch as a fraction of training (appendix A.1: "roughly 60%")."""

DEFAULT_CALIBRATION_SAMPLES = 2048
"""Training samples scored per round when no calibration data is given."""


# ---------------------------------------------------------------------------
# Model state: weights, masks and optimizer (shared by both front doors).


@dataclasses.dataclass
class ModelState:
    """A copy of everything that rewinding and rollback restore.

    Attributes:
        weights: `[(variable path, array)]` for every variable of
            `model.weights`, in order: kernels, biases, BatchNormalization
            statistics and the masks of every `MaskedLayer`.
        optimizer: `[(name, array)]` for every optimizer variable (the
            iteration count first, then the learning rate if it is a
            variable, then the slots), named by the variable path without the
            optimizer's own name (`"iteration"`, `"conv1_conv1_kernel_momentum"`),
            so that a state saved from one optimizer instance restores into
            another of the same kind. `None` when not captured.
    """

    weights: list
    optimizer: list | None = None

    def copy(self) -> ModelState:
        """Returns a deep copy (the arrays are copied)."""
        return ModelState(
            [(name, np.array(value)) for name, value in self.weights],
            None if self.optimizer is None else [(n, np.array(v)) for n, v in self.optimizer],
        )


def _optimizer_variable_name(variable):
    # "sgd_1/conv1_conv1_kernel_momentum" -> "conv1_conv1_kernel_momentum".
    return variable.path.split("/", 1)[-1]


def _built_optimizer(model):
    """`model.optimizer`, built for the model's trainable variables.

    Keras builds the optimizer lazily at the first training step; its state
    (iterations, momentum slots) only exists afterwards. Building it first
    lets a state be captured or restored before any training.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ConfigurationError(
            f"Model '{model.name}' is not compiled, so it has no optimizer state "
            "to save or rewind. Compile it first (for example with "
            "tf_asap.recipe.compile_with_recipe)."
        )
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return optimizer


def _mask_variable_ids(model):
    ids = set()
    for layer in model.layers:
        if isinstance(layer, MaskedLayer):
            ids.add(id(layer.filter_mask))
            ids.add(id(layer.input_mask))
    return ids


def snapshot_state(model, optimizer=True) -> ModelState:
    """Copies the weights, masks and (optionally) optimizer state of `model`.

    Args:
        model: A `keras.Model`, usually one from `make_prunable`.
        optimizer: Also copy the optimizer's variables (the model must be
            compiled; the optimizer is built if it was not yet). Defaults to
            `True`.

    Returns:
        A `ModelState` of NumPy copies.

    Raises:
        ConfigurationError: If `optimizer=True` and the model is not compiled.
    """
    weights = [(variable.path, np.array(variable.numpy())) for variable in model.weights]
    optimizer_state = None
    if optimizer:
        variables = _built_optimizer(model).variables
        optimizer_state = [
            (_optimizer_variable_name(variable), np.array(variable.numpy()))
            for variable in variables
        ]
    return ModelState(weights, optimizer_state)


def _check_shapes(kind, variables, saved, name_of):
    """Raises unless the saved arrays fit `variables` one by one, in order.

    Arrays are matched by position, not by name: Keras numbers automatic
    layer names per process, so the same model built again has other
    variable paths but the same variables in the same order.
    """
    problem = None
    if len(variables) != len(saved):
        problem = f"{len(saved)} saved arrays for {len(variables)} variables"
    else:
        for variable, (saved_name, value) in zip(variables, saved):
            if tuple(variable.shape) != tuple(np.shape(value)):
                problem = (
                    f"'{name_of(variable)}' has shape {tuple(variable.shape)} but the "
                    f"saved '{saved_name}' has shape {tuple(np.shape(value))}"
                )
                break
    if problem:
        raise RunDirectoryError(
            f"The saved {kind} do not fit this model ({problem}). The state was "
            "saved from a different model or optimizer; use a new run directory "
            "(or the model and optimizer that made this one)."
        )


def restore_state(model, state, weights=True, masks=True, optimizer=True):
    """Writes a `ModelState` back into `model`, exactly.

    Rollback restores everything. Weight rewinding restores the weights but
    keeps the current masks (`masks=False`): the epoch-`k` weights with the
    new round's masks. Learning-rate rewinding restores the optimizer only.

    Args:
        model: The model the state was taken from (or one with the same
            variables).
        state: A `ModelState`.
        weights: Restore the weights other than masks. Defaults to `True`.
        masks: Restore the masks. Defaults to `True`.
        optimizer: Restore the optimizer state, if `state` has one. Defaults
            to `True`.

    Raises:
        RunDirectoryError: If the state's variables are not this model's.
    """
    if weights or masks:
        variables = model.weights
        _check_shapes("weights", variables, state.weights, lambda v: v.path)
        mask_ids = _mask_variable_ids(model)
        for variable, (_, value) in zip(variables, state.weights):
            is_mask = id(variable) in mask_ids
            if (is_mask and masks) or (not is_mask and weights):
                variable.assign(value)
    if optimizer and state.optimizer is not None:
        variables = _built_optimizer(model).variables
        _check_shapes("optimizer variables", variables, state.optimizer, _optimizer_variable_name)
        for variable, (_, value) in zip(variables, state.optimizer):
            variable.assign(value)


def save_state(path, state, metadata=None):
    """Writes a `ModelState` (and JSON `metadata`) to an `.npz` file, atomically.

    Args:
        path: Destination file.
        state: A `ModelState`.
        metadata: A JSON-serialisable dict stored alongside. Defaults to
            `None`.
    """
    arrays = {}
    for index, (_, value) in enumerate(state.weights):
        arrays[f"w{index:05d}"] = value
    for index, (_, value) in enumerate(state.optimizer or []):
        arrays[f"o{index:05d}"] = value
    header = {
        "weights": [name for name, _ in state.weights],
        "optimizer": None if state.optimizer is None else [n for n, _ in state.optimizer],
        "metadata": metadata or {},
    }
    arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path):
    """Reads a file written by `save_state`.

    Returns:
        `(ModelState, metadata dict)`.

    Raises:
        RunDirectoryError: If the file is missing or not a saved state.
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode("utf-8"))
            weights = [(name, data[f"w{i:05d}"]) for i, name in enumerate(header["weights"])]
            optimizer = header["optimizer"]
            if optimizer is not None:
                optimizer = [(name, data[f"o{i:05d}"]) for i, name in enumerate(optimizer)]
    except FileNotFoundError:
        raise RunDirectoryError(
            f"The saved model state '{path}' does not exist. The run directory "
            "is incomplete: restore the file or start a new run directory."
        ) from None
    except (OSError, ValueError, KeyError) as error:
        raise RunDirectoryError(
            f"Cannot read the saved model state '{path}' ({error}). It was not "
            "written by tf_asap or is damaged; start a new run directory."
        ) from error
    return ModelState(weights, optimizer), header.get("metadata", {})


# ---------------------------------------------------------------------------
# One pruning step (shared by both front doors).


def resolve_criterion(criterion):
    """Returns an importance criterion object from a name or an object.

    Args:
        criterion: A name known to `tf_asap.pruning.importance.get_criterion` (the
            default `"attention"` is the paper's mean activation), or an
            object with a `score(model, data) -> {group: scores}` method.

    Raises:
        ConfigurationError: For an unknown name or an object without `score`.
    """
    if isinstance(criterion, str):
        from tf_asap.pruning.importance import get_criterion

        return get_criterion(criterion)
    if not callable(getattr(criterion, "score", None)):
        raise ConfigurationError(
            "criterion must be a name such as 'attention' or an object with a "
            f"score(model, data) method; received {criterion!r}."
        )
    return criterion


def criterion_name(criterion):
    """A stable description of a criterion object for logs and manifests."""
    from tf_asap.pruning.importance import Criterion

    if isinstance(criterion, Criterion):
        return repr(criterion)  # name and options, e.g. ActivationAttention(power=1, ...)
    return getattr(criterion, "name", None) or type(criterion).__name__


@dataclasses.dataclass(frozen=True)
class PruningStep:
    """What one call of `prune_filters` did.

    Attributes:
        masks: `{group name: keep}` of every prunable group, as applied.
        removed: Channels this step pruned (live before, masked now).
    """

    masks: dict
    removed: int


def prune_filters(model, scores, threshold, objective, reference, max_reduction=None):
    """Sets the masks of one pruning round (Algorithm 1, line 5; Algorithm 3).

    The layer-aware thresholds of `tf_asap.pruning.thresholds.threshold_masks` decide
    which channels each group keeps at the global threshold `threshold`
    (relative units: a group's attention threshold is `threshold x reference
    x` its share of the remaining cost). Masks only shrink: a channel pruned
    in an earlier round stays pruned, and every group keeps at least its
    `min_filters` channels.

    Args:
        model: A model from `make_prunable`.
        scores: `{group name: array}` from the criterion.
        threshold: The global threshold `T` of this round.
        objective: `"params"` or `"flops"`: what the layer-aware thresholds
            weigh groups by.
        reference: The score scale `T` is relative to (see
            `measure_threshold_reference`).
        max_reduction: The policy's `reduction_limit`: a round that would
            remove more of the dense `objective` cost is trimmed back into
            the target window. Defaults to `None` (no limit).

    Returns:
        A `PruningStep`.
    """
    from tf_asap.pruning.thresholds import threshold_masks

    before = get_masks(model)
    masks = threshold_masks(
        model, scores, threshold, objective=objective, reference=reference,
        max_reduction=max_reduction,
    )
    removed = sum(int(np.sum(before[name] & ~np.asarray(keep, bool))) for name, keep in masks.items())
    if removed:
        apply_masks(model, masks)
    return PruningStep(masks, removed)


def measure_threshold_reference(scores, model, objective):
    """The attention scale that the relative threshold `T` multiplies.

    Measured once per run, on the first pruned round's scores (the unpruned
    model's), and kept: `T` then means the same in every round.

    Args:
        scores: `{group name: array}` of the first round.
        model: The model the scores are of.
        objective: `"params"` or `"flops"`.

    Returns:
        A positive float.
    """
    from tf_asap.pruning.thresholds import attention_reference

    del model, objective  # The scale depends on the scores alone (see attention_reference).
    return float(attention_reference(scores))


def _accuracy_from(logs, metric):
    if metric in logs:
        return float(logs[metric])
    candidates = [key for key in logs if key.endswith("accuracy")]
    if len(candidates) == 1:
        return float(logs[candidates[0]])
    raise ConfigurationError(
        f"Evaluating the model gave the metrics {sorted(logs)}, but the policy "
        f"needs '{metric}'. Compile the model with metrics=['accuracy'] (or "
        "let tf_asap compile it)."
    )


def evaluate_round(model, validation_data, round_number, threshold, metric="accuracy"):
    """Evaluates a model and measures its size: a round's `RoundResult`.

    Args:
        model: A compiled model from `make_prunable`.
        validation_data: Data `model.evaluate` accepts, with labels.
        round_number: The round this result belongs to.
        threshold: The threshold the round pruned with.
        metric: The accuracy metric's name in `evaluate`'s results. Defaults
            to `"accuracy"`.

    Returns:
        `(RoundResult, Cost)`: accuracy, effective params and FLOPs; and the
        full cost.
    """
    logs = model.evaluate(validation_data, verbose=0, return_dict=True)
    accuracy = _accuracy_from(logs, metric)
    cost = count_cost(model)
    result = RoundResult(
        round=round_number,
        threshold=float(threshold),
        accuracy=min(max(accuracy, 0.0), 1.0),
        params=cost.effective_params,
        flops=cost.effective_flops,
    )
    return result, cost


def repeated_round(policy, records, model, round_number, threshold):
    """The result of a round that repeats an earlier failed round exactly, if it does.

    A round repeats an earlier one when it starts from the same model (the
    policy's current parent) and its masks are identical to the earlier
    round's (`mask_digest` in the round log). Retraining it would run the
    same experiment again, so its accuracy is taken from the earlier round.

    Args:
        policy: The policy about to be told the round's result.
        records: The round records logged so far (with `mask_digest`).
        model: The model, already pruned for this round.
        round_number: The round being run.
        threshold: The threshold it pruned with.

    Returns:
        `(RoundResult, Cost, earlier round number)`, or `None` when the round
        is new and must be retrained.
    """
    cost = count_cost(model)
    earlier = policy.repeated_failure(cost.effective_params, cost.effective_flops)
    if earlier is None:
        return None
    logged = next((r for r in records if r.get("round") == earlier.round), None)
    if logged is None or logged.get("mask_digest") != mask_digest(model):
        return None
    result = RoundResult(
        round=round_number,
        threshold=float(threshold),
        accuracy=earlier.accuracy,
        params=cost.effective_params,
        flops=cost.effective_flops,
    )
    return result, cost, earlier.round


def round_record(policy, result, decision, cost, **extra):
    """The log line of one round, shared by the controller and the callback.

    Args:
        policy: The policy that decided.
        result: The round's `RoundResult`.
        decision: The policy's `Decision` after the round.
        cost: The round's `Cost`.
        **extra: More fields (wall time, epochs...).

    Returns:
        A JSON-serialisable dict.
    """
    baseline = policy.baseline
    accuracy_drop = baseline.accuracy - result.accuracy
    record = {
        "round": result.round,
        "threshold": result.threshold,
        "step": policy.step,
        "accuracy": result.accuracy,
        "accuracy_drop": accuracy_drop,
        "params": result.params,
        "flops": result.flops,
        "dense_params": cost.params,
        "dense_flops": cost.flops,
        "params_left": result.params / baseline.params,
        "flops_left": result.flops / baseline.flops,
        "params_reduction": 1.0 - result.params / baseline.params,
        "flops_reduction": 1.0 - result.flops / baseline.flops,
        "acceptable": bool(policy.acceptable(result)),
        "decision": decision.action,
        "next_threshold": decision.threshold,
        "rollback_to": decision.rollback_to,
        "best_round": decision.best_round,
        "reason": decision.reason,
        "objective": policy.objective,
        "max_accuracy_drop": getattr(policy, "max_accuracy_drop", None),
        "target_reduction": getattr(policy, "reduction", None),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record


def format_round_line(record):
    """One progress line: round, T, accuracy drop, params and FLOPs left, decision."""
    decision = record["decision"]
    if decision == "rollback":
        decision = f"rollback to {record['rollback_to']}"
    elif decision == "stop":
        decision = f"stop (best round {record['best_round']})"
    return (
        f"round {record['round']:3d}  T={record['threshold']:<8.4g} "
        f"acc drop {100 * record['accuracy_drop']:+6.2f}%  "
        f"params left {100 * record['params_left']:5.1f}%  "
        f"FLOPs left {100 * record['flops_left']:5.1f}%  -> {decision}: {record['reason']}"
    )


# ---------------------------------------------------------------------------
# Settings shared by the controller and train_baseline.


def _check_epochs(epochs, rewind_epoch):
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ConfigurationError(
            f"epochs must be a positive integer (the length of one full "
            f"training, T in Algorithm 1); received {epochs!r}."
        )
    epochs = int(epochs)
    if rewind_epoch is None:
        rewind_epoch = min(epochs - 1, max(0, round(DEFAULT_REWIND_FRACTION * epochs)))
    if (
        isinstance(rewind_epoch, bool)
        or not isinstance(rewind_epoch, (int, np.integer))
        or not 0 <= rewind_epoch < epochs
    ):
        raise ConfigurationError(
            f"rewind_epoch must be an integer in [0, {epochs - 1}] (an epoch "
            f"before the end of the {epochs}-epoch training, so that a round "
            f"retrains for epochs - rewind_epoch >= 1 epochs); received "
            f"{rewind_epoch!r}. Omit it for the paper's 60% of training."
        )
    return epochs, int(rewind_epoch)


def _check_verbose(verbose):
    if isinstance(verbose, bool):
        return int(verbose)
    if not isinstance(verbose, (int, np.integer)) or verbose < 0:
        raise ConfigurationError(f"verbose must be 0, 1 or 2; received {verbose!r}.")
    return int(verbose)


def _require_data(data, name, purpose):
    if data is None:
        raise ConfigurationError(
            f"{name} is missing: {purpose}. Pass arrays (x, y), a tf.data.Dataset "
            "or a generator."
        )


def labelled_batches(data, model, batch_size=None, name="data"):
    """`data` as a batched dataset of `(x, y[, sample_weight])`, for fit and evaluate.

    Raises:
        DataError: If `data` cannot be read, does not fit the model, or has
            no labels.
    """
    dataset = as_batches(data, model, batch_size=batch_size, keep_labels=True)
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise DataError(
            f"{name} must have labels: pass (x, y) arrays or a dataset of (x, y) "
            "elements; received inputs only."
        )
    return dataset


def _training_batches(data, model, batch_size, name):
    """Labelled training batches, reshuffled every epoch when `data` is arrays.

    A `tf.data.Dataset` or a generator is used as given (it is expected to
    shuffle itself, as `keras.Model.fit` expects too); arrays are shuffled
    here, as `fit` would shuffle them.
    """
    dataset = labelled_batches(data, model, batch_size, name)
    if isinstance(data, (tuple, list)) and all(
        hasattr(part, "shape") for part in tf.nest.flatten(data)
    ):
        parts = tuple(data)
        count = int(np.shape(tf.nest.flatten(parts)[0])[0])
        dataset = (
            tf.data.Dataset.from_tensor_slices(parts)
            .shuffle(count, reshuffle_each_iteration=True)
            .batch(batch_size or DEFAULT_BATCH_SIZE)
            .prefetch(tf.data.AUTOTUNE)
        )
    return dataset


def _steps_per_epoch(dataset, name):
    steps = int(dataset.cardinality())
    if steps == -1:  # tf.data.INFINITE_CARDINALITY
        raise DataError(
            f"{name} repeats forever; pass a finite data set (one epoch), "
            "since rounds retrain for whole epochs."
        )
    if steps < 0:  # unknown: count once
        steps = sum(1 for _ in dataset)
    if steps == 0:
        raise DataError(f"{name} holds no batches.")
    return steps


def _fresh_optimizer(optimizer):
    # A new, unbuilt instance with the same configuration (schedule included):
    # an optimizer that already trained another model refuses new variables.
    return keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))


def _compile(model, optimizer, loss):
    if loss is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=outputs_logits(model))
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])


def _default_optimizer(epochs, steps_per_epoch):
    return paper_optimizer(epochs, steps_per_epoch)


def model_fingerprint(model):
    """A hash of a prunable model's architecture: its layers' types and weight shapes.

    Layer by layer, in order: the (unwrapped) layer type and the shapes of its
    weights, masks left out. Weight values are left out too, so a model keeps
    its fingerprint while it is trained and pruned. Layer names are left out
    because Keras numbers automatic names per process (`conv2d_3`): the same
    model built again in a notebook must still resume its run. States are
    matched variable by variable in the same order, so equal fingerprints mean
    that every saved array fits.
    """
    masks = _mask_variable_ids(model)
    layers = []
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, MaskedLayer) else layer
        shapes = [list(v.shape) for v in layer.weights if id(v) not in masks]
        if isinstance(layer, keras.layers.InputLayer):
            shapes = [list(layer.batch_shape)]
        layers.append([type(inner).__name__, shapes])
    text = json.dumps(layers, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------
# train_baseline


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
    _require_data(train_data, "train_data", "the baseline must be trained on something")
    _require_data(
        validation_data, "validation_data", "the baseline accuracy is measured on it"
    )
    epochs, rewind_epoch = _check_epochs(epochs, rewind_epoch)
    verbose = _check_verbose(verbose)
    pm = model if is_prunable_model(model) else make_prunable(model)
    fingerprint = model_fingerprint(pm)
    directory = os.path.join(os.fspath(run_dir), BASELINE_DIR)
    rewind_path = os.path.join(directory, REWIND_NAME)
    final_path = os.path.join(directory, "model.keras")
    info_path = os.path.join(directory, "baseline.json")
    if os.path.exists(info_path):
        info = _read_json(info_path, "baseline description")
        if info.get("fingerprint") != fingerprint:
            raise RunDirectoryError(
                f"'{directory}' holds the baseline of another model (architecture "
                f"fingerprint {info.get('fingerprint', '?')[:12]}, this model's is "
                f"{fingerprint[:12]}). Use a new run_dir for this model."
            )
        if (info.get("epochs"), info.get("rewind_epoch")) != (epochs, rewind_epoch):
            raise RunDirectoryError(
                f"'{directory}' holds a baseline trained for {info.get('epochs')} "
                f"epochs with rewind epoch {info.get('rewind_epoch')}; asked for "
                f"{epochs} and {rewind_epoch}. Use a new run_dir, or the same settings."
            )
        trained = keras.models.load_model(final_path)
        if verbose:
            print(f"Reusing the trained baseline in '{directory}' "
                  f"(accuracy {100 * info['accuracy']:.2f}%).")
        return Baseline(trained, rewind_path, final_path, epochs, rewind_epoch, info["accuracy"], {})

    train = _training_batches(train_data, pm, batch_size, "train_data")
    validation = labelled_batches(validation_data, pm, batch_size, "validation_data")
    steps = _steps_per_epoch(train, "train_data")
    optimizer = (
        _default_optimizer(epochs, steps) if optimizer is None else _fresh_optimizer(optimizer)
    )
    _compile(pm, optimizer, loss)
    metadata = {
        "fingerprint": fingerprint,
        "epochs": epochs,
        "rewind_epoch": rewind_epoch,
        "steps_per_epoch": steps,
        "optimizer": keras.optimizers.serialize(pm.optimizer),
    }
    saver = _SaveRewindState(rewind_path, rewind_epoch, metadata)
    history = pm.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        callbacks=[saver, *(callbacks or [])],
        verbose=verbose,
        shuffle=False,  # arrays are shuffled by _training_batches; datasets shuffle themselves
    )
    if not os.path.exists(rewind_path):
        raise RunDirectoryError(
            f"Training stopped before epoch {rewind_epoch}, so no rewind "
            "checkpoint was saved (a callback set stop_training?)."
        )
    accuracy = _accuracy_from(pm.evaluate(validation, verbose=0, return_dict=True), "accuracy")
    atomic_save_model(pm, final_path)
    atomic_write_json(info_path, dict(metadata, accuracy=accuracy, optimizer=None))
    return Baseline(pm, rewind_path, final_path, epochs, rewind_epoch, accuracy, history.history)


def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise RunDirectoryError(
            f"Cannot read the {what} '{path}' ({error}). The run directory is "
            "damaged or not tf_asap's; start a new one."
        ) from error


# ---------------------------------------------------------------------------
# The run directory.


def read_round_log(path):
    """Reads a JSON-lines round log.

    Args:
        path: A run directory or its `rounds.jsonl`.

    Returns:
        The list of round records, in order (empty if there is no log yet).

    Raises:
        RunDirectoryError: If a line is not JSON.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, LOG_NAME)
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as error:
                raise RunDirectoryError(
                    f"Line {number} of the round log '{path}' is not JSON "
                    f"({error}). The log is damaged; restore it or start a new "
                    "run directory."
                ) from error
    return records


class _RunDirectory:
    """Paths and atomic reads and writes of one run directory."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.manifest = os.path.join(self.path, MANIFEST_NAME)
        self.log = os.path.join(self.path, LOG_NAME)
        self.rewind = os.path.join(self.path, REWIND_NAME)
        self.final_model = os.path.join(self.path, FINAL_DIR, "model.keras")
        self.slim_model = os.path.join(self.path, FINAL_DIR, "slim.keras")
        self.tensorboard = os.path.join(self.path, TENSORBOARD_DIR)

    def checkpoint(self, round_number):
        return os.path.join(self.path, CHECKPOINT_DIR, f"round_{round_number:04d}.npz")

    @contextlib.contextmanager
    def locked(self):
        """Holds an exclusive lock on the run directory while a run uses it.

        Two processes pruning into one directory would interleave their
        rounds. The lock is an OS file lock (`flock`), released by the
        operating system even when the process is killed, so a crashed run
        never leaves a stale lock behind. Where `fcntl` does not exist
        (Windows), runs are not locked.
        """
        os.makedirs(self.path, exist_ok=True)
        try:
            import fcntl
        except ImportError:
            yield
            return
        with open(os.path.join(self.path, LOCK_NAME), "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise RunDirectoryError(
                    f"Run directory '{self.path}' is in use by another process. "
                    "Wait for that run to finish (or stop it), or use another run_dir."
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read_manifest(self):
        if not os.path.exists(self.manifest):
            return None
        manifest = _read_json(self.manifest, "run manifest")
        if manifest.get("format") != RUN_FORMAT:
            raise RunDirectoryError(
                f"'{self.manifest}' has format {manifest.get('format')!r}; this "
                f"version of tf_asap reads format {RUN_FORMAT}. Use a new run directory."
            )
        return manifest

    def write_manifest(self, manifest):
        atomic_write_json(self.manifest, manifest)

    def write_log(self, records):
        text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)
        atomic_write_text(self.log, text)


# ---------------------------------------------------------------------------
# The controller.


@dataclasses.dataclass
class PruningResult:
    """What a finished run produced.

    Attributes:
        model: The best round's masked model (compiled).
        slim_model: The same model with its pruned channels removed
            (uncompiled).
        best_round: The round number of the result.
        rounds: The round log, one dict per completed round (round 0 first).
        run_dir: The run directory.
    """

    model: keras.Model
    slim_model: keras.Model
    best_round: int
    rounds: list
    run_dir: str

    @property
    def best(self) -> dict:
        """The log record of the best round."""
        return next(r for r in self.rounds if r["round"] == self.best_round)


class RoundController:
    """Runs Algorithm 1: prune, rewind, retrain, evaluate, ask the policy; repeat.

    Everything goes to `run_dir` (see the module docstring for its layout),
    and a run started again with the same directory resumes after the last
    completed round. At the end the best round is loaded, saved as a masked
    and a slimmed `.keras` model, and summarised in `report.md` and the
    paper's Figure 4 (`rounds.png`).

    The model is compiled by the controller: with `optimizer` when given, with
    the optimizer saved in `rewind_checkpoint` when there is one, and else with
    the paper's recipe (`tf_asap.recipe.paper_optimizer(epochs,
    steps_per_epoch)`). Its learning-rate schedule runs on
    `optimizer.iterations`, which rewinding resets to the state of epoch
    `rewind_epoch`.

    The threshold `T` of the policies is relative: the attention threshold of
    a round is `T * reference`, where `reference` is the attention scale
    (`tf_asap.pruning.thresholds.attention_reference`) measured on the scores of
    round 1, the unpruned model's. It is stored in `run.json` the moment it is
    measured and read back on resume, so that `T` means the same in every
    round of a run.

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
        validation_data: Validation data with labels; accuracy is measured on
            it.
        run_dir: The run directory; created if needed.
        epochs: `T`: the length of one full training of this model.
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
            ignored). Defaults to `None`: the first 2048 samples of
            `train_data`.
        criterion: An importance criterion name (`tf_asap.pruning.importance`) or
            object with `score(model, data)`. Defaults to `"attention"`, the
            paper's mean activation with `p = 1`.
        objective: `"params"` or `"flops"`, what the layer-aware thresholds
            weigh layers by. Defaults to `None`: the policy's objective.
        batch_size: Batch size for array data. Defaults to `None`: batched
            data keeps its batches, arrays use 128.
        optimizer: A `keras.optimizers.Optimizer` to retrain with (a fresh
            copy is used). Defaults to `None` (see above).
        loss: A Keras loss. Defaults to `None`: sparse categorical
            cross-entropy, from logits unless the model ends in a softmax.
        callbacks: More Keras callbacks for every retraining `fit`. Defaults
            to `None`.
        skip_unpruned_rounds: Do not rewind and retrain a round whose
            threshold prunes no channel: its model is the model it started
            from, so it is only evaluated and reported to the policy (with 0
            epochs in the log). Such rounds are common while `T` is still
            below every live filter's score and when the size converges (the
            0.1% rule needs several unchanged rounds), and retraining them
            would only train the same model longer. Likewise a retry whose
            masks are exactly those of an earlier failed round from the same
            model (a threshold cliff, see `Policy.repeated_failure`) is not
            retrained: it takes that round's accuracy. `False` retrains
            every round, as Algorithm 1 is written. Defaults to `True`.
        verbose: `0` silent; `1` one line per round and a progress bar while
            retraining; `2` one line per round and per epoch. Defaults to `1`.

    Raises:
        ConfigurationError: For missing training or validation data, an
            already used policy, `epochs < 1`, a rewind epoch beyond training,
            or a rewind checkpoint of another epoch.
        RunDirectoryError: If `run_dir` holds the run of a different model,
            or of other settings.

    Example:

    >>> controller = RoundController(
    ...     model, AccuracyGuaranteed(max_accuracy_drop=0.01),
    ...     (x_train, y_train), (x_val, y_val), run_dir="runs/fmnist", epochs=30)
    >>> result = controller.run()
    >>> result.best["params_reduction"]
    0.74
    """

    def __init__(
        self,
        model,
        policy,
        train_data,
        validation_data,
        run_dir,
        epochs,
        rewind_epoch=None,
        rewind_checkpoint=None,
        calibration_data=None,
        criterion="attention",
        objective=None,
        batch_size=None,
        optimizer=None,
        loss=None,
        callbacks=None,
        skip_unpruned_rounds=True,
        verbose=1,
    ):
        if not isinstance(policy, Policy):
            raise ConfigurationError(
                "policy must be a tf_asap.pruning.policies policy (AccuracyGuaranteed, "
                f"ParamsTarget or FlopsTarget); received {type(policy).__name__}."
            )
        if policy.history:
            raise ConfigurationError(
                "This policy has already been started. Pass a new policy; to "
                "continue an interrupted run, pass a new policy with the same "
                "arguments and the same run_dir."
            )
        _require_data(train_data, "train_data", "every round retrains on it")
        _require_data(
            validation_data,
            "validation_data",
            "every round's accuracy is measured on it, and the policy decides on that accuracy",
        )
        if run_dir is None:
            raise ConfigurationError(
                "run_dir is missing: the controller keeps the round log and the "
                "checkpoints that rollback and resume need in it. Pass a directory path."
            )
        self.verbose = _check_verbose(verbose)
        self.policy = policy
        self.objective = policy.objective if objective is None else objective
        if self.objective not in ("params", "flops"):
            raise ConfigurationError(
                f"objective must be 'params' or 'flops'; received {objective!r}."
            )
        self.criterion = resolve_criterion(criterion)
        self._criterion_name = criterion_name(self.criterion)
        self.callbacks = list(callbacks or [])
        self.skip_unpruned_rounds = bool(skip_unpruned_rounds)
        self.run_dir = _RunDirectory(run_dir)

        rewind_metadata = None
        self._rewind_weights = None
        if rewind_checkpoint is not None:
            self._rewind_weights, rewind_metadata = load_state(rewind_checkpoint)
            saved_epoch = rewind_metadata.get("epoch")
            if rewind_epoch is None:
                rewind_epoch = saved_epoch
            elif saved_epoch is not None and saved_epoch != rewind_epoch:
                raise ConfigurationError(
                    f"rewind_epoch={rewind_epoch} but the rewind checkpoint "
                    f"'{rewind_checkpoint}' was saved at epoch {saved_epoch}. "
                    "Omit rewind_epoch, or pass the checkpoint of that epoch."
                )
            saved_epochs = rewind_metadata.get("epochs")
            if saved_epochs is not None and saved_epochs != epochs:
                raise ConfigurationError(
                    f"epochs={epochs} but the rewind checkpoint comes from a "
                    f"{saved_epochs}-epoch training. Pass epochs={saved_epochs}."
                )
        self.epochs, self.rewind_epoch = _check_epochs(epochs, rewind_epoch)
        self.rewinding = "weights" if rewind_checkpoint is not None else "lr"

        self.model = model if is_prunable_model(model) else make_prunable(model)
        self.fingerprint = model_fingerprint(self.model)
        self.train = _training_batches(train_data, self.model, batch_size, "train_data")
        self.validation = labelled_batches(
            validation_data, self.model, batch_size, "validation_data"
        )
        self.calibration = (
            calibration_data
            if calibration_data is not None
            else as_batches(train_data, self.model, batch_size=batch_size, limit=DEFAULT_CALIBRATION_SAMPLES)
        )
        self.steps_per_epoch = _steps_per_epoch(self.train, "train_data")
        if optimizer is not None:
            optimizer = _fresh_optimizer(optimizer)
        elif rewind_metadata and rewind_metadata.get("optimizer"):
            optimizer = keras.optimizers.deserialize(rewind_metadata["optimizer"])
        else:
            optimizer = _default_optimizer(self.epochs, self.steps_per_epoch)
        _compile(self.model, optimizer, loss)
        if self._rewind_weights is not None:
            self._check_rewind_checkpoint(rewind_checkpoint)
        self.settings = {
            "epochs": self.epochs,
            "rewind_epoch": self.rewind_epoch,
            "retrain_epochs": self.epochs - self.rewind_epoch,
            "rewinding": self.rewinding,
            "steps_per_epoch": self.steps_per_epoch,
            "criterion": self._criterion_name,
            "objective": self.objective,
            "optimizer": type(self.model.optimizer).__name__,
            "skip_unpruned_rounds": self.skip_unpruned_rounds,
        }
        self.threshold_reference = None
        self._records = []
        self._writer = None

    def _check_rewind_checkpoint(self, path):
        """Refuses, before any round, a rewind checkpoint that does not fit."""
        state = self._rewind_weights
        try:
            _check_shapes("weights", self.model.weights, state.weights, lambda v: v.path)
            if state.optimizer is not None:
                _check_shapes(
                    "optimizer variables", _built_optimizer(self.model).variables,
                    state.optimizer, _optimizer_variable_name,
                )
        except RunDirectoryError as error:
            raise ConfigurationError(
                f"The rewind checkpoint '{path}' does not fit this model and "
                f"optimizer: {error} Pass the checkpoint that train_baseline "
                "saved for this model (and omit `optimizer`, so that the one it "
                "was saved with is used), or use learning-rate rewinding "
                "(rewind_checkpoint=None)."
            ) from error

    # ------------------------------------------------------------- the run
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
                manifest = self._open_run()
                decision = self._resume_or_start(manifest)
                while decision.action != "stop":
                    decision = self._run_round(decision)
                return self._finish(decision)
        except KeyboardInterrupt:
            self._say(
                f"Interrupted. Completed rounds are saved in '{self.run_dir.path}'; "
                "run again with the same run_dir to resume."
            )
            raise
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def restore_round(self, round_number):
        """Restores the saved state of a round: weights, masks and optimizer.

        Args:
            round_number: Round 0 or an acceptable round of this run.

        Raises:
            RunDirectoryError: If that round has no checkpoint.
        """
        path = self.run_dir.checkpoint(round_number)
        if not os.path.exists(path):
            raise RunDirectoryError(
                f"Round {round_number} has no checkpoint in '{self.run_dir.path}' "
                "(only round 0 and acceptable rounds are saved)."
            )
        state, _ = load_state(path)
        restore_state(self.model, state)

    # ------------------------------------------------------- run directory
    def _manifest(self, status, best_round=None):
        return {
            "format": RUN_FORMAT,
            "status": status,
            "model": {
                "name": self.model.name,
                "fingerprint": self.fingerprint,
                "layers": [layer.name for layer in self.model.layers],
            },
            "settings": self.settings,
            "policy": {"kind": type(self.policy).__name__, "config": self.policy.to_config()},
            "policy_state": self.policy.state_dict() if self.policy.history else None,
            "threshold_reference": self.threshold_reference,
            "rounds_completed": len(self._records),
            "best_round": best_round,
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def _open_run(self):
        manifest = self.run_dir.read_manifest()
        if manifest is None:
            if os.path.exists(self.run_dir.log):
                raise RunDirectoryError(
                    f"'{self.run_dir.path}' has a round log but no {MANIFEST_NAME}; "
                    "it is damaged or not a tf_asap run. Use a new run directory."
                )
            os.makedirs(self.run_dir.path, exist_ok=True)
            self.run_dir.write_manifest(self._manifest("running"))
            return None
        saved = manifest.get("model", {}).get("fingerprint")
        if saved != self.fingerprint:
            raise RunDirectoryError(
                f"Run directory '{self.run_dir.path}' belongs to a different model "
                f"('{manifest.get('model', {}).get('name')}', architecture "
                f"fingerprint {str(saved)[:12]}; this model '{self.model.name}' has "
                f"{self.fingerprint[:12]}): the layer types or weight shapes "
                "differ. Use a new run_dir for this model, or pass the model that "
                "run was started with to resume it."
            )
        differences = [
            f"{key}: saved {manifest['settings'].get(key)!r}, now {value!r}"
            for key, value in self.settings.items()
            if manifest.get("settings", {}).get(key) != value
        ]
        saved_policy = manifest.get("policy", {})
        if saved_policy.get("kind") != type(self.policy).__name__ or _normalised(
            saved_policy.get("config")
        ) != _normalised(self.policy.to_config()):
            differences.append(
                f"policy: saved {saved_policy.get('kind')}({saved_policy.get('config')}), "
                f"now {type(self.policy).__name__}({self.policy.to_config()})"
            )
        if differences:
            raise RunDirectoryError(
                f"Run directory '{self.run_dir.path}' was started with other "
                f"settings ({'; '.join(differences)}). Resume it with the same "
                "settings, or use a new run_dir."
            )
        return manifest

    def _resume_or_start(self, manifest):
        if manifest is not None and manifest.get("policy_state"):
            return self._resume(manifest)
        # Round 0: the trained model as it is (Algorithm 1, lines 1-3).
        self._prepare_rewind_state()
        started = time.monotonic()
        self._restore_rewind(weights=False)
        result, cost = evaluate_round(self.model, self.validation, 0, 0.0)
        decision = self.policy.start(result)
        record = round_record(
            self.policy, result, decision, cost, epochs=0,
            wall_time_s=round(time.monotonic() - started, 3), rewinding=self.rewinding,
        )
        self._commit(result, decision, record)
        return decision

    def _resume(self, manifest):
        self.policy = policy_from_state(manifest["policy_state"])
        self.threshold_reference = manifest.get("threshold_reference")
        done = self.policy.history[-1].round
        records = read_round_log(self.run_dir.log)
        kept = [r for r in records if r["round"] <= done]
        if [r["round"] for r in kept] != list(range(done + 1)):
            raise RunDirectoryError(
                f"The round log of '{self.run_dir.path}' lists rounds "
                f"{[r['round'] for r in records]}, but the manifest says rounds "
                f"0-{done} are done. The run directory is damaged; start a new one."
            )
        if len(kept) != len(records):
            # A round was logged but its decision never committed: it is redone.
            self.run_dir.write_log(kept)
        self._records = kept
        decision = self.policy.last_decision
        self._say(
            f"Resuming '{self.run_dir.path}' after round {done} "
            f"({len(kept)} completed rounds): next, {decision.action}"
            + (f" round {self.policy.next_round}" if decision.action != "stop" else "")
            + "."
        )
        if decision.action == "prune":
            # The last completed round was acceptable (or the baseline): its
            # state is where the next round starts.
            self.restore_round(done)
        return decision

    def _prepare_rewind_state(self):
        """Saves what every round rewinds to (`rewind.npz`), once per run."""
        if os.path.exists(self.run_dir.rewind):
            return
        if self._rewind_weights is not None:
            state = self._rewind_weights
        else:
            # Learning-rate rewinding of a trained model without a checkpoint:
            # the freshly compiled optimizer, positioned at epoch k of its
            # schedule (the schedule is a function of optimizer.iterations).
            optimizer = _built_optimizer(self.model)
            optimizer.iterations.assign(self.rewind_epoch * self.steps_per_epoch)
            state = ModelState([], snapshot_state(self.model).optimizer)
        save_state(
            self.run_dir.rewind, state,
            {"epoch": self.rewind_epoch, "rewinding": self.rewinding},
        )

    def _restore_rewind(self, weights):
        """Rewinds the optimizer, and with `weights` the weights, to epoch k.

        Algorithm 1, lines 6-7: the surviving filters go back to their values
        at epoch k (the masks stay the new round's), and the learning-rate
        schedule with the optimizer state goes back to epoch k.
        """
        state, _ = load_state(self.run_dir.rewind)
        restore_state(
            self.model, state, weights=weights and bool(state.weights), masks=False
        )

    # --------------------------------------------------------------- rounds
    def _run_round(self, decision):
        started = time.monotonic()
        if decision.action == "rollback":
            # Algorithm 1, line 10: back to the last acceptable round.
            self.restore_round(decision.rollback_to)
        round_number = self.policy.next_round
        threshold = decision.threshold
        scores = self.criterion.score(self.model, self.calibration)
        if self.threshold_reference is None:
            self.threshold_reference = measure_threshold_reference(scores, self.model, self.objective)
            # Persisted before use, so a resumed run prunes on the same scale.
            manifest = self._manifest("running")
            self.run_dir.write_manifest(manifest)
        step = prune_filters(
            self.model, scores, threshold, self.objective, self.threshold_reference,
            max_reduction=self._reduction_limit(),
        )
        retrain_epochs = self.epochs - self.rewind_epoch
        repeat = None
        if step.removed and self.skip_unpruned_rounds:
            repeat = repeated_round(self.policy, self._records, self.model, round_number, threshold)
        if repeat is not None:
            # The same masks from the same model already failed: the same
            # experiment, so its result stands and nothing is retrained.
            result, cost, repeat_of = repeat
            retrain_epochs = 0
            if self.verbose:
                self._say(
                    f"round {round_number:3d}: T={threshold:.4g} pruned exactly what "
                    f"round {repeat_of} pruned from this model; reusing its accuracy"
                )
        elif step.removed or not self.skip_unpruned_rounds:
            self._restore_rewind(weights=self.rewinding == "weights")
            if self.verbose:
                self._say(
                    f"round {round_number:3d}: T={threshold:.4g} pruned {step.removed} "
                    f"channel(s); retraining {retrain_epochs} epoch(s)"
                )
            self.model.fit(
                self.train,
                epochs=self.epochs,
                initial_epoch=self.rewind_epoch,
                callbacks=self.callbacks,
                verbose=min(self.verbose, 2),
                shuffle=False,  # see _training_batches
            )
        else:
            # Nothing pruned: the round's model is the model it starts from,
            # so retraining it would only train the same model longer.
            retrain_epochs = 0
        if repeat is None:
            result, cost = evaluate_round(self.model, self.validation, round_number, threshold)
        decision = self.policy.observe(result)
        record = round_record(
            self.policy, result, decision, cost,
            epochs=retrain_epochs,
            pruned_channels=step.removed,
            wall_time_s=round(time.monotonic() - started, 3),
            rewinding=self.rewinding,
            threshold_reference=self.threshold_reference,
            mask_digest=mask_digest(self.model),
            repeat_of=None if repeat is None else repeat[2],
        )
        self._commit(result, decision, record)
        return decision

    def _commit(self, result, decision, record):
        """Makes a round durable: checkpoint, then log, then the manifest."""
        if result.round == 0 or self.policy.acceptable(result):
            save_state(
                self.run_dir.checkpoint(result.round),
                snapshot_state(self.model),
                {"round": result.round, "threshold": result.threshold},
            )
        self._records.append(record)
        self.run_dir.write_log(self._records)
        self.run_dir.write_manifest(self._manifest("running"))
        self._tensorboard(record)
        line = format_round_line(record)
        logger.info(line)
        if self.verbose:
            print(line, flush=True)

    def _finish(self, decision):
        best = decision.best_round
        self.restore_round(best)
        slim_model = _slim(self.model)
        atomic_save_model(self.model, self.run_dir.final_model)
        atomic_save_model(slim_model, self.run_dir.slim_model)
        self.run_dir.write_manifest(self._manifest("finished", best_round=best))
        try:
            from tf_asap import report  # sits above the core; only renders the summary

            report.write_report(self.run_dir.path)
        except ImportError as error:  # matplotlib is optional
            logger.warning("No round plot written: %s", error)
        self._say(f"Done: best round {best}. {decision.reason}")
        return PruningResult(self.model, slim_model, best, list(self._records), self.run_dir.path)

    # -------------------------------------------------------------- output
    def _reduction_limit(self):
        # The trim measures what the policy measures; with another objective
        # for the thresholds it would trim the wrong quantity, so it is off.
        return self.policy.reduction_limit if self.objective == self.policy.objective else None

    def _say(self, text):
        logger.info(text)
        if self.verbose:
            print(text, flush=True)

    def _tensorboard(self, record):
        if self._writer is None:
            self._writer = _ScalarWriter(self.run_dir.tensorboard)
        values = {
            key: record[key]
            for key in (
                "accuracy", "accuracy_drop", "params_left", "flops_left",
                "params_reduction", "flops_reduction", "threshold",
            )
        }
        values["acceptable"] = float(record["acceptable"])
        self._writer.write(values, step=record["round"])


class _ScalarWriter:
    """Writes TensorBoard scalars with TensorFlow alone.

    `tf.summary.scalar` needs the `tensorboard` package installed; the
    low-level `tf.summary.write` with the scalar plugin's metadata writes the
    same events without it, so TensorBoard (wherever it runs) reads them.
    """

    def __init__(self, directory):
        # The metadata proto has no public Python home outside tensorboard.
        from tensorflow.core.framework import summary_pb2

        self._writer = tf.summary.create_file_writer(directory)
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        ).SerializeToString()

    def write(self, values, step):
        with self._writer.as_default():
            for key, value in values.items():
                tf.summary.write(
                    f"pruning/{key}", tf.constant(float(value), tf.float32),
                    step=int(step), metadata=self._metadata,
                )
        self._writer.flush()

    def close(self):
        self._writer.close()


def _slim(model):
    from tf_asap.core.surgery import slim

    return slim(model)


def _normalised(value):
    # JSON round trip, so a saved config compares equal to a live one.
    return json.loads(json.dumps(value, sort_keys=True))
