"""Channel analysis: which channels of a model must be pruned together.

This module answers one question for the rest of tf_asap: which output
channels of which layers must be pruned *together*, and where does each such
set of channels go. The answer is a `ChannelAnalysis`, computed once per model
state by `analyze` and passed between steps; its `groups` are the
`ChannelGroup`s, the data contract between the graph, importance scoring,
thresholds and surgery.

How channels are followed is decided by each layer's rule
(`tf_asap.core.rules`):

- a *producer* (convolution, dense layer) starts a new group whose size is its
  number of filters or units; the producers reading that group's channels as
  input channels are its *consumers*;
- a *channel-wise* layer passes a group through unchanged;
- a *merge* (`Add`, `Multiply`...) couples its inputs: channel `i` of every
  input lives or dies together, so their groups are merged (a residual stage
  becomes one group; a squeeze-and-excitation gate joins its feature map);
- a *concatenation* along the channel axis keeps each input group at its
  offset; a *flatten* repeats the channel pattern once per position.

A group is *not prunable* when removing its channels would change what the
model means or when tf_asap cannot prove the surgery exact: it reaches a model
output, or touches a layer that blocks (normalizes across channels, has no
rule, fails its rule's check). The reason is recorded in
`ChannelGroup.reason`, never silently ignored.
"""

import collections
import dataclasses

import numpy as np

from tf_asap.core import keras_graph, rules
from tf_asap.core.layers import MaskedLayer, unwrap
from tf_asap.errors import MaskError, UnsupportedModelError


@dataclasses.dataclass(frozen=True)
class ChannelRef:
    """Where a group's channels sit inside a layer's input or output.

    Attributes:
        layer: Name of the layer.
        offset: Index of the group's first channel along the layer's channel
            axis (non-zero after a `Concatenate`).
        repeat: How many times the channel pattern repeats along the feature
            axis, for a `Dense` that reads a flattened tensor (the number of
            spatial positions); `1` otherwise.
        stride: Length of one repetition of that pattern (the number of
            channels of the flattened tensor); equal to the group size when
            `repeat == 1` and nothing is concatenated.
    """

    layer: str
    offset: int = 0
    repeat: int = 1
    stride: int = 0


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """A set of channels that must be pruned together.

    Attributes:
        name: The group's name: the name of its first producer layer.
        size: Number of channels.
        producers: Names of the layers whose output channels these are
            (several when a residual `Add` couples them).
        passes_through: Where the channels pass non-producing layers
            (BatchNormalization, activations, depthwise convolutions, merges,
            pooling...), as `ChannelRef`s into each layer's output.
        consumers: Where the channels are read as input channels by a
            producer, as `ChannelRef`s into its input.
        activations: The activation tensors that score this group's filters:
            the output of the first non-linearity after each producer (the
            paper's ReLU output), as `ChannelRef`s into each layer's output.
        prunable: Whether channels of this group may be removed.
        reason: Why not, when `prunable` is false.
        min_filters: The fewest channels pruning may leave.
    """

    name: str
    size: int
    producers: tuple
    passes_through: tuple
    consumers: tuple
    activations: tuple
    prunable: bool
    reason: str = ""
    min_filters: int = 1


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


