"""Model state: the weights, masks and optimizer variables that rewinding and rollback restore.

A `ModelState` is a NumPy copy of `model.weights` (kernels, biases,
BatchNormalization statistics and masks) and, optionally, of the optimizer's
variables (iteration count, learning rate, slots). Restoring both reproduces
training exactly (see the Keras notes on rewinding). States are saved as one
`.npz` file each, written atomically through `tf_asap.files`.

Both front doors use these: `tf_asap.rounds.controller.RoundController`
(states on disk) and `tf_asap.rounds.callback.AdaptivePruning`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os

import numpy as np

from tf_asap.core.layers import MaskedLayer
from tf_asap.errors import ConfigurationError, RunDirectoryError
from tf_asap.files import atomic_write_bytes

__all__ = [
    "ModelState",
    "built_optimizer",
    "check_state_fits",
    "load_state",
    "mask_variable_ids",
    "restore_state",
    "save_state",
    "snapshot_state",
]


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


def optimizer_variable_name(variable):
    """An optimizer variable's path without the optimizer's own name."""
    # "sgd_1/conv1_conv1_kernel_momentum" -> "conv1_conv1_kernel_momentum".
    return variable.path.split("/", 1)[-1]


def built_optimizer(model):
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


def mask_variable_ids(model):
    """The `id`s of every mask variable of `model` (filter and input masks)."""
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
        variables = built_optimizer(model).variables
        optimizer_state = [
            (optimizer_variable_name(variable), np.array(variable.numpy()))
            for variable in variables
        ]
    return ModelState(weights, optimizer_state)


def check_state_fits(kind, variables, saved, name_of):
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
        check_state_fits("weights", variables, state.weights, lambda v: v.path)
        mask_ids = mask_variable_ids(model)
        for variable, (_, value) in zip(variables, state.weights):
            is_mask = id(variable) in mask_ids
            if (is_mask and masks) or (not is_mask and weights):
                variable.assign(value)
    if optimizer and state.optimizer is not None:
        variables = built_optimizer(model).variables
        check_state_fits("optimizer variables", variables, state.optimizer, optimizer_variable_name)
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
