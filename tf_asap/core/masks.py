"""Turning a model into a prunable one, and reading and writing its masks.

`make_prunable` wraps every convolution and dense layer of a model in a
`MaskedLayer`; `apply_masks` sets the masks of whole channel groups at once
(the filter masks of every producer and the matching slices of every
consumer's input mask); `get_masks` reads them back; `strip_masks` is the
inverse of `make_prunable`.
"""

import hashlib

import numpy as np

from tf_asap.checks import check_int
from tf_asap.core import keras_graph, rules
from tf_asap.core.analysis import analyze
from tf_asap.core.layers import MaskedLayer, clone_layer, is_maskable
from tf_asap.errors import ConfigurationError, MaskError, UnsupportedModelError


def _check_input_shapes(model, flat):
    for key, layer in zip(flat.inputs, flat.input_layers):
        shape = flat.tensors[key].shape
        if any(d is None for d in shape[1:]):
            raise UnsupportedModelError(
                f"Input '{layer.name}' of model '{model.name}' has an unknown "
                f"shape {tuple(shape)}: tf_asap needs every non-batch dimension "
                "to count FLOPs and size masks. Build the model with a fixed "
                "input shape, e.g. keras.Input(shape=(32, 32, 3)) or "
                "keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))."
            )


def is_prunable_model(model):
    """Whether `model` carries tf_asap masks."""
    return any(isinstance(layer, MaskedLayer) for layer in model.layers)


def make_prunable(model, ignored_layers=None, min_filters=1):
    """Returns a copy of `model` whose convolution and dense layers carry masks.

    The copy is a flat functional model (nested models such as a
    `keras.applications` backbone are inlined) with the same layer names and
    weights. Every layer with a producer rule (`Conv1D/2D/3D`, their
    transposed and separable forms, `Dense`, and custom layers registered with
    `tf_asap.register_layer`) becomes a `tf_asap.core.layers.MaskedLayer` with
    all masks set to one, so the copy computes exactly what `model` computes until masks are
    applied. The original model is not modified. The copy is not compiled:
    compile it as you would the original.

    Args:
        model: A functional or Sequential `keras.Model` with a fixed input
            shape.
        ignored_layers: Names (or layer objects) of layers whose output
            channels must never be pruned. Defaults to `None`.
        min_filters: The fewest channels pruning may leave in any group.
            Defaults to `1`.

    Returns:
        A new `keras.Model`.

    Raises:
        UnsupportedModelError: For a subclassed model or an unknown input
            shape.
        ConfigurationError: If `ignored_layers` names a layer the model does
            not have, or `min_filters` is not a positive integer.

    Example:

    >>> model = keras.Sequential([keras.Input((28, 28, 1)),
    ...     keras.layers.Conv2D(8, 3, activation="relu"),
    ...     keras.layers.Flatten(), keras.layers.Dense(10)])
    >>> pm = make_prunable(model)
    >>> [g.name for g in channel_groups(pm) if g.prunable]
    ['conv2d']
    """
    if is_prunable_model(model):
        raise ConfigurationError(
            f"Model '{model.name}' is already prunable (it has MaskedLayers). "
            "Use it as it is, or call tf_asap.strip_masks(model) first."
        )
    min_filters = check_int(
        "min_filters", min_filters, minimum=1, fix="Pass the fewest channels a group may keep, e.g. 1."
    )
    flat = keras_graph.flatten_graph(model)
    _check_input_shapes(model, flat)
    ignored = {getattr(item, "name", item) for item in (ignored_layers or [])}
    for item in ignored:
        if not isinstance(item, str):
            raise ConfigurationError(
                f"ignored_layers must hold layer names or layers, received {item!r}."
            )
    keras_graph.find_layer_names(model, sorted(ignored), "ignored_layers", graph=flat)

    def make_op(op):
        if is_maskable(op):
            return MaskedLayer(
                clone_layer(op),
                min_filters=int(min_filters),
                prunable=op.name not in ignored,
                name=op.name,
            )
        return clone_layer(op)

    def set_weights(old, new):
        target = new.layer if isinstance(new, MaskedLayer) else new
        if old is not new and getattr(old, "weights", None):
            target.set_weights(old.get_weights())

    return keras_graph.replay(model, make_op, set_weights, graph=flat)


def _require_prunable(model):
    if not is_prunable_model(model):
        raise MaskError(
            f"Model '{model.name}' has no masks. Call "
            "pm = tf_asap.make_prunable(model) and use pm."
        )


def current_keep(analysis):
    """`{root group id: bool array}` read from the producers' filter masks (see `ChannelAnalysis.current_keep`)."""
    return analysis.current_keep()


def get_masks(model, analysis=None):
    """Reads the keep-masks of every channel group of a prunable model.

    Args:
        model: A model returned by `make_prunable`.
        analysis: The model's `ChannelAnalysis`, if already computed.
            Defaults to `None` (analyse the model).

    Returns:
        `{group name: bool array}`, `True` where a channel stays; one entry
        per channel group (unprunable groups are all `True`).

    Raises:
        MaskError: If the model has no masks.
    """
    _require_prunable(model)
    analysis = analysis or analyze(model)
    keep = analysis.current_keep()
    return {
        group.name: keep.get(analysis.root_of(group.name), np.ones(group.size, bool))
        for group in analysis.groups
    }


