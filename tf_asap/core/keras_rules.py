"""The layer rules of Keras' own layers (see `tf_asap.core.rules`).

Each rule is registered for the exact class. Layers not listed here have no
rule and block the channel groups they touch, with a reason naming them.
"""

import keras

from tf_asap.core.keras_graph import operation_class
from tf_asap.core.rules import (
    LayerRule,
    activation_name,
    input_positions,
    register_layer,
    weight_name,
    ELEMENTWISE_ACTIVATIONS,
)

L = keras.layers


def _conv_axes(layer, variable):
    rank = len(variable.shape)
    if rank == 1:
        return {0: ("out", 1)}
    if getattr(layer, "groups", 1) != 1:
        # A grouped kernel has in_channels / groups rows: never sliced (the
        # analysis blocks its input channels).
        return {rank - 1: ("out", 1)}
    return {rank - 2: ("in", 1), rank - 1: ("out", 1)}


def _transpose_axes(layer, variable):
    rank = len(variable.shape)
    return {rank - 2: ("out", 1), rank - 1: ("in", 1)} if rank > 1 else {0: ("out", 1)}


def _separable_axes(layer, variable):
    name = weight_name(variable)
    if name.startswith("depthwise"):
        return {len(variable.shape) - 2: ("in", 1)}
    if name.startswith("pointwise"):
        rank = len(variable.shape)
        return {rank - 2: ("in", layer.depth_multiplier), rank - 1: ("out", 1)}
    return {0: ("out", 1)}


def _depthwise_axes(layer, variable):
    rank = len(variable.shape)
    return {rank - 2: ("in", 1)} if rank > 1 else {0: ("in", 1)}


def _last_axis_if_per_channel(layer, variable):
    # PReLU's alpha has the input's non-batch shape, with shared axes of size 1.
    return {len(variable.shape) - 1: ("in", 1)} if variable.shape and variable.shape[-1] > 1 else {}


def _grouped(layer, input_shapes, output_shapes):
    if getattr(layer, "groups", 1) != 1:
        return f"layer '{layer.name}' is a grouped convolution (groups={layer.groups})"
    return ""


