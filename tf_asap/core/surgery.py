"""Model surgery: physically remove pruned channels.

`slim` turns a masked model into a plain, smaller Keras model. For every
channel group it removes the pruned filters from each producer (kernel
columns and bias entries), the matching entries of every channel-wise layer
the channels pass (BatchNormalization statistics, depthwise kernels, PReLU
slopes), and the matching input channels of every consumer (kernel rows of
the next convolution, rows of a `Dense` after `Flatten` at every spatial
position, slices at their offsets after `Concatenate`).

Because a masked channel contributes nothing anywhere downstream (see
`tf_asap.core.layers`), the slimmed model computes the same function as the masked
one, up to float rounding.
"""

import numpy as np

from tf_asap.core import graph
from tf_asap.core.layers import MaskedLayer, clone_layer, is_maskable
from tf_asap.core.masks import current_keep, is_prunable_model


def _slice(value, axes, in_index, out_index):
    for axis, (kind, expand) in axes.items():
        index = in_index if kind == "in" else out_index
        if index is None:
            continue
        if expand > 1:
            index = (index[:, None] * expand + np.arange(expand)[None, :]).reshape(-1)
        value = np.take(value, index, axis=axis)
    return value


def slim(model):
    """Returns a plain Keras model with the pruned channels removed.

    Args:
        model: A model returned by `tf_asap.make_prunable`, with masks set by
            `tf_asap.apply_masks`. A plain model is copied unchanged.

    Returns:
        A new functional `keras.Model` without tf_asap layers, with the same
        layer names, fewer filters, and the same outputs as `model` for any
        input. It is not compiled: compile it before training or evaluating.

    Raises:
        UnsupportedModelError: For subclassed models or unknown input shapes.

    Example:

    >>> small = slim(pm)
    >>> np.allclose(small(x), pm(x), atol=1e-5)
    True
    """
    analysis = graph.analyze(model)
    keep = current_keep(analysis) if is_prunable_model(model) else {}

    # Channel indices kept at each layer's input and output (first call; the
    # analysis couples the channels of every call of a shared layer).
    indices = {}
    for call in analysis.graph.calls:
        if id(call.op) in indices or not call.inputs or not call.outputs:
            continue
        in_key, out_key = call.inputs[0], call.outputs[0]
        in_index = analysis.keep_indices(in_key, keep) if in_key in analysis._states else None
        out_index = analysis.keep_indices(out_key, keep) if out_key in analysis._states else None
        indices[id(call.op)] = (in_index, out_index)

    def make_op(op):
        inner = op.layer if isinstance(op, MaskedLayer) else op
        if not is_maskable(inner):
            return clone_layer(inner)
        config = inner.get_config()
        _, out_index = indices[id(op)]
        count_key = "units" if "units" in config else "filters"
        if out_index is not None:
            config[count_key] = int(len(out_index))
        return type(inner).from_config(config)

    def set_weights(old, new):
        inner = old.layer if isinstance(old, MaskedLayer) else old
        if old is new or not getattr(inner, "weights", None):
            return
        in_index, out_index = indices.get(id(old), (None, None))
        if in_index is not None and out_index is not None and not is_maskable(inner):
            # Channel-wise layers: input and output channels are the same.
            out_index = in_index
        values = [
            _slice(value, axes, in_index, out_index)
            for value, axes in zip(inner.get_weights(), graph.channel_axes(inner))
        ]
        new.set_weights(values)

    return graph.replay(model, make_op, set_weights)
