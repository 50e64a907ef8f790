"""Parameters and FLOPs of a model, dense and under its pruning masks.

Costs are computed from the shapes in the model's graph and from the layer
rules' channel axes (`tf_asap.core.rules`), the same axes surgery slices, so `count_cost(slim(pm)).params == count_cost(pm).effective_params`
holds by construction.

Conventions:

- *Params* are the elements of every weight of the model (trainable or not,
  BatchNormalization moving statistics included), masks excluded: for a plain
  model, `count_cost(model).params == model.count_params()`.
- *FLOPs* are 2 x the multiply-accumulates of convolution, depthwise,
  separable, transposed-convolution and dense layers for one input sample.
  Bias additions, normalization, activations, pooling and merges are not
  counted (they are linear in the activation size and fused by runtimes).
"""

import dataclasses

import numpy as np

from tf_asap.core import rules
from tf_asap.core.analysis import analyze
from tf_asap.core.layers import unwrap
from tf_asap.core.masks import is_prunable_model
from tf_asap.errors import UnsupportedModelError


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """Cost of one layer: dense (as built) and effective (under masks)."""

    name: str
    type: str
    params: int
    effective_params: int
    flops: int
    effective_flops: int


@dataclasses.dataclass(frozen=True)
class Cost:
    """Cost of a model.

    Attributes:
        params: Parameters of the model as built.
        flops: FLOPs of one forward pass of one sample as built.
        effective_params: Parameters left once masked channels are removed.
        effective_flops: FLOPs left once masked channels are removed.
        layers: A `LayerCost` per layer, in graph order.
    """

    params: int
    flops: int
    effective_params: int
    effective_flops: int
    layers: tuple

    @property
    def params_reduction(self):
        """Fraction of parameters removed by the masks, in [0, 1]."""
        return 1.0 - self.effective_params / self.params if self.params else 0.0

    @property
    def flops_reduction(self):
        """Fraction of FLOPs removed by the masks, in [0, 1]."""
        return 1.0 - self.effective_flops / self.flops if self.flops else 0.0

    def layer(self, name):
        """The `LayerCost` of the layer called `name`."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_table(self, only_weighted=True):
        """The per-layer costs as a fixed-width text table."""
        rows = [("layer", "type", "params", "eff. params", "FLOPs", "eff. FLOPs")]
        for layer in self.layers:
            if only_weighted and not layer.params:
                continue
            rows.append(
                (layer.name, layer.type, f"{layer.params:,}", f"{layer.effective_params:,}",
                 f"{layer.flops:,}", f"{layer.effective_flops:,}")
            )
        rows.append(
            ("total", "", f"{self.params:,}", f"{self.effective_params:,}",
             f"{self.flops:,}", f"{self.effective_flops:,}")
        )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = []
        for index, row in enumerate(rows):
            cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
            cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:])]
            lines.append("  ".join(cells))
            if index == 0 or index == len(rows) - 2:
                lines.append("-" * len(lines[-1]))
        return "\n".join(lines)


def _sliced_size(shape, axes, in_count, out_count, in_width, out_width):
    """Number of elements of a weight once channels are removed."""
    shape = list(shape)
    for axis, (kind, expand) in axes.items():
        count, width = (in_count, in_width) if kind == "in" else (out_count, out_width)
        if shape[axis] == width * expand:
            shape[axis] = count * expand
    return int(np.prod(shape, dtype=np.int64))


def count_cost(model, masks=None, analysis=None):
    """Counts params and FLOPs of a model, dense and under its masks.

    Candidate masks can be evaluated without writing them into the model:
    `count_cost(pm, masks=candidate)` counts the effective cost as if
    `apply_masks(pm, candidate)` had been called, and leaves the model as it
    is. Deciding code (thresholds, size limits) prices its candidates this way.

    Args:
        model: A functional or Sequential `keras.Model` with a fixed input
            shape; prunable (from `make_prunable`) or plain.
        masks: `{group name: bool keep array}` laid over the model's current
            masks, or `None` for the current masks. Defaults to `None`.
        analysis: The model's `ChannelAnalysis`, if already computed (see
            `tf_asap.core.channels.analyze`). Defaults to `None`.

    Returns:
        A `Cost`. For a plain model without `masks`, effective and dense
        figures are equal.

    Raises:
        UnsupportedModelError: For subclassed models or unknown input shapes.
        MaskError: For a candidate mask naming an unknown group or of the
            wrong length.

    Example:

    >>> cost = count_cost(pm)
    >>> print(f"{cost.params_reduction:.1%} of params removed")
    """
    analysis = analysis or analyze(model)
    if masks is None and not is_prunable_model(model):
        keep = {}
    else:
        keep = analysis.keep_by_root(masks)
    per_layer = {}
    for call in analysis.graph.calls:
        if not call.inputs or not call.outputs:
            continue
        cost = _call_cost(analysis, call, keep)
        previous = per_layer.get(id(call.op))
        if previous is not None:
            # A shared layer: its weights count once, its FLOPs every call.
            cost = dataclasses.replace(
                previous, flops=previous.flops + cost.flops, effective_flops=previous.effective_flops + cost.effective_flops
            )
        per_layer[id(call.op)] = cost
    layers = tuple(per_layer.values())
    return Cost(
        params=sum(layer.params for layer in layers),
        flops=sum(layer.flops for layer in layers),
        effective_params=sum(layer.effective_params for layer in layers),
        effective_flops=sum(layer.effective_flops for layer in layers),
        layers=layers,
    )


def _call_cost(analysis, call, keep):
    """The `LayerCost` of one call, with the channels `keep` leaves."""
    op, flat = call.op, analysis.graph
    layer = unwrap(op)
    name = getattr(op, "name", type(op).__name__)
    weights = list(getattr(layer, "weights", []) or [])
    in_key, out_key = call.inputs[0], call.outputs[0]
    in_shape, out_shape = flat.shape(in_key), flat.shape(out_key)
    if weights and any(d is None for d in in_shape[1:] + out_shape[1:]):
        raise UnsupportedModelError(
            f"Layer '{name}' reads a tensor of unknown shape {in_shape}, "
            "so its FLOPs cannot be counted. Build the model with a fixed "
            "input shape, e.g. keras.Input(shape=(32, 32, 3))."
        )
    rule = rules.rule_for(layer)
    positions = rule.kernel_positions(layer, in_shape, out_shape) if rule and weights else 0
    in_width, out_width = in_shape[-1] or 0, out_shape[-1] or 0
    in_index, out_index = analysis.keep_indices(in_key, keep), analysis.keep_indices(out_key, keep)
    in_count = in_width if in_index is None else len(in_index)
    out_count = out_width if out_index is None else len(out_index)
    params = effective_params = flops = effective_flops = 0
    for variable, axes in zip(weights, rules.channel_axes(layer)):
        size = int(np.prod(variable.shape, dtype=np.int64))
        sliced = _sliced_size(variable.shape, axes, in_count, out_count, in_width, out_width)
        params += size
        effective_params += sliced
        if positions and rules.is_kernel(variable):
            flops += 2 * positions * size
            effective_flops += 2 * positions * sliced
    return LayerCost(name, type(layer).__name__, params, effective_params, flops, effective_flops)
