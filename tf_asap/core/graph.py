"""Channel-dependency analysis of Keras functional graphs.

This module answers one question for the rest of tf_asap: which output
channels of which layers must be pruned *together*, and where does each such
set of channels go. The answer is a list of `ChannelGroup` objects, the one
data contract between the graph, importance scoring, thresholds and surgery.

How channels are followed:

- A convolution or dense layer (a *producer*) starts a new group whose size is
  its number of filters or units. The layers reading that group's channels as
  their input channels are its *consumers*.
- Channel-wise layers (BatchNormalization, activations, PReLU, pooling,
  padding, cropping, dropout, upsampling, DepthwiseConv2D, Identity, a Reshape
  that keeps the channel axis) pass a group through unchanged.
- `Add`, `Subtract`, `Multiply`, `Average`, `Maximum` and `Minimum` couple
  their inputs: channel `i` of every input must live or die together, so their
  groups are merged (a residual stage becomes one group).
- `Concatenate` along the channel axis keeps each input group at its offset.
- `Flatten` and global pooling feed `Dense` layers: after `Flatten` the channel
  pattern repeats once per spatial position (channels-last order).

A group is *not prunable* when removing its channels would change what the
model means or when tf_asap cannot prove the surgery exact: it reaches a model
output, passes a layer that normalizes across channels (LayerNormalization),
or touches any layer whose channel behaviour is unknown (Lambda, custom
layers, a Reshape that mixes channels, raw `keras.ops` calls). The reason is
recorded in `ChannelGroup.reason`, never silently ignored.

Keras exposes no public API for a graph's edges, so this module is the one
place that reads Keras internals (`Functional._nodes_by_depth`,
`Node.arguments`, `Sequential._functional`). Everything else in tf_asap uses
the structures built here.
"""

import collections
import dataclasses
import difflib

import keras
import numpy as np

from tf_asap.errors import UnsupportedModelError
from tf_asap.core.layers import MaskedLayer, is_maskable

# ---------------------------------------------------------------------------
# The data contract.


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
        producers: Names of the convolution/dense layers whose output channels
            these are (several when a residual `Add` couples them).
        passes_through: Where the channels pass channel-wise layers
            (BatchNormalization, activations, depthwise convolutions, merges,
            pooling...), as `ChannelRef`s into each layer's output.
        consumers: Where the channels are read as input channels by a
            convolution or dense layer, as `ChannelRef`s into its input.
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


# ---------------------------------------------------------------------------
# Flattening and replaying graphs (the Keras-internal part).


@dataclasses.dataclass
class OpCall:
    """One call of an operation in a flattened graph.

    `inputs` and `outputs` are keys of tensors (see `FlatGraph.tensors`);
    nested functional models have been replaced by the calls inside them.
    """

    op: object
    node: object
    inputs: list
    outputs: list
    # Maps id() of each KerasTensor the node was called with to its key.
    argument_keys: dict


@dataclasses.dataclass
class FlatGraph:
    """A functional model as one flat list of calls in topological order."""

    inputs: list  # keys of the model inputs
    outputs: list  # keys of the model outputs
    calls: list  # [OpCall]
    tensors: dict  # key -> KerasTensor (a representative of the tensor)
    input_layers: list  # the InputLayer of each input
    inputs_struct: object
    outputs_struct: object


def _functional_of(model):
    """Returns the functional graph behind a Functional or Sequential model."""
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise UnsupportedModelError(
                f"Sequential model '{model.name}' has no known input shape, so "
                "its layer graph does not exist yet. Start it with "
                "keras.Input(shape=...) (e.g. keras.Sequential([keras.Input("
                "shape=(28, 28, 1)), ...])) or call model.build(input_shape)."
            )
        return functional
    if isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth"):
        return model
    if isinstance(model, keras.Model):
        raise UnsupportedModelError(
            f"Model '{model.name}' of class {type(model).__name__} is a "
            "subclassed keras.Model: its layer graph is hidden in Python code, "
            "so tf_asap cannot find which channels are connected. Rebuild it "
            "with the functional API (keras.Model(inputs, outputs)) or "
            "keras.Sequential, reusing the same layers."
        )
    raise UnsupportedModelError(
        f"Expected a keras.Model, received an object of type {type(model).__name__}."
    )


