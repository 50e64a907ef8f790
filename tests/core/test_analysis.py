import keras
import numpy as np
import pytest

import tf_asap as asap
from tf_asap.errors import ConfigurationError, UnsupportedModelError
from tests import architectures

layers = keras.layers


def groups_of(model):
    return {g.name: g for g in asap.channel_groups(model)}


def group_with(model, producer):
    (group,) = [g for g in asap.channel_groups(model) if producer in g.producers]
    return group


def test_residual_stage_is_one_group_with_all_its_producers():
    groups = groups_of(architectures.resnet20(blocks=2))
    stage0 = groups["stem"]
    assert set(stage0.producers) == {"stem", "s0b0_conv2", "s0b1_conv2"}
    assert stage0.prunable
    (stage1,) = [g for g in groups.values() if "s1b0_conv2" in g.producers]
    assert stage1.name in stage1.producers
    assert set(stage1.producers) == {"s1b0_conv2", "s1b0_proj", "s1b1_conv2"}
    # Inner block convolutions are independent groups.
    assert groups["s0b0_conv1"].producers == ("s0b0_conv1",)


def test_activation_of_a_filter_is_the_nonlinearity_after_it():
    groups = groups_of(architectures.resnet20(blocks=1))
    assert [a.layer for a in groups["s0b0_conv1"].activations] == ["s0b0_relu1"]
    # conv -> BN -> Add -> ReLU: the post-residual ReLU.
    assert "s0b0_out" in [a.layer for a in groups["stem"].activations]


def test_concatenate_keeps_offsets():
    groups = groups_of(architectures.densenet_block())
    refs = {ref.layer: ref for ref in groups["d1_conv"].passes_through}
    assert refs["d1_concat"].offset == 8 + 4
    assert refs["final_bn"].offset == 12
    consumers = {ref.layer: ref.offset for ref in groups["d1_conv"].consumers}
    assert consumers == {"d2_conv": 12, "transition": 12}


def test_flatten_into_dense_repeats_channels_per_position():
    groups = groups_of(architectures.plain_cnn())
    (fc,) = [ref for ref in groups["conv2"].consumers if ref.layer == "fc1"]
    assert (fc.repeat, fc.stride) == (16, 8)


def test_group_reaching_output_is_not_prunable():
    groups = groups_of(architectures.plain_cnn())
    assert not groups["logits"].prunable
    assert "model output" in groups["logits"].reason


@pytest.mark.parametrize(
    "layer, reason",
    [
        (layers.Lambda(lambda t: t * 2.0), "Lambda"),
        (layers.LayerNormalization(), "normalizes across channels"),
        (layers.Reshape((4, 4 * 8, 1)), "Reshape"),
        (layers.Activation("softmax"), "Activation"),
    ],
)
def test_unknown_channel_behaviour_blocks_the_group_with_a_reason(layer, reason):
    inputs = keras.Input((4, 4, 3))
    x = layers.Conv2D(8, 1, name="c")(inputs)
    x = layer(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(2)(x)
    group = groups_of(keras.Model(inputs, outputs))["c"]
    assert not group.prunable
    assert reason in group.reason


def test_multiply_couples_squeeze_excitation_channels():
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, activation="relu", name="c")(inputs)
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(2, 1, activation="relu", name="squeeze")(s)
    s = layers.Conv2D(8, 1, activation="sigmoid", name="excite")(s)
    x = layers.Multiply()([x, s])
    x = layers.Conv2D(4, 1, name="next")(x)
    outputs = layers.Dense(2)(layers.Flatten()(x))
    groups = groups_of(keras.Model(inputs, outputs))
    assert set(groups["c"].producers) == {"c", "excite"}
    assert groups["c"].prunable


def test_nested_model_is_inlined():
    model = architectures.nested_backbone()
    groups = groups_of(model)
    assert "Conv1" in groups and groups["Conv1"].prunable
    assert groups["head"].prunable


def test_shared_layer_couples_channels_of_its_calls():
    inputs = keras.Input((6, 6, 2))
    a = layers.Conv2D(4, 1, name="a")(inputs)
    b = layers.Conv2D(4, 1, name="b")(inputs)
    shared = layers.Conv2D(3, 1, name="shared")
    x = layers.Add()([shared(a), shared(b)])
    outputs = layers.Dense(2)(layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    coupled = group_with(model, "a")
    assert set(coupled.producers) == {"a", "b"}
    pm = asap.make_prunable(model)
    asap.apply_masks(pm, {coupled.name: np.array([1, 0, 1, 1], bool), "shared": np.array([1, 1, 0], bool)})
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(asap.slim(pm)(x), pm(x), atol=1e-5)


def test_subclassed_model_gets_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = layers.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    with pytest.raises(UnsupportedModelError, match="subclassed.*functional API"):
        asap.channel_groups(Net())


def test_sequential_without_input_shape_gets_a_clear_error():
    model = keras.Sequential([layers.Conv2D(4, 3), layers.Dense(2)])
    with pytest.raises(UnsupportedModelError, match="keras.Input"):
        asap.make_prunable(model)


def test_unknown_input_shape_gets_a_clear_error():
    inputs = keras.Input((None, None, 3))
    outputs = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(inputs))
    with pytest.raises(UnsupportedModelError, match="unknown shape.*fixed input shape"):
        asap.make_prunable(keras.Model(inputs, outputs))


def test_ignored_layer_that_does_not_exist_gets_a_clear_error():
    with pytest.raises(ConfigurationError, match="'conv3'.*Did you mean"):
        asap.make_prunable(architectures.plain_cnn(), ignored_layers=["conv3"])


def test_ignored_layer_group_is_not_prunable():
    pm = asap.make_prunable(architectures.plain_cnn(), ignored_layers=["conv1"])
    groups = groups_of(pm)
    assert not groups["conv1"].prunable
    assert "ignored_layers" in groups["conv1"].reason
    assert groups["conv2"].prunable