def mask_digest(model):
    """A short fingerprint of a prunable model's masks: equal iff the masks are.

    Args:
        model: A model returned by `make_prunable`.

    Returns:
        A hex string (SHA-1 of every channel group's keep-mask, in group order).
    """
    digest = hashlib.sha1()
    for name, keep in get_masks(model).items():
        digest.update(name.encode("utf-8"))
        digest.update(np.packbits(np.asarray(keep, bool)).tobytes())
        digest.update(str(len(keep)).encode("ascii"))
    return digest.hexdigest()


def apply_masks(model, masks, analysis=None):
    """Sets the masks of whole channel groups.

    For each group, the filter mask of every producer is set to `keep`, and
    the slice of every consumer's input mask that reads the group is set to
    match (tiled over spatial positions after `Flatten`), so that a pruned
    channel contributes nothing anywhere downstream. Groups not named keep
    their current masks.

    Args:
        model: A model returned by `make_prunable`.
        masks: `{group name: keep}` where `keep` is a boolean array of length
            `group.size`, `True` for channels that stay.
        analysis: The model's `ChannelAnalysis`, if already computed.
            Defaults to `None` (analyse the model).

    Raises:
        MaskError: For an unknown group name, an unprunable group, a mask of
            the wrong length or type, or a mask that keeps fewer than the
            group's `min_filters` channels.

    Example:

    >>> groups = {g.name: g for g in channel_groups(pm)}
    >>> keep = np.ones(groups["conv2d"].size, bool); keep[:2] = False
    >>> apply_masks(pm, {"conv2d": keep})
    """
    _require_prunable(model)
    analysis = analysis or analyze(model)
    keep_by_root = analysis.current_keep()
    known = [g.name for g in analysis.groups]
    for name, keep in masks.items():
        group = analysis.groups_by_name.get(name)
        if group is None:
            raise MaskError(
                f"apply_masks got a mask for '{name}', which is not a channel "
                f"group of model '{model.name}'. Groups: {', '.join(known)}."
            )
        keep = np.asarray(keep)
        if keep.shape != (group.size,):
            raise MaskError(
                f"The mask for group '{name}' has shape {keep.shape}; the group "
                f"has {group.size} channels, so pass a boolean array of shape "
                f"({group.size},)."
            )
        if keep.dtype != bool:
            if not np.all(np.isin(keep, (0, 1))):
                raise MaskError(
                    f"The mask for group '{name}' must be boolean (True = keep); "
                    f"received values other than 0 and 1 (dtype {keep.dtype})."
                )
            keep = keep.astype(bool)
        kept = int(keep.sum())
        if not group.prunable and kept != group.size:
            raise MaskError(
                f"Group '{name}' cannot be pruned: {group.reason}. Leave it out "
                "of the masks (or keep every channel)."
            )
        if kept == 0:
            raise MaskError(
                f"The mask for group '{name}' removes every channel, which would "
                "disconnect the model. Keep at least "
                f"{group.min_filters} channel(s)."
            )
        if kept < group.min_filters:
            raise MaskError(
                f"The mask for group '{name}' keeps {kept} channel(s), fewer than "
                f"min_filters={group.min_filters}. Keep at least "
                f"{group.min_filters}."
            )
        keep_by_root[analysis.root_of(name)] = keep
    _write_masks(analysis, keep_by_root)


def _write_masks(analysis, keep_by_root):
    """Writes filter masks and the input masks derived from them."""
    for group in analysis.groups:
        keep = keep_by_root.get(analysis.root_of(group.name))
        if keep is None:
            continue
        for name in group.producers:
            layer = analysis.model.get_layer(name)
            if isinstance(layer, MaskedLayer):
                layer.filter_mask.assign(keep.astype("float32"))
    done = set()
    for call in analysis.graph.calls:
        layer = call.op
        if not isinstance(layer, MaskedLayer) or id(layer) in done:
            continue
        done.add(id(layer))
        width = layer.input_mask.shape[0]
        vector = np.zeros((width,), dtype="float32")
        vector[analysis.keep_indices(call.inputs[0], keep_by_root)] = 1.0
        layer.input_mask.assign(vector)


def strip_masks(model):
    """Returns a copy of a prunable model with plain Keras layers.

    The inverse of `make_prunable`: every `MaskedLayer` becomes the layer it
    wraps, and nothing is removed. Masks are folded into the weights (the
    kernel entries of masked input channels and of masked filters are set to
    zero), so the copy computes exactly what the masked model computes.
    To also remove the pruned channels, use `tf_asap.slim`.

    Args:
        model: A model returned by `make_prunable`.

    Returns:
        A new `keras.Model` without tf_asap layers.
    """
    _require_prunable(model)

    def make_op(op):
        return clone_layer(op.layer if isinstance(op, MaskedLayer) else op)

    def set_weights(old, new):
        if old is new or not getattr(old, "weights", None):
            return
        if not isinstance(old, MaskedLayer):
            new.set_weights(old.get_weights())
            return
        filter_mask = old.filter_mask.numpy()
        input_mask = old.input_mask.numpy()
        weights = []
        for value, axes in zip(old.layer.get_weights(), rules.channel_axes(old.layer)):
            for axis, (kind, expand) in axes.items():
                mask = np.repeat(input_mask if kind == "in" else filter_mask, expand)
                shape = [1] * value.ndim
                shape[axis] = -1
                value = value * mask.reshape(shape)
            weights.append(value)
        new.set_weights(weights)

    return keras_graph.replay(model, make_op, set_weights)
