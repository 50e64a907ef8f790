"""The registry of layer rules: everything tf_asap knows about a layer type.

A `LayerRule` says, for one layer class:

- how the layer treats channels (its `kind`): it *produces* new channels
  (convolutions, dense layers), passes channels through one by one
  (*channelwise*: BatchNormalization, activations, pooling, depthwise
  convolutions...), *merges* its inputs channel by channel (`Add`,
  `Multiply`...), *concatenates* them along the channel axis, *flattens*
  them (the channel pattern then repeats once per position), or *blocks*
  (normalizes across channels, mixes them, or is not understood);
- which axes of each of its weights index input or output channels, so that
  surgery slices them and cost counting measures them alike;
- how its config changes when its channel count does (`filters`, `units`,
  Reshape's `target_shape`);
- where it applies its kernels, for FLOPs;
- whether its output is a non-linearity (the activation the paper scores);
- a `check` that blocks the channels of one particular layer (a grouped
  convolution, BatchNormalization over another axis...) with a reason.

Channel analysis (`tf_asap.core.channels`), masking (`tf_asap.core.layers`),
cost counting and surgery read these rules and know nothing else about layer
types. Users teach tf_asap a custom layer with `register_layer`.
"""

import dataclasses

import keras
import numpy as np

from tf_asap.checks import check_choice
from tf_asap.errors import ConfigurationError

KINDS = ("producer", "channelwise", "merge", "concatenate", "flatten", "blocks")

ELEMENTWISE_ACTIVATIONS = frozenset({
    "relu", "relu6", "elu", "selu", "gelu", "swish", "silu", "sigmoid",
    "tanh", "softplus", "softsign", "hard_sigmoid", "hard_silu", "hard_swish",
    "linear", "exponential", "leaky_relu", "mish", "celu", "log_sigmoid",
    "sparse_plus", "squareplus", "hard_tanh", "tanh_shrink", "hard_shrink",
    "soft_shrink", "threshold",
})  # fmt: skip


def output_positions(layer, input_shape, output_shape):
    """Kernel applications of a layer that slides over its output (convolution, dense)."""
    return int(np.prod(output_shape[1:-1], dtype=np.int64))


def input_positions(layer, input_shape, output_shape):
    """Kernel applications of a transposed convolution: one per input position."""
    return int(np.prod(input_shape[1:-1], dtype=np.int64))


@dataclasses.dataclass(frozen=True)
class LayerRule:
    """How one layer type treats channels.

    Args:
        kind: `"producer"` (its output channels are new: they form a channel
            group that can be pruned, and it reads its input's channels as a
            consumer), `"channelwise"` (output channel `i` depends only on input
            channel `i`), `"merge"` (element-wise over several inputs, which
            are then pruned together), `"concatenate"`, `"flatten"` or
            `"blocks"` (the channels it touches are never pruned).
        weight_axes: Which axes of each weight hold channels: a dict
            `{weight name: {axis: "in" | "out"}}` (the weight name is the last
            part of `variable.path`, e.g. `"kernel"`; negative axes count from
            the end), or a callable `(layer, variable) -> {axis: (kind,
            expand)}` where `expand` is the number of consecutive entries per
            channel (a depth multiplier). `"in"` is the layer's input channels
            (for a channel-wise layer, also its output channels), `"out"` a
            producer's own output channels. An axis whose length does not match
            is left alone. Defaults to `None` (no weight holds channels).
        channels_key: For producers, the attribute and config key holding the
            number of output channels (`"filters"`, `"units"`). Defaults to
            `None`.
        resize_config: For other layers whose config names the channel count,
            `(config, channels) -> config` rewriting it for `channels` output
            channels (Reshape's `target_shape`). Defaults to `None`.
        kernel_positions: `(layer, input_shape, output_shape) -> int`, how many
            times the layer applies each kernel entry; FLOPs of a weight whose
            name contains `"kernel"` are `2 x positions x its size`. Defaults
            to `output_positions`.
        nonlinear: Whether the layer's output is a non-linearity (`True` for
            ReLU), or `None` to read the layer's `activation` attribute.
            Defaults to `None`.
        flattened_input: Whether a producer may read a flattened tensor (a
            `Dense` after `Flatten`). Defaults to `False`.
        check: Optional `(layer, input_shapes, output_shapes) -> str`: a
            reason to block this particular layer's channels, or `""`.
            Defaults to `None`.
        reason: For `kind="blocks"`, why (e.g. "normalizes across
            channels"). Defaults to `""`.

    Example:

    >>> rule = LayerRule("channelwise", weight_axes={"scale": {0: "in"}})
    """

    kind: str
    weight_axes: object = None
    channels_key: str = None
    resize_config: object = None
    kernel_positions: object = output_positions
    nonlinear: object = None
    flattened_input: bool = False
    check: object = None
    reason: str = ""

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        if self.kind == "producer" and not self.channels_key:
            raise ConfigurationError(
                "A producer LayerRule needs channels_key, the attribute and config "
                "key holding its number of output channels; received none. Pass "
                "e.g. channels_key='filters'."
            )
        if self.weight_axes is not None and not (callable(self.weight_axes) or isinstance(self.weight_axes, dict)):
            raise ConfigurationError(
                "LayerRule weight_axes must be a dict {weight name: {axis: 'in' | "
                f"'out'}} or a callable; received {self.weight_axes!r}."
            )

    def axes(self, layer, variable):
        """`{axis: (kind, expand)}` of one weight of `layer`."""
        if self.weight_axes is None:
            return {}
        if callable(self.weight_axes):
            return dict(self.weight_axes(layer, variable))
        rank = len(variable.shape)
        spec = self.weight_axes.get(weight_name(variable), {})
        return {axis % rank if rank else axis: (kind, 1) for axis, kind in spec.items()}

    def blocking_reason(self, layer, input_shapes, output_shapes):
        """Why this layer's channels cannot be pruned, or `""`."""
        if self.kind == "blocks":
            return f"layer '{layer.name}' ({type(layer).__name__}) {self.reason}"
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            return f"layer '{layer.name}' uses data_format='channels_first'"
        return self.check(layer, input_shapes, output_shapes) if self.check else ""

    def is_nonlinear(self, layer):
        """Whether `layer`'s output is an element-wise non-linearity."""
        if self.nonlinear is not None:
            return bool(self.nonlinear)
        activation = getattr(layer, "activation", None)
        if activation is None:
            return False
        name = activation_name(activation)
        return name != "linear" and name in ELEMENTWISE_ACTIVATIONS