def flatten_graph(model):
    """Flattens a functional or Sequential model into a `FlatGraph`.

    Nested functional and Sequential models are inlined: their inner calls
    appear in the flat list, so that channels are followed across model
    boundaries (every `keras.applications` model used as a backbone is such a
    nested model).

    Args:
        model: A functional or Sequential `keras.Model` with known inputs.

    Returns:
        A `FlatGraph`.

    Raises:
        UnsupportedModelError: For a subclassed model or a Sequential model
            without an input shape.
    """
    functional = _functional_of(model)
    tensors = {}
    alias = {}
    calls = []

    def key(tensor):
        k = id(tensor)
        while k in alias:
            k = alias[k]
        tensors.setdefault(k, tensor)
        return k

    def walk(function):
        nodes_by_depth = function._nodes_by_depth
        for depth in sorted(nodes_by_depth, reverse=True):
            for node in nodes_by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                op = node.operation
                flat_inputs = list(node.input_tensors)
                if isinstance(op, keras.Model):
                    inner = _functional_of(op)
                    for inner_input, outer in zip(inner.inputs, flat_inputs):
                        alias[id(inner_input)] = key(outer)
                    walk(inner)
                    for outer, inner_output in zip(node.outputs, inner.outputs):
                        alias[id(outer)] = key(inner_output)
                    continue
                argument_keys = {id(t): key(t) for t in flat_inputs}
                calls.append(
                    OpCall(
                        op=op,
                        node=node,
                        inputs=[key(t) for t in flat_inputs],
                        outputs=[key(t) for t in node.outputs],
                        argument_keys=argument_keys,
                    )
                )

    walk(functional)
    input_layers = [t._keras_history.operation for t in functional.inputs]
    return FlatGraph(
        inputs=[key(t) for t in functional.inputs],
        outputs=[key(t) for t in functional.outputs],
        calls=calls,
        tensors=tensors,
        input_layers=input_layers,
        inputs_struct=functional._inputs_struct,
        outputs_struct=functional._outputs_struct,
    )


def replay(model, make_op, set_weights=None, name=None):
    """Rebuilds a model call by call, with every operation replaced.

    Args:
        model: The functional or Sequential model to rebuild.
        make_op: `make_op(op) -> new_op`, called once per distinct operation
            (a layer called twice is replaced by one new layer called twice,
            so weight sharing survives).
        set_weights: Optional `set_weights(old_op, new_op)`, called once per
            distinct operation after the new model is built.
        name: Name of the new model. Defaults to the old model's name.

    Returns:
        A new functional `keras.Model` without nested models.
    """
    graph = flatten_graph(model)
    from keras import tree

    new_tensors = {}
    new_inputs = []
    for input_key, input_layer in zip(graph.inputs, graph.input_layers):
        old = graph.tensors[input_key]
        new = keras.Input(
            batch_shape=old.shape,
            dtype=old.dtype,
            name=input_layer.name,
            sparse=getattr(old, "sparse", False),
        )
        new_tensors[input_key] = new
        new_inputs.append(new)

    replaced = {}
    for call in graph.calls:
        if id(call.op) not in replaced:
            replaced[id(call.op)] = (call.op, make_op(call.op))
        new_op = replaced[id(call.op)][1]
        tensor_dict = {
            tensor_id: new_tensors[k] for tensor_id, k in call.argument_keys.items()
        }
        args, kwargs = call.node.arguments.fill_in(tensor_dict)
        outputs = tree.flatten(new_op(*args, **kwargs))
        for k, new in zip(call.outputs, outputs):
            new_tensors[k] = new

    if set_weights is not None:
        for old_op, new_op in replaced.values():
            set_weights(old_op, new_op)

    inputs = tree.pack_sequence_as(graph.inputs_struct, new_inputs)
    outputs = tree.pack_sequence_as(
        graph.outputs_struct, [new_tensors[k] for k in graph.outputs]
    )
    return keras.Model(inputs, outputs, name=name or model.name)


# ---------------------------------------------------------------------------
# How channels flow through each kind of layer.

_ELEMENTWISE_ACTIVATIONS = {
    "relu", "relu6", "elu", "selu", "gelu", "swish", "silu", "sigmoid",
    "tanh", "softplus", "softsign", "hard_sigmoid", "hard_silu", "hard_swish",
    "linear", "exponential", "leaky_relu", "mish", "celu", "glu_free",
    "log_sigmoid", "sparse_plus", "squareplus", "hard_tanh", "tanh_shrink",
    "hard_shrink", "soft_shrink", "threshold",
}  # fmt: skip

