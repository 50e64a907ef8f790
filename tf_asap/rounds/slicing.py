"""The slicing plan: where each variable of a masked model lives in its slimmed copy.

`tf_asap.core.surgery.slim` builds a smaller model from a masked one; the
plan records, for every variable of the masked model, which indices along
which axes survive, so that weights, BatchNormalization statistics, saved
states and optimizer slots can be moved between the two models
(`tf_asap.rounds.slim_training`). A plan is made once per set of masks and
carries their fingerprint, so a plan for other masks is refused.
"""

import dataclasses

import keras
import numpy as np

from tf_asap.core.analysis import analyze
from tf_asap.core.layers import MaskedLayer, is_maskable
from tf_asap.core.masks import is_prunable_model, mask_digest
from tf_asap.core.rules import channel_axes
from tf_asap.errors import ConfigurationError, UnsupportedModelError
from tf_asap.rounds.state import mask_variable_ids


def _keep_indices_by_layer(model):
    """{layer name: (input keep indices, output keep indices)}, as surgery slices.

    `None` means the axis is not sliced. Channel-wise layers (BatchNorm,
    depthwise convolutions, PReLU) use their input indices for both.
    """
    analysis = analyze(model)
    by_op = analysis.call_indices(analysis.current_keep())
    indices = {}
    for call in analysis.graph.calls:
        name = getattr(call.op, "name", None)
        if name in indices or id(call.op) not in by_op:
            continue
        in_index, out_index, _, _ = by_op[id(call.op)]
        inner = call.op.layer if isinstance(call.op, MaskedLayer) else call.op
        if in_index is not None and out_index is not None and not is_maskable(inner):
            out_index = in_index
        indices[name] = (in_index, out_index)
    return indices


# ---------------------------------------------------------------------------
# The plan.


@dataclasses.dataclass(frozen=True)
class VariableSlice:
    """How one variable of the masked model maps onto the slim model.

    Attributes:
        layer: Name of the layer holding the variable (the same in both
            models).
        position: Index of the variable among the layer's weights in the
            slim model (the wrapped layer's weights for a `MaskedLayer`).
        axes: `{axis: kept indices}` for every axis that indexes channels;
            axes not listed are kept whole.
    """

    layer: str
    position: int
    axes: dict

    def take(self, value):
        """The slim model's part of a full-size array."""
        value = np.asarray(value)
        for axis, index in self.axes.items():
            value = np.take(value, index, axis=axis)
        return value

    def put(self, full, part):
        """A copy of `full` with the kept positions replaced by `part`."""
        full = np.array(full)
        selector = tuple(
            self.axes.get(axis, np.arange(size)) for axis, size in enumerate(full.shape)
        )
        full[np.ix_(*selector)] = part
        return full


@dataclasses.dataclass(frozen=True)
class SlicingPlan:
    """Where every variable of a masked model lives in its slimmed copy.

    Made by `slicing_plan` for one set of masks; `build_slim_trainable` and
    `write_back` refuse a plan whose masks are no longer the model's.

    Attributes:
        slices: One entry per `masked_model.weights`, in order: a
            `VariableSlice`, or `None` for a mask variable (masks are not
            part of the slim model).
        mask_digest: The fingerprint of the masks the plan was made for
            (`tf_asap.core.masks.mask_digest`).
    """

    slices: tuple
    mask_digest: str

    def slice_weights(self, values):
        """Slices `[array per masked-model weight]` to the slim model's arrays.

        Returns:
            `{(layer, position): array}` for every non-mask variable.
        """
        return {
            (entry.layer, entry.position): entry.take(value)
            for entry, value in zip(self.slices, values)
            if entry is not None
        }


def slicing_plan(masked_model):
    """Derives, once per set of masks, how to slice every variable of a model.

    Uses the same channel analysis and keep indices as
    `tf_asap.core.surgery.slim`, so a sliced array has exactly the shape of
    the slim model's variable.

    Args:
        masked_model: A model returned by `tf_asap.make_prunable`, with its
            masks set.

    Returns:
        A `SlicingPlan`.

    Raises:
        ConfigurationError: If the model has no masks.
        UnsupportedModelError: For a variable the plan cannot place.

    Example:

    >>> plan = slicing_plan(pm)
    >>> len(plan.slices) == len(pm.weights)
    True
    """
    if not isinstance(masked_model, keras.Model) or not is_prunable_model(masked_model):
        raise ConfigurationError(
            "slicing_plan needs a prunable model (one returned by "
            f"tf_asap.make_prunable); received {type(masked_model).__name__} "
            f"'{getattr(masked_model, 'name', masked_model)}'. Call "
            "pm = tf_asap.make_prunable(model) and pass pm."
        )
    indices = _keep_indices_by_layer(masked_model)
    placed = {}
    for layer in masked_model.layers:
        inner = layer.layer if isinstance(layer, MaskedLayer) else layer
        if not inner.weights:
            continue
        in_index, out_index = indices.get(layer.name, (None, None))
        for position, (variable, axes) in enumerate(zip(inner.weights, channel_axes(inner))):
            kept = {}
            for axis, (kind, expand) in axes.items():
                index = in_index if kind == "in" else out_index
                if index is None:
                    continue
                if expand > 1:
                    index = (index[:, None] * expand + np.arange(expand)[None, :]).reshape(-1)
                if len(index) != variable.shape[axis]:
                    kept[axis] = np.asarray(index, dtype=np.int64)
            placed[id(variable)] = VariableSlice(layer.name, position, kept)
    masks = mask_variable_ids(masked_model)
    slices = []
    for variable in masked_model.weights:
        if id(variable) in masks:
            slices.append(None)
        elif id(variable) in placed:
            slices.append(placed[id(variable)])
        else:
            raise UnsupportedModelError(
                f"Variable '{variable.path}' of model '{masked_model.name}' belongs "
                "to no top-level layer, so it cannot be placed in the slim model. "
                "Build the model from plain Keras layers (make_prunable flattens "
                "nested models)."
            )
    return SlicingPlan(tuple(slices), mask_digest(masked_model))