_REGISTRY = {}


def register_layer(layer_class, rule):
    """Declares how a layer type treats channels, so tf_asap can prune around it.

    A layer without a rule blocks every channel group it touches (they are kept
    whole, with a reason naming it). Registering a rule makes those groups
    prunable: channel analysis follows the channels through it, surgery slices
    its weights and rewrites its config, and cost counting measures it. Rules
    match the exact class (a subclass may change what its channels mean).
    Registering a class again replaces its rule.

    Args:
        layer_class: A `keras.layers.Layer` subclass (or a `keras.Operation`
            subclass, for operations recorded by `keras.ops` calls).
        rule: A `LayerRule`.

    Raises:
        ConfigurationError: If `layer_class` is not a Layer class or `rule`
            is not a `LayerRule`.

    Example:

    >>> class ChannelScale(keras.layers.Layer):   # y = x * scale, per channel
    ...     def build(self, shape):
    ...         self.scale = self.add_weight(name="scale", shape=(shape[-1],))
    ...     def call(self, x):
    ...         return x * self.scale
    >>> tf_asap.register_layer(ChannelScale,
    ...     tf_asap.LayerRule("channelwise", weight_axes={"scale": {0: "in"}}))
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.Operation)):
        raise ConfigurationError(
            f"register_layer expects a keras.layers.Layer subclass; received {layer_class!r}. "
            "Pass the class itself, e.g. register_layer(MyLayer, rule)."
        )
    if not isinstance(rule, LayerRule):
        raise ConfigurationError(
            f"register_layer expects a tf_asap.LayerRule; received {type(rule).__name__}. "
            "Build one, e.g. LayerRule('channelwise', weight_axes={'scale': {0: 'in'}})."
        )
    _REGISTRY[layer_class] = rule


def rule_for(layer):
    """The `LayerRule` of `layer`'s exact class, or `None` if it has none."""
    return _REGISTRY.get(type(layer))


def is_producer(layer):
    """Whether `layer`'s rule makes it produce prunable channels."""
    rule = rule_for(layer)
    return rule is not None and rule.kind == "producer"


def output_channels(layer):
    """Number of output channels of a producer (its filters or units)."""
    return int(getattr(layer, rule_for(layer).channels_key))


def weight_name(variable):
    """A stable key of a variable inside its layer (its path without the layer prefix)."""
    return variable.path.split("/")[-1]


def is_kernel(variable):
    """Whether a weight is a kernel that multiplies (counted in FLOPs)."""
    return "kernel" in weight_name(variable)


def activation_name(activation):
    """The lower-case name of an activation function or object."""
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return name.lower()


def channel_axes(layer):
    """Which axes of each weight of `layer` index channels.

    Args:
        layer: A Keras layer (not a `MaskedLayer`: pass its `.layer`).

    Returns:
        A list with one entry per `layer.weights`: a dict mapping axis to
        `("in", expand)` for an input-channel axis or `("out", expand)` for an
        output-channel axis; empty for a layer without a rule.
    """
    rule = rule_for(layer)
    if rule is None:
        return [{} for _ in layer.weights]
    return [rule.axes(layer, variable) for variable in layer.weights]


def resized_config(layer, channels):
    """`layer`'s config rewritten for `channels` output channels (`None`: unchanged)."""
    rule = rule_for(layer)
    if rule is None:
        return None
    if rule.kind == "producer":
        config = layer.get_config()
        config[rule.channels_key] = int(channels)
        return config
    if rule.resize_config is not None:
        return rule.resize_config(layer.get_config(), int(channels))
    return None
