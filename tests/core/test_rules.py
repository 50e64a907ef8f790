"""The layer-rule registry: custom layers taught to tf_asap are pruned and slimmed exactly."""

import keras
import numpy as np
import pytest

import tf_asap as asap
from tf_asap.errors import ConfigurationError

layers = keras.layers


class ChannelScale(layers.Layer):
    """y = x * scale, one learned scale per channel."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="random_normal")

    def call(self, inputs):
        return inputs * self.scale


class UnregisteredScale(ChannelScale):
    """The same layer, never registered."""


class Pointwise(layers.Layer):
    """A 1x1 convolution written by hand: a custom producer of `units` channels."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="random_normal")

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.kernel) + self.bias

    def get_config(self):
        return {**super().get_config(), "units": self.units}


asap.register_layer(ChannelScale, asap.LayerRule("channelwise", weight_axes={"scale": {0: "in"}}))
asap.register_layer(
    Pointwise,
    asap.LayerRule(
        "producer", weight_axes={"kernel": {0: "in", 1: "out"}, "bias": {0: "out"}}, channels_key="units"
    ),
)


def custom_model(scale_class=ChannelScale):
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = scale_class(name="scale")(x)
    x = layers.ReLU()(x)
    x = Pointwise(6, name="pointwise")(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, name="logits")(x)
    return keras.Model(inputs, outputs)


def drop_half(pm):
    masks = {}
    for group in asap.channel_groups(pm):
        if group.prunable:
            keep = np.zeros(group.size, bool)
            keep[::2] = True
            masks[group.name] = keep
    asap.apply_masks(pm, masks)
    return masks


def assert_same_outputs(a, b):
    x = np.random.default_rng(0).normal(size=(2,) + tuple(a.inputs[0].shape[1:])).astype("float32")
    np.testing.assert_allclose(np.asarray(b(x)), np.asarray(a(x)), atol=1e-5, rtol=1e-5)


def test_registered_custom_layers_are_pruned_and_slimmed_exactly():
    model = custom_model()
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights([np.random.default_rng(1).uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.weights])
    pm = asap.make_prunable(model)
    groups = {g.name: g for g in asap.channel_groups(pm)}
    assert groups["conv"].prunable and groups["pointwise"].prunable
    assert "scale" in [ref.layer for ref in groups["conv"].passes_through]
    assert isinstance(pm.get_layer("pointwise"), asap.MaskedLayer)
    drop_half(pm)
    small = asap.slim(pm)
    assert_same_outputs(pm, small)
    assert small.get_layer("scale").scale.shape == (4,)
    assert small.get_layer("pointwise").kernel.shape == (4, 3)
    assert asap.count_cost(small).params == asap.count_cost(pm).effective_params == small.count_params()


def test_unregistered_custom_layer_blocks_its_groups_with_an_actionable_reason():
    groups = {g.name: g for g in asap.channel_groups(custom_model(UnregisteredScale))}
    assert not groups["conv"].prunable
    assert "'scale'" in groups["conv"].reason and "UnregisteredScale" in groups["conv"].reason
    assert "register a rule or pass ignored_layers" in groups["conv"].reason
    assert groups["pointwise"].prunable


def test_register_layer_refuses_what_is_not_a_layer_class_or_rule():
    with pytest.raises(ConfigurationError, match="Layer subclass"):
        asap.register_layer(ChannelScale(), asap.LayerRule("channelwise"))
    with pytest.raises(ConfigurationError, match="LayerRule"):
        asap.register_layer(ChannelScale, {"kind": "channelwise"})
    with pytest.raises(ConfigurationError, match="kind"):
        asap.LayerRule("reshapes")
    with pytest.raises(ConfigurationError, match="channels_key"):
        asap.LayerRule("producer")
