"""The Keras-graph adapter: a functional model as a flat list of calls, and replaying it.

Keras exposes no public API for the edges of a functional graph, so this module
is the one place in tf_asap that reads Keras internals. Everything else works on
the `FlatGraph` built here. The private attributes read, and why:

- `Functional._nodes_by_depth`: the model's own nodes in topological order
  (a layer shared with another model also has that model's nodes in
  `layer._inbound_nodes`, which must not be followed).
- `Sequential._functional`: the functional graph behind a built `Sequential`.
- `Functional._inputs_struct` / `_outputs_struct`: the nesting of the model's
  inputs and outputs (dicts, lists), to rebuild a model with the same call
  signature.
- `KerasTensor._keras_history.operation`: the `InputLayer` of each input.
- `Node.arguments.fill_in`: the arguments (positional, keyword, constants) a
  layer was called with, to call the replacement layer the same way.
- `Operation._inbound_nodes` / `_outbound_nodes`: left out of a layer's deep
  copy (`detached_copy`), so the copy does not drag the old graph along.
- `Node.arguments.args` / `.kwargs`: the constants an operation was called
  with (`x * 3.0`), checked by `constant_arguments`.
"""

import copy
import dataclasses
import difflib

import keras
import numpy as np
from keras import tree

from tf_asap.errors import ConfigurationError, UnsupportedModelError


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

    def shape(self, key):
        """The static shape of tensor `key` (batch axis first)."""
        return tuple(self.tensors[key].shape)


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
        f"Expected a keras.Model, received an object of type {type(model).__name__}. "
        "Pass a functional or Sequential keras.Model."
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
                calls.append(
                    OpCall(
                        op=op,
                        node=node,
                        inputs=[key(t) for t in flat_inputs],
                        outputs=[key(t) for t in node.outputs],
                        argument_keys={id(t): key(t) for t in flat_inputs},
                    )
                )

    walk(functional)
    return FlatGraph(
        inputs=[key(t) for t in functional.inputs],
        outputs=[key(t) for t in functional.outputs],
        calls=calls,
        tensors=tensors,
        input_layers=[t._keras_history.operation for t in functional.inputs],
        inputs_struct=functional._inputs_struct,
        outputs_struct=functional._outputs_struct,
    )


def replay(model, make_op, set_weights=None, name=None, graph=None):
    """Rebuilds a model call by call, with every operation replaced.

    Args:
        model: The functional or Sequential model to rebuild.
        make_op: `make_op(op) -> new_op`, called once per distinct operation
            (a layer called twice is replaced by one new layer called twice,
            so weight sharing survives). Returning `op` itself carries the
            layer over unchanged.
        set_weights: Optional `set_weights(old_op, new_op)`, called once per
            distinct operation after the new model is built. Defaults to
            `None`.
        name: Name of the new model. Defaults to the old model's name.
        graph: The model's `FlatGraph`, if already built. Defaults to `None`
            (flatten the model).

    Returns:
        A new functional `keras.Model` without nested models.
    """
    graph = graph or flatten_graph(model)
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
        tensor_dict = {tensor_id: new_tensors[k] for tensor_id, k in call.argument_keys.items()}
        args, kwargs = call.node.arguments.fill_in(tensor_dict)
        outputs = tree.flatten(new_op(*args, **kwargs))
        for k, new in zip(call.outputs, outputs):
            new_tensors[k] = new

    if set_weights is not None:
        for old_op, new_op in replaced.values():
            set_weights(old_op, new_op)

    inputs = tree.pack_sequence_as(graph.inputs_struct, new_inputs)
    outputs = tree.pack_sequence_as(graph.outputs_struct, [new_tensors[k] for k in graph.outputs])
    return keras.Model(inputs, outputs, name=name or model.name)


def find_layer_names(model, names, argument, graph=None):
    """Checks that every name in `names` is a layer of the (flattened) model.

    Args:
        model: A functional or Sequential `keras.Model`.
        names: The layer names to look for.
        argument: The argument the names came from, for the error message.
        graph: The model's `FlatGraph`, if already built. Defaults to `None`.

    Raises:
        ConfigurationError: Naming the unknown layer and the closest names.
    """
    graph = graph or flatten_graph(model)
    known = [getattr(c.op, "name", "") for c in graph.calls]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigurationError(
                f"{argument} names layer '{name}', which is not in model "
                f"'{model.name}'.{hint} Layer names are listed by model.summary()."
            )


def detached_copy(layer):
    """A deep copy of `layer` that is not connected to any graph.

    Used for layers that cannot be re-created from their config without
    deserializing code (a `Lambda`, which Keras' safe mode rightly refuses) or
    at all (a custom layer with an incomplete `get_config`). The copy has its
    own weights and no nodes: its `output` will be the one of the model it is
    called in next.
    """
    memo = {id(layer._inbound_nodes): [], id(layer._outbound_nodes): []}
    return copy.deepcopy(layer, memo)


def constant_arguments(call):
    """The non-tensor values an operation was called with, e.g. `3.0` in `x * 3.0`."""
    arguments = call.node.arguments
    leaves = tree.flatten((arguments.args, arguments.kwargs))
    return [leaf for leaf in leaves if not isinstance(leaf, keras.KerasTensor) and leaf is not None]


def has_only_scalar_constants(call):
    """Whether every constant argument of `call` is a single number (broadcast to every channel)."""
    for value in constant_arguments(call):
        if isinstance(value, (str, bool)):
            continue
        try:
            if np.size(value) != 1:
                return False
        except Exception:  # noqa: BLE001 - an argument numpy cannot size is not a scalar
            return False
    return True


def operation_class(function, rank=4):
    """The class of the `keras.ops` operation `function` records in a functional graph.

    `keras.ops` calls in a functional model (`x + 3.0`, `keras.ops.relu(x)`)
    become graph operations whose classes Keras does not export publicly;
    tracing the function on a symbolic tensor finds them.
    """
    tensor = keras.KerasTensor((None,) * (rank - 1) + (2,))
    return type(function(tensor)._keras_history.operation)