def _single_axis_is_last(layer, rank):
    axis = getattr(layer, "axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return axis in (-1, rank - 1)


def _batchnorm_check(layer, input_shapes, output_shapes):
    if not _single_axis_is_last(layer, len(input_shapes[0])):
        return f"BatchNormalization '{layer.name}' normalizes axis {layer.axis}, not the channel axis"
    return ""


def _depthwise_check(layer, input_shapes, output_shapes):
    if layer.depth_multiplier != 1:
        return f"DepthwiseConv2D '{layer.name}' has depth_multiplier={layer.depth_multiplier}"
    return ""


def _activation_check(layer, input_shapes, output_shapes):
    name = activation_name(layer.activation)
    if name not in ELEMENTWISE_ACTIVATIONS:
        return (
            f"Activation '{layer.name}' applies '{name}', which mixes channels "
            "(or is not known to act on each channel alone)"
        )
    return ""


def _reshape_check(layer, input_shapes, output_shapes):
    if input_shapes[0][-1] != output_shapes[0][-1]:
        return (
            f"Reshape '{layer.name}' changes the channel axis ({input_shapes[0][-1]} -> "
            f"{output_shapes[0][-1]} entries)"
        )
    return ""


def _reshape_resize(config, channels):
    target = list(config["target_shape"])
    if target and target[-1] != -1:
        target[-1] = channels
    config["target_shape"] = tuple(target)
    return config


def _permute_check(layer, input_shapes, output_shapes):
    if tuple(layer.dims)[-1] != len(layer.dims):
        return f"Permute '{layer.name}' moves the channel axis (dims={tuple(layer.dims)})"
    return ""


def _concatenate_check(layer, input_shapes, output_shapes):
    if layer.axis not in (-1, len(output_shapes[0]) - 1):
        return f"Concatenate '{layer.name}' joins along axis {layer.axis}, not the channel axis"
    return ""


def _rescaling_check(layer, input_shapes, output_shapes):
    for value in (layer.scale, layer.offset):
        if hasattr(value, "__len__") and len(value) > 1:
            return f"Rescaling '{layer.name}' holds one value per channel in its config"
    return ""


_CONV = LayerRule("producer", weight_axes=_conv_axes, channels_key="filters", check=_grouped)
for _cls in (L.Conv1D, L.Conv2D, L.Conv3D):
    register_layer(_cls, _CONV)
for _cls in (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
    register_layer(
        _cls,
        LayerRule(
            "producer", weight_axes=_transpose_axes, channels_key="filters",
            kernel_positions=input_positions, check=_grouped,
        ),
    )
for _cls in (L.SeparableConv1D, L.SeparableConv2D):
    register_layer(_cls, LayerRule("producer", weight_axes=_separable_axes, channels_key="filters"))
register_layer(
    L.Dense,
    LayerRule(
        "producer", weight_axes={"kernel": {0: "in", 1: "out"}, "bias": {0: "out"}},
        channels_key="units", flattened_input=True,
    ),
)

for _cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
    register_layer(_cls, LayerRule("channelwise", weight_axes=_depthwise_axes, check=_depthwise_check))
register_layer(
    L.BatchNormalization,
    LayerRule("channelwise", weight_axes=_last_axis_if_per_channel, check=_batchnorm_check),
)
register_layer(L.PReLU, LayerRule("channelwise", weight_axes=_last_axis_if_per_channel, nonlinear=True))
for _cls in (L.ReLU, L.LeakyReLU, L.ELU):
    register_layer(_cls, LayerRule("channelwise", nonlinear=True))
register_layer(L.Activation, LayerRule("channelwise", check=_activation_check))
for _cls in (
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
    L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization, L.Identity,
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
    L.AveragePooling3D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D,
    L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
):  # fmt: skip
    register_layer(_cls, LayerRule("channelwise", nonlinear=False))
register_layer(L.Rescaling, LayerRule("channelwise", nonlinear=False, check=_rescaling_check))
register_layer(L.Reshape, LayerRule("channelwise", nonlinear=False, check=_reshape_check, resize_config=_reshape_resize))
register_layer(L.Permute, LayerRule("channelwise", nonlinear=False, check=_permute_check))
for _cls in (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum):
    register_layer(_cls, LayerRule("merge", nonlinear=False))
register_layer(L.Concatenate, LayerRule("concatenate", nonlinear=False, check=_concatenate_check))
register_layer(L.Flatten, LayerRule("flatten", nonlinear=False))

_NORMALIZES = "normalizes across channels (removing one changes the statistics of the others)"
for _cls in (L.LayerNormalization, L.UnitNormalization, L.RMSNormalization):
    register_layer(_cls, LayerRule("blocks", reason=_NORMALIZES))
register_layer(
    L.GroupNormalization,
    LayerRule("blocks", reason="normalizes over groups of channels (pruning whole groups is not supported)"),
)
register_layer(
    L.Normalization,
    LayerRule("blocks", reason="holds per-channel statistics in its config; keep it at the model input"),
)
register_layer(
    L.MultiHeadAttention,
    LayerRule("blocks", reason="mixes channels across attention heads (pruning heads is not supported yet)"),
)
register_layer(L.Softmax, LayerRule("blocks", reason="normalizes across channels"))


# Operations recorded by keras.ops calls in a functional model (`x + 3.0`,
# `keras.ops.relu(x)`, MobileNetV3's hard-swish). A constant argument must be
# a single number: the analysis blocks a per-channel constant array.
_OPS = keras.ops
for _function in (
    lambda t: t + t, lambda t: t - t, lambda t: t * t, lambda t: _OPS.maximum(t, t), lambda t: _OPS.minimum(t, t),
):
    register_layer(operation_class(_function), LayerRule("merge", nonlinear=False))


def _divides_by_a_tensor(layer, input_shapes, output_shapes):
    if len(input_shapes) > 1:
        return f"operation '{layer.name}' divides by a tensor (a pruned channel would divide by zero)"
    return ""


register_layer(operation_class(lambda t: _OPS.divide(t, t)), LayerRule("merge", nonlinear=False, check=_divides_by_a_tensor))
for _function in (_OPS.relu, _OPS.relu6, _OPS.silu, _OPS.gelu, _OPS.hard_silu, _OPS.elu, _OPS.leaky_relu):
    register_layer(operation_class(_function), LayerRule("channelwise", nonlinear=True))
for _function in (_OPS.sigmoid, _OPS.hard_sigmoid, _OPS.tanh, _OPS.abs, _OPS.square, _OPS.negative):
    register_layer(operation_class(_function), LayerRule("channelwise", nonlinear=False))
