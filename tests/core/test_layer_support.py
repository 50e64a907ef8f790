"""Layers real architectures use: each is followed, sliced, or blocks with a reason a user can act on."""

import keras
import numpy as np
import pytest

import tf_asap as asap
from tests import architectures

layers = keras.layers


def groups_of(model):
    return {g.name: g for g in asap.channel_groups(model)}


def drop_half(pm):
    for group in asap.channel_groups(pm):
        if group.prunable:
            keep = np.zeros(group.size, bool)
            keep[::2] = True
            asap.apply_masks(pm, {group.name: keep})


def assert_slim_matches(pm, small):
    x = np.random.default_rng(0).normal(size=(2,) + tuple(pm.inputs[0].shape[1:])).astype("float32")
    expected = np.asarray(pm(x, training=False))
    np.testing.assert_allclose(np.asarray(small(x, training=False)), expected, atol=1e-5 * max(1.0, np.abs(expected).max()))


def test_squeeze_excitation_with_reshape_is_coupled_and_its_target_shape_rewritten():
    pm = asap.make_prunable(architectures.se_reshape())
    groups = groups_of(pm)
    assert set(groups["c"].producers) == {"c", "excite"} and groups["c"].prunable
    drop_half(pm)
    small = asap.slim(pm)
    assert small.get_layer("excite_reshape").target_shape == (1, 1, 4)
    assert_slim_matches(pm, small)


def test_convnext_block_prunes_the_mlp_and_blocks_the_normalized_stream():
    groups = groups_of(asap.make_prunable(architectures.convnext_block()))
    assert groups["pw1"].prunable, groups["pw1"].reason
    assert not groups["stem"].prunable
    assert "'ln'" in groups["stem"].reason and "normalizes across channels" in groups["stem"].reason


def test_lambda_in_the_middle_keeps_its_channels_and_the_rest_is_slimmed():
    model = architectures.lambda_middle()
    pm = asap.make_prunable(model)
    groups = groups_of(pm)
    assert not groups["before"].prunable
    assert "'lambda'" in groups["before"].reason and "register a rule or pass ignored_layers" in groups["before"].reason
    assert groups["after"].prunable and groups["last"].prunable
    drop_half(pm)
    small = asap.slim(pm)
    assert_slim_matches(pm, small)
    assert small.get_layer("lambda") is not model.get_layer("lambda")
    assert small.count_params() < model.count_params()
    # The copy is not connected to the old graph: its output is the new model's.
    feature = keras.Model(small.inputs, small.get_layer("lambda").output)
    assert feature.output.shape == (None, 8, 8, 6)


def test_decoder_chain_of_transposed_convolutions_upsampling_and_cropping_slims_exactly():
    pm = asap.make_prunable(architectures.decoder_chain())
    groups = groups_of(pm)
    assert groups["up_conv"].prunable and groups["enc"].prunable
    drop_half(pm)
    assert_slim_matches(pm, asap.slim(pm))


@pytest.mark.parametrize(
    "make_layer, reason",
    [
        (lambda: layers.GroupNormalization(groups=2), "GroupNormalization"),
        (lambda: layers.Permute((3, 1, 2)), "moves the channel axis"),
        (lambda: layers.UnitNormalization(), "normalizes across channels"),
    ],
)
def test_layers_that_mix_channels_block_with_a_reason(make_layer, reason):
    inputs = keras.Input((4, 4, 4))
    x = layers.Conv2D(4, 1, name="c")(inputs)
    x = make_layer()(x)
    outputs = layers.Dense(2)(layers.Flatten()(x))
    group = groups_of(keras.Model(inputs, outputs))["c"]
    assert not group.prunable and reason in group.reason


def test_multi_head_attention_blocks_its_inputs_and_the_rest_slims():
    inputs = keras.Input((6, 4))
    x = layers.Conv1D(8, 1, name="embed")(inputs)
    x = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")(x, x)
    x = layers.Conv1D(6, 1, activation="relu", name="after")(x)
    outputs = layers.Dense(2, name="logits")(layers.GlobalAveragePooling1D()(x))
    pm = asap.make_prunable(keras.Model(inputs, outputs))
    groups = groups_of(pm)
    assert not groups["embed"].prunable and "attention heads" in groups["embed"].reason
    assert groups["after"].prunable
    drop_half(pm)
    assert_slim_matches(pm, asap.slim(pm))


def test_normalization_at_the_input_is_carried_over():
    inputs = keras.Input((5, 5, 3))
    x = layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0], name="normalize")(inputs)
    x = layers.Conv2D(6, 3, activation="relu", name="c")(x)
    outputs = layers.Dense(2, name="logits")(layers.Flatten()(x))
    pm = asap.make_prunable(keras.Model(inputs, outputs))
    assert groups_of(pm)["c"].prunable
    drop_half(pm)
    assert_slim_matches(pm, asap.slim(pm))


def test_keras_ops_in_the_graph_pass_channels_unless_a_constant_is_per_channel():
    inputs = keras.Input((4, 4, 2))
    a = layers.Conv2D(4, 1, name="a")(inputs)
    b = layers.Conv2D(4, 1, name="b")(inputs)
    x = keras.ops.relu(a * 0.5 + 1.0) * keras.ops.sigmoid(b)
    y = layers.Conv2D(4, 1, name="c")(x)
    y = y * np.arange(4, dtype="float32")
    outputs = layers.Dense(2, name="logits")(layers.Flatten()(layers.Conv2D(3, 1, name="d")(y)))
    pm = asap.make_prunable(keras.Model(inputs, outputs))
    groups = groups_of(pm)
    assert set(groups["a"].producers) == {"a", "b"} and groups["a"].prunable
    assert not groups["c"].prunable and "constant array" in groups["c"].reason
    drop_half(pm)
    assert_slim_matches(pm, asap.slim(pm))


def test_division_by_a_tensor_blocks_but_division_by_a_number_passes():
    inputs = keras.Input((4, 4, 2))
    a = layers.Conv2D(4, 1, name="a")(inputs)
    b = layers.Conv2D(4, 1, name="b")(inputs)
    c = layers.Conv2D(4, 1, name="c")(inputs)
    x = layers.Concatenate()([keras.ops.divide(a, b), keras.ops.divide(c, 6.0)])
    outputs = layers.Dense(2)(layers.Flatten()(layers.Conv2D(3, 1, name="d")(x)))
    groups = groups_of(keras.Model(inputs, outputs))
    assert not groups["a"].prunable and "divide by zero" in groups["a"].reason
    assert groups["c"].prunable
