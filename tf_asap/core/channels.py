"""Channel analysis: which channels of a model must be pruned together.

This module answers one question for the rest of tf_asap: which output
channels of which layers must be pruned *together*, and where does each such
set of channels go. The answer is a `ChannelAnalysis`, computed once per model
state by `analyze` and passed between steps; its `groups` are the
`ChannelGroup`s, the data contract between the graph, importance scoring,
thresholds and surgery. This module holds the contract and the queries on an
analysis; `tf_asap.core.analysis` computes it.

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

from tf_asap.core import rules
from tf_asap.core.layers import MaskedLayer, unwrap
from tf_asap.errors import MaskError


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
            if is_producer_call(call.op):
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
        if is_producer_call(call.op) or not call.outputs or call.outputs[0] not in self._states:
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


def is_producer_call(op):
    return isinstance(op, MaskedLayer) or rules.is_producer(op)


def _is_nonlinear(op):
    layer = unwrap(op)
    rule = rules.rule_for(layer)
    return rule is not None and rule.is_nonlinear(layer)
