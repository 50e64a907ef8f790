"""Model surgery: physically remove pruned channels.

`slim` turns a masked model into a plain, smaller Keras model. For every
channel group it removes the pruned filters from each producer (kernel
columns and bias entries), the matching entries of every channel-wise layer
the channels pass (BatchNormalization statistics, depthwise kernels, PReLU
slopes, a registered custom layer's per-channel weights), and the matching
input channels of every consumer (kernel rows of the next convolution, rows of
a `Dense` after `Flatten` at every spatial position, slices at their offsets
after `Concatenate`). Which axes to slice and which config entries to rewrite
(`filters`, `units`, a `Reshape`'s target shape) comes from each layer's rule
(`tf_asap.core.rules`); layers the masks do not change are carried over as
they are.

Because a masked channel contributes nothing anywhere downstream (see
`tf_asap.core.layers`), the slimmed model computes the same function as the
masked one, up to float rounding.
"""

import numpy as np

from tf_asap.core import keras_graph, rules
from tf_asap.core.analysis import analyze
from tf_asap.core.layers import clone_layer, unwrap
from tf_asap.core.masks import is_prunable_model


def _slice(value, axes, indices):
    """`value` with only the kept channels along each channel axis.

    `indices` is `(in_index, out_index, in_width, out_width)`; an axis whose
    length is not its tensor's width times `expand` does not hold those
    channels and is left alone (as `count_cost` leaves it).
    """
    in_index, out_index, in_width, out_width = indices
    for axis, (kind, expand) in axes.items():
        index, width = (in_index, in_width) if kind == "in" else (out_index, out_width)
        if index is None or value.shape[axis] != width * expand:
            continue
        if expand > 1:
            index = (index[:, None] * expand + np.arange(expand)[None, :]).reshape(-1)
        value = np.take(value, index, axis=axis)
    return value


def slim(model, analysis=None):
    """Returns a plain Keras model with the pruned channels removed.

    Args:
        model: A model returned by `tf_asap.make_prunable`, with masks set by
            `tf_asap.apply_masks`. A plain model is copied unchanged.
        analysis: The model's `ChannelAnalysis`, if already computed.
            Defaults to `None` (analyse the model).

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
    analysis = analysis or analyze(model)
    keep = analysis.current_keep() if is_prunable_model(model) else {}
    # Channel indices kept at each layer's input and output (first call; the
    # analysis couples the channels of every call of a shared layer).
    indices = analysis.call_indices(keep)
    no_channels = (None, None, 0, 0)

    def make_op(op):
        layer = unwrap(op)
        out_index = indices.get(id(op), no_channels)[1]
        config = None if out_index is None else rules.resized_config(layer, len(out_index))
        if config is None:
            return clone_layer(layer)  # The masks change nothing in its config.
        return type(layer).from_config(config)

    def set_weights(old, new):
        layer = unwrap(old)
        if layer is new or not getattr(layer, "weights", None):
            return
        in_index, out_index, in_width, out_width = indices.get(id(old), no_channels)
        rule = rules.rule_for(layer)
        if rule is not None and rule.kind != "producer":
            # Channel-wise layers: input and output channels are the same.
            out_index, out_width = in_index, in_width
        values = [
            _slice(value, axes, (in_index, out_index, in_width, out_width))
            for value, axes in zip(layer.get_weights(), rules.channel_axes(layer))
        ]
        new.set_weights(values)

    return keras_graph.replay(model, make_op, set_weights, graph=analysis.graph)
