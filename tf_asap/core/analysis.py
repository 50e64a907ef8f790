"""Computing a `ChannelAnalysis`: following channels through a model, layer by layer.

`analyze` walks the flat graph (`tf_asap.core.keras_graph`) once, asking each
layer's rule (`tf_asap.core.rules`) how it treats channels, and merges the
channels that must be pruned together with a union-find. See
`tf_asap.core.channels` for what the result means.
"""

import collections
import dataclasses

import numpy as np

from tf_asap.core import keras_graph, rules
from tf_asap.core.channels import ChannelAnalysis
from tf_asap.core.layers import MaskedLayer, unwrap
from tf_asap.errors import UnsupportedModelError


class _UnionFind:
    """Channel groups being merged; each root holds the group's size and blocking reason."""

    def __init__(self):
        self.parent = []
        self.size = []
        self.reason = []

    def new(self, size, reason=""):
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.reason.append(reason)
        return len(self.parent) - 1

    def find(self, g):
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if b < a:
            a, b = b, a
        self.parent[b] = a
        self.reason[a] = self.reason[a] or self.reason[b]
        return a

    def block(self, g, reason):
        g = self.find(g)
        if not self.reason[g]:
            self.reason[g] = reason

    def lines_up(self, a, b):
        """Whether two tensor states hold groups of the same sizes in the same order."""
        return (
            a.repeat == b.repeat
            and len(a.groups) == len(b.groups)
            and all(self.size[self.find(x)] == self.size[self.find(y)] for x, y in zip(a.groups, b.groups))
        )


@dataclasses.dataclass(frozen=True)
class _State:
    """The channels of one tensor: the groups along its channel axis, in order.

    `repeat` > 1 marks a flattened tensor whose features are the channel
    pattern repeated once per spatial position. An opaque tensor is a single
    unprunable group.
    """

    groups: tuple
    repeat: int = 1


def unknown_layer_reason(op):
    """The reason recorded for a layer without a rule."""
    layer = unwrap(op)
    kind = type(layer).__name__
    return (
        f"layer '{getattr(layer, 'name', kind)}' of type {kind}, whose channel behaviour "
        "tf_asap does not know, so its channels are kept whole: register a rule or pass "
        f"ignored_layers (tf_asap.register_layer({kind}, tf_asap.LayerRule(...)) declares "
        "how it treats channels)"
    )