_CHANNELWISE_TYPES = (
    keras.layers.BatchNormalization,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
    keras.layers.DepthwiseConv2D,
)

_MERGE_TYPES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)

_NONLINEAR_TYPES = (
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
)

_CHANNEL_NORMALIZING_TYPES = (
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.UnitNormalization,
)


def _unwrap(op):
    return op.layer if isinstance(op, MaskedLayer) else op


def _activation_name(activation):
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return name.lower()


def is_nonlinear(op):
    """Whether `op`'s output is a non-linearity applied channel-wise."""
    layer = _unwrap(op)
    if isinstance(layer, _NONLINEAR_TYPES):
        return True
    activation = getattr(layer, "activation", None)
    if activation is None or isinstance(layer, keras.layers.Dropout):
        return False
    name = _activation_name(activation)
    return name != "linear" and name in _ELEMENTWISE_ACTIVATIONS


def _channel_axis_is_last(layer, rank):
    axis = getattr(layer, "axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return axis in (-1, rank - 1)


def _why_unsupported_channelwise(layer, rank):
    """Reason a nominally channel-wise layer is not, or '' if it is."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return f"layer '{layer.name}' uses data_format='channels_first'"
    if isinstance(layer, keras.layers.BatchNormalization) and not _channel_axis_is_last(layer, rank):
        return f"BatchNormalization '{layer.name}' normalizes axis {layer.axis}, not the channel axis"
    if isinstance(layer, keras.layers.DepthwiseConv2D) and layer.depth_multiplier != 1:
        return f"DepthwiseConv2D '{layer.name}' has depth_multiplier={layer.depth_multiplier}"
    return ""


def _weight_key(variable):
    """A stable key of a variable inside its layer (its path without the layer prefix)."""
    return variable.path.split("/")[-1]


def channel_axes(layer):
    """Which axes of each weight of `layer` index channels.

    This table, keyed by layer type, is what surgery slices and what cost
    counting measures; keeping it in one place makes `count_cost(slim(m))`
    equal the masked model's effective cost by construction.

    Args:
        layer: A Keras layer (or a `MaskedLayer`).

    Returns:
        A list with one entry per `layer.weights`: a dict mapping axis to
        `("in", expand)` for an input-channel axis, `("out", expand)` for an
        output-channel axis (`"in"` for channel-wise layers, where input and
        output channels are the same). `expand` is the number of consecutive
        entries per channel (a depth multiplier), usually 1.
    """
    if isinstance(layer, MaskedLayer):
        inner = {id(v): a for v, a in zip(layer.layer.weights, channel_axes(layer.layer))}
        own = {id(layer.filter_mask): {0: ("out", 1)}, id(layer.input_mask): {0: ("in", 1)}}
        return [inner.get(id(v), own.get(id(v), {})) for v in layer.weights]
    axes = []
    for variable in layer.weights:
        name = _weight_key(variable)
        rank = len(variable.shape)
        if isinstance(layer, keras.layers.Dense):
            axes.append({0: ("in", 1), 1: ("out", 1)} if rank == 2 else {0: ("out", 1)})
        elif isinstance(layer, keras.layers.SeparableConv2D):
            multiplier = layer.depth_multiplier
            if name.startswith("depthwise"):
                axes.append({2: ("in", 1)})
            elif name.startswith("pointwise"):
                axes.append({2: ("in", multiplier), 3: ("out", 1)})
            else:
                axes.append({0: ("out", 1)})
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            axes.append({2: ("in", 1)} if rank == 4 else {0: ("in", 1)})
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            axes.append({2: ("out", 1), 3: ("in", 1)} if rank == 4 else {0: ("out", 1)})
        elif isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D)):
            axes.append({rank - 2: ("in", 1), rank - 1: ("out", 1)} if rank > 1 else {0: ("out", 1)})
        elif isinstance(layer, keras.layers.BatchNormalization):
            axes.append({0: ("in", 1)})
        elif isinstance(layer, keras.layers.PReLU):
            # alpha has the input's non-batch shape, with shared axes of size 1.
            axes.append({rank - 1: ("in", 1)} if variable.shape[-1] > 1 else {})
        else:
            axes.append({})
    return axes


def kernel_positions(layer, input_shape, output_shape):
    """How many times a layer applies its kernel, for FLOPs counting.

    FLOPs are counted as 2 x multiply-accumulates of convolution and dense
    layers: `2 * positions * (number of kernel entries)`, where positions is
    the number of output pixels (input pixels for a transposed convolution),
    or the product of the leading non-batch dims for a dense layer. Bias
    additions, BatchNormalization, activations, pooling and merges are not
    counted: they are linear in the activations and fused by inference
    runtimes. Returns 0 for layers without kernels.
    """
    layer = _unwrap(layer)
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod(input_shape[1:-1], dtype=np.int64))
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return int(np.prod(input_shape[1:-1], dtype=np.int64))
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)):
        return int(np.prod(output_shape[1:-1], dtype=np.int64))
    return 0


def is_kernel(variable):
    """Whether a weight is a kernel that multiplies (counted in FLOPs)."""
    return "kernel" in _weight_key(variable)


# ---------------------------------------------------------------------------
# The analysis.


class _UnionFind:
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


@dataclasses.dataclass(frozen=True)
class _State:
    """The channels of one tensor: the groups along its channel axis, in order.

    `repeat` > 1 marks a flattened tensor whose features are the channel
    pattern repeated once per spatial position. `None` entries in `groups`
    never occur; an opaque tensor is a single unprunable group.
    """

    groups: tuple
    repeat: int = 1


class ChannelAnalysis:
    """Channel states of every tensor of a model and the groups they form.

    Build it with `analyze(model)`. Surgery, cost counting and mask handling
    read `call_states`; everyone else reads `groups`.
    """

    def __init__(self, model, graph, union_find, states, producer_calls, min_filters):
        self.model = model
        self.graph = graph
        self._uf = union_find
        self._states = states
        self._producer_calls = producer_calls  # group id -> [OpCall]
        self._min_filters = min_filters  # group id -> int
        self.groups = self._build_groups()
        self.groups_by_name = {g.name: g for g in self.groups}
        self.root_by_name = {name: root for root, name in self._names.items()}

    # -- channel states ---------------------------------------------------
    def group_of(self, g):
        return self._uf.find(g)

    def state(self, key):
        return self._states[key]

    def channel_layout(self, key):
        """[(root group, offset)] along the channel axis of tensor `key`, and its repeat."""
        state = self._states[key]
        layout, offset = [], 0
        for g in state.groups:
            root = self._uf.find(g)
            layout.append((root, offset))
            offset += self._uf.size[root]
        return layout, state.repeat, offset

    def keep_indices(self, key, keep_by_group):
        """Indices along tensor `key`'s last axis that survive pruning.

        Args:
            key: A tensor key of the flat graph.
            keep_by_group: {root group id: bool array}; missing groups keep all.
        """
        layout, repeat, width = self.channel_layout(key)
        pattern = np.ones((width,), dtype=bool)
        for root, offset in layout:
            keep = keep_by_group.get(root)
            if keep is not None:
                pattern[offset : offset + len(keep)] = keep
        return np.flatnonzero(np.tile(pattern, repeat))

    # -- groups ---------------------------------------------------------------
    def _build_groups(self):
        uf = self._uf
        producers = collections.defaultdict(list)
        for g, calls in self._producer_calls.items():
            producers[uf.find(g)].extend(calls)
        passes = collections.defaultdict(list)
        consumers = collections.defaultdict(list)
        for call in self.graph.calls:
            layer = call.op
            name = getattr(layer, "name", str(layer))
            if _is_producer(layer) and call.inputs:
                layout, repeat, width = self.channel_layout(call.inputs[0])
                for root, offset in layout:
                    consumers[root].append(ChannelRef(name, offset, repeat, width))
            elif not _is_producer(layer):
                for out in call.outputs:
                    if out not in self._states:
                        continue
                    layout, repeat, width = self.channel_layout(out)
                    for root, offset in layout:
                        if any(
                            root in [r for r, _ in self.channel_layout(i)[0]]
                            for i in call.inputs
                            if i in self._states
                        ):
                            passes[root].append(ChannelRef(name, offset, repeat, width))
        self._names = {}
        groups = []
        seen_names = collections.Counter()
        for root in sorted(producers, key=lambda r: self.graph.calls.index(producers[r][0])):
            calls = producers[root]
            names = _unique(call.op.name for call in calls)
            name = names[0]
            seen_names[name] += 1
            if seen_names[name] > 1:
                name = f"{name}:{seen_names[name] - 1}"
            self._names[root] = name
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
                        [self._min_filters.get(g, 1) for g in self._producer_calls if uf.find(g) == root]
                    ),
                )
            )
        return groups

    def _activations(self, producer_calls):
        """The first non-linearity after each producer (see ChannelGroup.activations)."""
        readers = collections.defaultdict(list)
        for call in self.graph.calls:
            for k in call.inputs:
                readers[k].append(call)
        found = []
        for call in producer_calls:
            if is_nonlinear(call.op):
                found.append(ChannelRef(call.op.name, 0))
                continue
            key, offset, last = call.outputs[0], 0, ChannelRef(call.op.name, 0)
            for _ in range(64):  # bounded walk through linear channel-wise layers
                nexts = [
                    c
                    for c in readers[key]
                    if not _is_producer(c.op)
                    and c.outputs
                    and c.outputs[0] in self._states
                    and self._states[c.outputs[0]].repeat == 1
                    and not isinstance(_unwrap(c.op), (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D))
                ]
                if not nexts:
                    break
                step = nexts[0]
                if isinstance(step.op, keras.layers.Concatenate):
                    offset += sum(
                        self.channel_layout(i)[2] for i in step.inputs[: step.inputs.index(key)]
                    )
                key = step.outputs[0]
                last = ChannelRef(step.op.name, offset)
                if is_nonlinear(step.op):
                    break
            found.append(last)
        return _unique(found)


def _unique(items):
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _is_producer(op):
    return is_maskable(_unwrap(op)) or isinstance(op, MaskedLayer)


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
    graph = flatten_graph(model)
    uf = _UnionFind()
    states = {}
    producer_calls = collections.defaultdict(list)
    min_filters = {}
    producer_group = {}  # id(layer) -> group, so shared layers share a group

    def opaque(key, reason):
        tensor = graph.tensors[key]
        width = tensor.shape[-1] if tensor.shape and tensor.shape[-1] else 1
        states[key] = _State((uf.new(int(width), reason),))

    def block_inputs(call, reason):
        for k in call.inputs:
            if k in states:
                for g in states[k].groups:
                    uf.block(g, reason)

    for key, layer in zip(graph.inputs, graph.input_layers):
        shape = graph.tensors[key].shape
        if shape[-1] is None:
            raise UnsupportedModelError(
                f"Input '{layer.name}' has an unknown channel dimension (shape "
                f"{shape}). Build the model with a fixed input shape, e.g. "
                "keras.Input(shape=(32, 32, 3))."
            )
        opaque(key, f"channels come from model input '{layer.name}'")

    first_inputs = {}  # id(op) -> input states of its first call
    for call in graph.calls:
        op = call.op
        layer = _unwrap(op)
        name = getattr(op, "name", type(op).__name__)
        in_states = [states.get(k) for k in call.inputs]
        if any(s is None for s in in_states) or not call.inputs:
            for k in call.outputs:
                opaque(k, f"channels come from '{name}', whose inputs are not followed")
            continue
        if id(op) in first_inputs:
            # A shared layer slices its weights once for all its calls, so the
            # input channels of every call must be pruned alike.
            for a, b in zip(first_inputs[id(op)], in_states):
                if a.repeat == b.repeat and len(a.groups) == len(b.groups) and all(
                    uf.size[uf.find(x)] == uf.size[uf.find(y)] for x, y in zip(a.groups, b.groups)
                ):
                    for x, y in zip(a.groups, b.groups):
                        uf.union(x, y)
                else:
                    block_inputs(call, f"shared layer '{name}' is called on tensors whose channels do not line up")
        else:
            first_inputs[id(op)] = in_states

        if _is_producer(op):
            state = in_states[0]
            reason = ""
            if getattr(layer, "groups", 1) != 1:
                reason = f"layer '{name}' is a grouped convolution (groups={layer.groups})"
            elif getattr(layer, "data_format", "channels_last") == "channels_first":
                reason = f"layer '{name}' uses data_format='channels_first'"
            elif state.repeat > 1 and not isinstance(layer, keras.layers.Dense):
                reason = f"layer '{name}' reads a flattened tensor"
            if reason:
                block_inputs(call, reason)
            if id(op) in producer_group:
                group = producer_group[id(op)]
            else:
                width = layer.units if isinstance(layer, keras.layers.Dense) else layer.filters
                group = uf.new(int(width), reason)
                producer_group[id(op)] = group
                if isinstance(op, MaskedLayer):
                    min_filters[group] = op.min_filters
                    if not op.prunable:
                        uf.block(group, f"layer '{name}' is in ignored_layers")
            producer_calls[group].append(call)
            states[call.outputs[0]] = _State((group,))
            continue

        if isinstance(layer, _CHANNELWISE_TYPES) or (
            isinstance(layer, keras.layers.Activation) and is_nonlinear(layer)
        ) or (
            isinstance(layer, keras.layers.Activation)
            and _activation_name(layer.activation) == "linear"
        ):
            why = _why_unsupported_channelwise(layer, len(graph.tensors[call.inputs[0]].shape))
            if why:
                block_inputs(call, why)
            for k in call.outputs:
                states[k] = in_states[0]
            continue

        if isinstance(layer, keras.layers.Flatten) and in_states[0].repeat == 1:
            shape = graph.tensors[call.inputs[0]].shape
            spatial = shape[1:-1]
            if any(d is None for d in spatial):
                block_inputs(call, f"Flatten '{name}' reads a tensor of unknown shape {shape}")
                opaque(call.outputs[0], f"Flatten '{name}' of unknown shape")
                continue
            states[call.outputs[0]] = _State(in_states[0].groups, int(np.prod(spatial, dtype=np.int64)))
            continue

        if isinstance(layer, keras.layers.Reshape) and in_states[0].repeat == 1:
            in_shape = graph.tensors[call.inputs[0]].shape
            out_shape = graph.tensors[call.outputs[0]].shape
            if in_shape[-1] == out_shape[-1]:
                states[call.outputs[0]] = in_states[0]
                continue

        if isinstance(layer, _MERGE_TYPES) and all(s.repeat == 1 for s in in_states):
            widths = [graph.tensors[k].shape[-1] for k in call.inputs]
            full = [s for s, w in zip(in_states, widths) if w != 1]
            if not full:
                full = in_states
            ref = full[0]
            aligned = all(
                len(s.groups) == len(ref.groups)
                and all(uf.size[uf.find(a)] == uf.size[uf.find(b)] for a, b in zip(s.groups, ref.groups))
                for s in full
            )
            if aligned:
                for s in full[1:]:
                    for a, b in zip(s.groups, ref.groups):
                        uf.union(a, b)
                states[call.outputs[0]] = ref
            else:
                reason = f"merge '{name}' combines tensors whose channel groups do not line up"
                block_inputs(call, reason)
                opaque(call.outputs[0], reason)
            continue

        if isinstance(layer, keras.layers.Concatenate) and all(s.repeat == 1 for s in in_states):
            rank = len(graph.tensors[call.outputs[0]].shape)
            if layer.axis in (-1, rank - 1):
                states[call.outputs[0]] = _State(tuple(g for s in in_states for g in s.groups))
                continue

        if isinstance(layer, _CHANNEL_NORMALIZING_TYPES):
            reason = f"layer '{name}' ({type(layer).__name__}) normalizes across channels"
        else:
            reason = (
                f"layer '{name}' of type {type(layer).__name__}, whose channel "
                "behaviour tf_asap does not know"
            )
        block_inputs(call, reason)
        for k in call.outputs:
            opaque(k, reason)

    for k in graph.outputs:
        if k in states:
            for g in states[k].groups:
                uf.block(g, "channels reach a model output")

    return ChannelAnalysis(model, graph, uf, states, producer_calls, min_filters)


def channel_groups(model):
    """Finds the groups of channels that must be pruned together.

    Args:
        model: A functional or Sequential `keras.Model`, usually one returned
            by `tf_asap.make_prunable`.

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
    return analyze(model).groups


def find_layer_names(model, names, argument):
    """Checks that every name in `names` is a layer of the (flattened) model.

    Raises:
        ConfigurationError: Naming the unknown layer and the closest names.
    """
    from tf_asap.errors import ConfigurationError

    graph = flatten_graph(model)
    known = [getattr(c.op, "name", "") for c in graph.calls]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigurationError(
                f"{argument} names layer '{name}', which is not in model "
                f"'{model.name}'.{hint} Layer names are listed by model.summary()."
            )
