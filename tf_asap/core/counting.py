"""Parameters and FLOPs of a model, dense and under its pruning masks.

Costs are computed from the shapes in the model's graph and from the table of
channel axes in `tf_asap.core.graph.channel_axes`, the same table surgery slices
with, so `count_cost(slim(pm)).params == count_cost(pm).effective_params`
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

from tf_asap.core import graph
from tf_asap.errors import UnsupportedModelError
from tf_asap.core.layers import MaskedLayer
from tf_asap.core.masks import current_keep, is_prunable_model


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


def count_cost(model):
    """Counts params and FLOPs of a model, dense and under its masks.

    Args:
        model: A functional or Sequential `keras.Model` with a fixed input
            shape; prunable (from `make_prunable`) or plain.

    Returns:
        A `Cost`. For a plain model, effective and dense figures are equal.

    Raises:
        UnsupportedModelError: For subclassed models or unknown input shapes.

    Example:

    >>> cost = count_cost(pm)
    >>> print(f"{cost.params_reduction:.1%} of params removed")
    """
    analysis = graph.analyze(model)
    keep = current_keep(analysis) if is_prunable_model(model) else {}
    flat = analysis.graph
    per_layer = {}
    order = []
    for call in flat.calls:
        op = call.op
        weights = list(getattr(op, "weights", []) or [])
        if not call.inputs or not call.outputs:
            continue
        in_key, out_key = call.inputs[0], call.outputs[0]
        in_shape = flat.tensors[in_key].shape
        out_shape = flat.tensors[out_key].shape
        if weights and any(d is None for d in tuple(in_shape[1:]) + tuple(out_shape[1:])):
            raise UnsupportedModelError(
                f"Layer '{op.name}' reads a tensor of unknown shape {tuple(in_shape)}, "
                "so its FLOPs cannot be counted. Build the model with a fixed "
                "input shape, e.g. keras.Input(shape=(32, 32, 3))."
            )
        positions = graph.kernel_positions(op, in_shape, out_shape)
        in_width = flat.tensors[in_key].shape[-1] or 0
        out_width = flat.tensors[out_key].shape[-1] or 0
        in_count = len(analysis.keep_indices(in_key, keep)) if in_key in analysis._states else in_width
        out_count = len(analysis.keep_indices(out_key, keep)) if out_key in analysis._states else out_width
        axes = graph.channel_axes(op) if weights else []
        params = eff_params = flops = eff_flops = 0
        for variable, variable_axes in zip(weights, axes):
            if isinstance(op, MaskedLayer) and variable.path.split("/")[-1] in ("filter_mask", "input_mask"):
                continue
            size = int(np.prod(variable.shape, dtype=np.int64))
            sliced = _sliced_size(variable.shape, variable_axes, in_count, out_count, in_width, out_width)
            params += size
            eff_params += sliced
            if positions and graph.is_kernel(variable):
                flops += 2 * positions * size
                eff_flops += 2 * positions * sliced
        name = getattr(op, "name", type(op).__name__)
        if id(op) in per_layer:
            # A shared layer: its weights count once, its FLOPs every call.
            previous = per_layer[id(op)]
            per_layer[id(op)] = dataclasses.replace(
                previous,
                flops=previous.flops + flops,
                effective_flops=previous.effective_flops + eff_flops,
            )
            continue
        layer_type = type(op.layer if isinstance(op, MaskedLayer) else op).__name__
        per_layer[id(op)] = LayerCost(name, layer_type, params, eff_params, flops, eff_flops)
        order.append(id(op))
    layers = tuple(per_layer[i] for i in order)
    return Cost(
        params=sum(layer.params for layer in layers),
        flops=sum(layer.flops for layer in layers),
        effective_params=sum(layer.effective_params for layer in layers),
        effective_flops=sum(layer.effective_flops for layer in layers),
        layers=layers,
    )