class _Walk:
    """The state of one analysis pass: tensor states and groups being merged."""

    def __init__(self, graph):
        self.graph = graph
        self.uf = _UnionFind()
        self.states = {}
        self.producer_calls = collections.defaultdict(list)
        self.min_filters = {}
        self.producer_group = {}  # id(layer) -> group, so shared layers share a group
        self.first_inputs = {}  # id(op) -> input states of its first call

    def opaque(self, key, reason):
        shape = self.graph.shape(key)
        width = shape[-1] if shape and shape[-1] else 1
        self.states[key] = _State((self.uf.new(int(width), reason),))

    def block_inputs(self, call, reason):
        for k in call.inputs:
            for g in self.states[k].groups if k in self.states else ():
                self.uf.block(g, reason)

    def block_call(self, call, reason):
        self.block_inputs(call, reason)
        for k in call.outputs:
            self.opaque(k, reason)

    def couple_shared_calls(self, call, name, in_states):
        # A shared layer slices its weights once for all its calls, so the
        # input channels of every call must be pruned alike.
        if id(call.op) not in self.first_inputs:
            self.first_inputs[id(call.op)] = in_states
            return
        for a, b in zip(self.first_inputs[id(call.op)], in_states):
            if self.uf.lines_up(a, b):
                for x, y in zip(a.groups, b.groups):
                    self.uf.union(x, y)
            else:
                self.block_inputs(call, f"shared layer '{name}' is called on tensors whose channels do not line up")

    def produce(self, call, layer, rule, reason):
        op, name = call.op, layer.name
        if not reason and self.states[call.inputs[0]].repeat > 1 and not rule.flattened_input:
            reason = f"layer '{name}' reads a flattened tensor"
        if reason:
            self.block_inputs(call, reason)
        if id(op) in self.producer_group:
            group = self.producer_group[id(op)]
        else:
            group = self.uf.new(rules.output_channels(layer), reason)
            self.producer_group[id(op)] = group
            if isinstance(op, MaskedLayer):
                self.min_filters[group] = op.min_filters
                if not op.prunable:
                    self.uf.block(group, f"layer '{name}' is in ignored_layers")
        self.producer_calls[group].append(call)
        self.states[call.outputs[0]] = _State((group,))

    def merge(self, call, name, in_states):
        if any(s.repeat != 1 for s in in_states):
            return self.block_call(call, f"merge '{name}' combines flattened tensors")
        # A tensor of width 1 broadcasts (a per-position gate): it carries no channels.
        full = [s for s, k in zip(in_states, call.inputs) if self.graph.shape(k)[-1] != 1] or in_states
        if not all(self.uf.lines_up(s, full[0]) for s in full):
            return self.block_call(call, f"merge '{name}' combines tensors whose channel groups do not line up")
        for s in full[1:]:
            for a, b in zip(s.groups, full[0].groups):
                self.uf.union(a, b)
        self.states[call.outputs[0]] = full[0]

    def flatten(self, call, name, in_state):
        shape = self.graph.shape(call.inputs[0])
        if in_state.repeat != 1 or any(d is None for d in shape[1:-1]):
            return self.block_call(call, f"Flatten '{name}' reads a tensor of unknown or flattened shape {shape}")
        self.states[call.outputs[0]] = _State(in_state.groups, int(np.prod(shape[1:-1], dtype=np.int64)))

    def step(self, call):
        """Follows channels through one call."""
        layer = unwrap(call.op)
        name = getattr(layer, "name", type(layer).__name__)
        in_states = [self.states.get(k) for k in call.inputs]
        if not call.inputs or any(s is None for s in in_states):
            for k in call.outputs:
                self.opaque(k, f"channels come from '{name}', whose inputs are not followed")
            return
        self.couple_shared_calls(call, name, in_states)
        rule = rules.rule_for(layer)
        if rule is None and not isinstance(call.op, MaskedLayer):
            return self.block_call(call, unknown_layer_reason(layer))
        in_shapes = [self.graph.shape(k) for k in call.inputs]
        out_shapes = [self.graph.shape(k) for k in call.outputs]
        reason = rule.blocking_reason(layer, in_shapes, out_shapes)
        if not reason and not keras_graph.has_only_scalar_constants(call):
            reason = f"operation '{name}' combines the channels with a constant array"
        if rule.kind == "producer":
            return self.produce(call, layer, rule, reason)
        if rule.kind == "channelwise":
            if reason:
                self.block_inputs(call, reason)
            for k in call.outputs:
                self.states[k] = in_states[0]
            return
        if reason:
            return self.block_call(call, reason)
        if rule.kind == "merge":
            return self.merge(call, name, in_states)
        if rule.kind == "flatten":
            return self.flatten(call, name, in_states[0])
        if rule.kind == "concatenate" and all(s.repeat == 1 for s in in_states):
            self.states[call.outputs[0]] = _State(tuple(g for s in in_states for g in s.groups))
            return
        self.block_call(call, f"layer '{name}' ({type(layer).__name__}) combines flattened tensors")


def analyze(model):
    """Follows channels through `model` and returns a `ChannelAnalysis`.

    Args:
        model: A functional or Sequential `keras.Model`.

    Returns:
        A `ChannelAnalysis`; its `groups` attribute is the list of
        `ChannelGroup`s.

    Raises:
        UnsupportedModelError: For subclassed models and models without a
            known input shape.
    """
    graph = keras_graph.flatten_graph(model)
    walk = _Walk(graph)
    for key, layer in zip(graph.inputs, graph.input_layers):
        shape = graph.shape(key)
        if shape[-1] is None:
            raise UnsupportedModelError(
                f"Input '{layer.name}' has an unknown channel dimension (shape "
                f"{shape}). Build the model with a fixed input shape, e.g. "
                "keras.Input(shape=(32, 32, 3))."
            )
        walk.opaque(key, f"channels come from model input '{layer.name}'")
    for call in graph.calls:
        walk.step(call)
    for k in graph.outputs:
        for g in walk.states[k].groups if k in walk.states else ():
            walk.uf.block(g, "channels reach a model output")
    return ChannelAnalysis(model, graph, walk.uf, walk.states, walk.producer_calls, walk.min_filters)


def channel_groups(model, analysis=None):
    """Finds the groups of channels that must be pruned together.

    Args:
        model: A functional or Sequential `keras.Model`, usually one returned
            by `tf_asap.make_prunable`.
        analysis: The model's `ChannelAnalysis`, if already computed.
            Defaults to `None` (analyse the model).

    Returns:
        A list of `ChannelGroup`, one per set of coupled output channels, in
        the order of their first producer. Unprunable groups are included with
        `prunable=False` and a `reason`.

    Raises:
        UnsupportedModelError: For subclassed models and models without a
            known input shape.

    Example:

    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    >>> outputs = keras.layers.Conv2D(2, 3, name="c2")(x)
    >>> [(g.name, g.size, g.prunable) for g in channel_groups(keras.Model(inputs, outputs))]
    [('c1', 4, True), ('c2', 2, False)]
    """
    return (analysis or analyze(model)).groups