class ChannelAnalysis:
    """Channel states of every tensor of a model, and the groups they form.

    Build it with `analyze(model)`, once per model structure, and pass it to
    the functions that accept `analysis=` (masks, counting, surgery,
    thresholds): it does not change when masks do.

    Attributes:
        model: The analysed model.
        graph: Its `tf_asap.core.keras_graph.FlatGraph`.
        groups: The `ChannelGroup`s, in the order of their first producer.
        groups_by_name: `{name: ChannelGroup}`.
    """

    def __init__(self, model, graph, union_find, states, producer_calls, min_filters):
        self.model = model
        self.graph = graph
        self._uf = union_find
        self._states = states
        self._producer_calls = producer_calls  # group id -> [OpCall]
        self._min_filters = min_filters  # group id -> int
        self._roots = {}  # group name -> root id
        self.groups = self._build_groups()
        self.groups_by_name = {g.name: g for g in self.groups}

    def has_channels(self, key):
        """Whether tensor `key` of `graph` has followed channels."""
        return key in self._states

    def channel_layout(self, key):
        """`([(root id, offset)], repeat, width)` along the channel axis of tensor `key`."""
        state = self._states[key]
        layout, offset = [], 0
        for g in state.groups:
            root = self._uf.find(g)
            layout.append((root, offset))
            offset += self._uf.size[root]
        return layout, state.repeat, offset

    def keep_indices(self, key, keep):
        """Indices along tensor `key`'s last axis that survive pruning, or `None`.

        Args:
            key: A tensor key of `graph`.
            keep: `{root id: bool array}` (from `keep_by_root`); groups not in
                it keep every channel.

        Returns:
            An int array, or `None` if the tensor's channels are not followed.
        """
        if key not in self._states:
            return None
        layout, repeat, width = self.channel_layout(key)
        pattern = np.ones((width,), dtype=bool)
        for root, offset in layout:
            group_keep = keep.get(root)
            if group_keep is not None:
                pattern[offset : offset + len(group_keep)] = group_keep
        return np.flatnonzero(np.tile(pattern, repeat))

    def root_of(self, name):
        """The root id of the group called `name`."""
        return self._roots[name]

    def current_keep(self):
        """`{root id: bool array}` read from the producers' filter masks.

        A group with several producers keeps a channel only if every producer
        keeps it. Plain (unmasked) models keep everything: `{}`.
        """
        keep = {}
        for group in self.groups:
            masks = []
            for name in group.producers:
                layer = self.model.get_layer(name)
                if isinstance(layer, MaskedLayer):
                    masks.append(np.asarray(layer.filter_mask.numpy()) > 0.5)
            if masks:
                keep[self._roots[group.name]] = np.logical_and.reduce(masks)
        return keep

    def keep_by_root(self, masks=None):
        """The model's current keep-masks with `masks` (`{group name: keep}`) laid over them.

        Raises:
            MaskError: For a group name the model does not have or a mask of
                the wrong length.
        """
        keep = self.current_keep()
        for name, group_keep in (masks or {}).items():
            group = self.groups_by_name.get(name)
            group_keep = np.asarray(group_keep, bool)
            if group is None or group_keep.shape != (group.size,):
                expected = f"shape ({group.size},)" if group else f"one of {', '.join(self.groups_by_name)}"
                raise MaskError(
                    f"Candidate mask '{name}' of shape {group_keep.shape} does not fit model "
                    f"'{self.model.name}': expected {expected}. Pass masks keyed by "
                    "ChannelGroup.name, one bool per channel."
                )
            keep[self._roots[name]] = group_keep
        return keep

    def call_indices(self, keep):
        """What survives at each layer's first call, for surgery.

        Args:
            keep: `{root id: bool array}` (from `keep_by_root`).

        Returns:
            `{id(op): (in_index, out_index, in_width, out_width)}`: the kept
            indices along the channel axis of the layer's first input and
            output (`None` where channels are not followed) and those axes'
            lengths.
        """
        indices = {}
        for call in self.graph.calls:
            if id(call.op) in indices or not call.inputs or not call.outputs:
                continue
            in_key, out_key = call.inputs[0], call.outputs[0]
            indices[id(call.op)] = (
                self.keep_indices(in_key, keep),
                self.keep_indices(out_key, keep),
                self.graph.shape(in_key)[-1],
                self.graph.shape(out_key)[-1],
            )
        return indices

    def _build_groups(self):
        uf = self._uf
        producers = collections.defaultdict(list)
        for g, calls in self._producer_calls.items():
            producers[uf.find(g)].extend(calls)
        passes, consumers = self._references()
        groups = []
        seen_names = collections.Counter()
        for root in sorted(producers, key=lambda r: self.graph.calls.index(producers[r][0])):
            calls = producers[root]
            names = _unique(call.op.name for call in calls)
            name = names[0]
            seen_names[name] += 1
            if seen_names[name] > 1:
                name = f"{name}:{seen_names[name] - 1}"
            self._roots[name] = root
            reason = uf.reason[root]
            groups.append(
                ChannelGroup(
                    name=name,
                    size=uf.size[root],
                    producers=tuple(names),
                    passes_through=tuple(_unique(passes[root])),
                    consumers=tuple(_unique(consumers[root])),
                    activations=tuple(self._activations(calls)),
                    prunable=not reason,
                    reason=reason,
                    min_filters=max(
                        self._min_filters.get(g, 1) for g in self._producer_calls if uf.find(g) == root
                    ),
                )
            )
        return groups

    def _references(self):
        """Where each root group is consumed and where it passes through."""
        passes = collections.defaultdict(list)
        consumers = collections.defaultdict(list)
        for call in self.graph.calls:
            name = getattr(call.op, "name", str(call.op))
            if _is_producer(call.op):
                if call.inputs and call.inputs[0] in self._states:
                    layout, repeat, width = self.channel_layout(call.inputs[0])
                    for root, offset in layout:
                        consumers[root].append(ChannelRef(name, offset, repeat, width))
                continue
            roots_in = {r for k in call.inputs if k in self._states for r, _ in self.channel_layout(k)[0]}
            for out in call.outputs:
                if out in self._states:
                    layout, repeat, width = self.channel_layout(out)
                    for root, offset in layout:
                        if root in roots_in:
                            passes[root].append(ChannelRef(name, offset, repeat, width))
        return passes, consumers

    def _activations(self, producer_calls):
        """The first non-linearity after each producer (see ChannelGroup.activations)."""
        readers = collections.defaultdict(list)
        for call in self.graph.calls:
            for k in call.inputs:
                readers[k].append(call)
        found = []
        for call in producer_calls:
            if _is_nonlinear(call.op):
                found.append(ChannelRef(call.op.name, 0))
                continue
            key, offset, last = call.outputs[0], 0, ChannelRef(call.op.name, 0)
            for _ in range(64):  # bounded walk through linear channel-wise layers
                step = next((c for c in readers[key] if self._continues_channels(c, key)), None)
                if step is None:
                    break
                rule = rules.rule_for(unwrap(step.op))
                if rule is not None and rule.kind == "concatenate":
                    offset += sum(self.channel_layout(i)[2] for i in step.inputs[: step.inputs.index(key)])
                key = step.outputs[0]
                last = ChannelRef(step.op.name, offset)
                if _is_nonlinear(step.op):
                    break
            found.append(last)
        return _unique(found)

    def _continues_channels(self, call, key):
        """Whether `call` carries tensor `key`'s channels on, position by position."""
        if _is_producer(call.op) or not call.outputs or call.outputs[0] not in self._states:
            return False
        if self._states[call.outputs[0]].repeat != 1:
            return False
        # Global pooling drops the positions: the activation is taken before it.
        return len(self.graph.shape(call.outputs[0])) == len(self.graph.shape(key))


def _unique(items):
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _is_producer(op):
    return isinstance(op, MaskedLayer) or rules.is_producer(op)


def _is_nonlinear(op):
    layer = unwrap(op)
    rule = rules.rule_for(layer)
    return rule is not None and rule.is_nonlinear(layer)


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
