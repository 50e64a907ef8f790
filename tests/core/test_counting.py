import keras
import numpy as np
import pytest

import tf_asap as asap
from tf_asap.errors import MaskError
from tests import architectures

layers = keras.layers


def test_cost_of_small_cnn_matches_hand_computation():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, name="conv")(inputs)  # 6x6x4
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Flatten()(x)  # 144
    outputs = layers.Dense(5, name="fc")(x)
    model = keras.Model(inputs, outputs)
    cost = asap.count_cost(model)
    conv_params = 3 * 3 * 3 * 4 + 4
    fc_params = 144 * 5 + 5
    assert cost.layer("conv").params == conv_params
    assert cost.layer("bn").params == 4 * 4
    assert cost.layer("fc").params == fc_params
    assert cost.params == conv_params + 16 + fc_params == model.count_params()
    assert cost.layer("conv").flops == 2 * 36 * (3 * 3 * 3 * 4)
    assert cost.layer("fc").flops == 2 * 144 * 5
    assert cost.effective_params == cost.params

    pm = asap.make_prunable(model)
    asap.apply_masks(pm, {"conv": np.array([1, 0, 0, 1], bool)})
    cost = asap.count_cost(pm)
    assert cost.params == model.count_params()
    assert cost.layer("conv").effective_params == 3 * 3 * 3 * 2 + 2
    assert cost.layer("bn").effective_params == 8
    assert cost.layer("fc").effective_params == 72 * 5 + 5
    assert cost.layer("conv").effective_flops == 2 * 36 * 54
    assert cost.layer("fc").effective_flops == 2 * 72 * 5
    assert abs(cost.params_reduction - (1 - cost.effective_params / cost.params)) < 1e-12


def test_cost_of_depthwise_separable_model_matches_hand_computation():
    inputs = keras.Input((10, 10, 2))
    x = layers.Conv2D(6, 1, use_bias=False, name="expand")(inputs)  # 10x10x6
    x = layers.DepthwiseConv2D(3, name="dw")(x)  # 8x8x6
    x = layers.SeparableConv2D(4, 3, depth_multiplier=2, name="sep")(x)  # 6x6x4
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, name="fc")(x)
    model = keras.Model(inputs, outputs)
    pm = asap.make_prunable(model)
    asap.apply_masks(pm, {"expand": np.array([1, 1, 0, 1, 0, 1], bool), "sep": np.array([1, 0, 1, 1], bool)})
    cost = asap.count_cost(pm)
    assert cost.layer("expand").flops == 2 * 100 * 12
    assert cost.layer("expand").effective_params == 2 * 4
    assert cost.layer("dw").params == 3 * 3 * 6 + 6
    assert cost.layer("dw").effective_params == 3 * 3 * 4 + 4
    assert cost.layer("dw").effective_flops == 2 * 64 * 36
    # depthwise 3x3x4x2 + pointwise 1x1x8x3 + bias 3
    assert cost.layer("sep").effective_params == 72 + 24 + 3
    assert cost.layer("sep").effective_flops == 2 * 36 * (72 + 24)
    assert cost.layer("fc").effective_params == 3 * 3 + 3
    small = asap.slim(pm)
    assert asap.count_cost(small).params == cost.effective_params == small.count_params()
    assert asap.count_cost(small).flops == cost.effective_flops


def test_table_lists_weighted_layers_and_total():
    inputs = keras.Input((4, 4, 1))
    outputs = layers.Dense(2, name="fc")(layers.Flatten()(inputs))
    table = asap.count_cost(keras.Model(inputs, outputs)).to_table()
    assert "fc" in table and "total" in table and "flatten" not in table


def test_candidate_masks_are_priced_without_touching_the_model():
    pm = asap.make_prunable(architectures.resnet20(input_shape=(8, 8, 3), blocks=1))
    candidate = {}
    for group in asap.channel_groups(pm):
        if group.prunable:
            keep = np.ones(group.size, bool)
            keep[::3] = False
            candidate[group.name] = keep
    before = asap.get_masks(pm)
    priced = asap.count_cost(pm, masks=candidate)
    assert all(np.array_equal(keep, asap.get_masks(pm)[name]) for name, keep in before.items())
    asap.apply_masks(pm, candidate)
    applied = asap.count_cost(pm)
    assert (priced.effective_params, priced.effective_flops) == (applied.effective_params, applied.effective_flops)
    assert priced.effective_params < priced.params


def test_candidate_mask_for_an_unknown_group_gets_a_clear_error():
    pm = asap.make_prunable(architectures.plain_cnn())
    with pytest.raises(MaskError, match="'conv9'.*ChannelGroup.name"):
        asap.count_cost(pm, masks={"conv9": np.ones(3, bool)})
