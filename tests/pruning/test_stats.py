import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tf_asap
from tf_asap.errors import ConfigurationError, DataError
from tf_asap.pruning.stats import StatsCollector, collect_activation_stats, stats_collector

from tests.architectures import resnet20, vgg_bn

layers = keras.layers


def tiny_conv():
    """Two prunable groups: conv (relu inside the layer) and dense (relu)."""
    inputs = keras.Input((5, 5, 2))
    x = layers.Conv2D(3, 2, activation="relu", name="conv")(inputs)
    x = layers.Flatten()(x)
    x = layers.Dense(4, activation="relu", name="fc")(x)
    outputs = layers.Dense(2, name="out")(x)
    return tf_asap.make_prunable(keras.Model(inputs, outputs))


def activations(model, layer, x):
    return keras.Model(model.input, model.get_layer(layer).output)(x, training=False).numpy()


@pytest.fixture(scope="module")
def conv_model():
    return tiny_conv()


@pytest.fixture
def x():
    return np.random.default_rng(1).normal(size=(13, 5, 5, 2)).astype("float32")


@pytest.mark.parametrize("mapping", ["mean", "max", "sum"])
@pytest.mark.parametrize("power", [1, 2, 3.5])
def test_attention_matches_numpy_reference(conv_model, x, mapping, power):
    stats = StatsCollector(conv_model).collect(x, power=power, mapping=mapping, batch_size=4)
    reduce = {"mean": np.mean, "max": np.max, "sum": np.sum}[mapping]
    conv = activations(conv_model, "conv", x)
    expected = reduce(np.abs(conv) ** power, axis=(1, 2)).mean(axis=0)
    np.testing.assert_allclose(stats.attention["conv"], expected, rtol=1e-5)
    # A dense layer's "feature map" is one value per sample.
    dense = activations(conv_model, "fc", x)
    np.testing.assert_allclose(stats.attention["fc"], (np.abs(dense) ** power).mean(axis=0), rtol=1e-5)
    assert stats.num_samples == 13


def test_power_is_applied_per_sample_not_to_the_batch_average(conv_model, x):
    attention = collect_activation_stats(conv_model, x, power=2)["conv"]
    conv = activations(conv_model, "conv", x)
    per_sample = (conv**2).mean(axis=(1, 2)).mean(axis=0)
    reference_code = (conv.mean(axis=0) ** 2).mean(axis=(0, 1))  # the paper's scripts
    np.testing.assert_allclose(attention, per_sample, rtol=1e-5)
    assert not np.allclose(attention, reference_code, rtol=1e-3)


def test_apoz_matches_numpy_reference(conv_model, x):
    stats = StatsCollector(conv_model).collect(x, apoz=True, batch_size=5)
    conv = activations(conv_model, "conv", x)
    np.testing.assert_allclose(stats.apoz["conv"], (conv == 0).mean(axis=(0, 1, 2)), rtol=1e-6)
    assert np.all((stats.apoz["fc"] >= 0) & (stats.apoz["fc"] <= 1))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, 12), max_size=6, unique=True))
def test_streaming_small_batches_equals_one_big_batch(conv_model, x, cuts):
    pieces = np.split(x, sorted(cuts))

    def batches():
        return (piece for piece in pieces if len(piece))

    collector = stats_collector(conv_model)
    streamed = collector.collect(batches, apoz=True)
    whole = collector.collect(x, batch_size=len(x), apoz=True)
    assert streamed.num_samples == whole.num_samples == len(x)
    for name in whole.attention:
        np.testing.assert_allclose(streamed.attention[name], whole.attention[name], rtol=1e-5)
        np.testing.assert_allclose(streamed.apoz[name], whole.apoz[name], rtol=1e-5)


def test_max_samples_uses_the_first_samples_only(conv_model, x):
    limited = StatsCollector(conv_model).collect(x, max_samples=7, batch_size=3)
    first = StatsCollector(conv_model).collect(x[:7])
    assert limited.num_samples == 7
    np.testing.assert_allclose(limited.attention["conv"], first.attention["conv"], rtol=1e-6)


def test_dataset_with_labels_is_accepted(conv_model, x):
    dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(len(x)))).batch(4)
    np.testing.assert_allclose(
        collect_activation_stats(conv_model, dataset)["conv"],
        collect_activation_stats(conv_model, x)["conv"],
        rtol=1e-6,
    )


def test_zero_weight_filter_and_dead_relu_get_zero_attention(x):
    model = tiny_conv()
    conv = model.get_layer("conv").layer
    kernel, bias = conv.get_weights()
    kernel[..., 0] = 0.0
    bias[0] = 0.0
    bias[2] = -1e4  # a dead ReLU: never positive on this data
    conv.set_weights([kernel, bias])
    stats = StatsCollector(model).collect(x, apoz=True)
    assert stats.attention["conv"][0] == 0.0 and stats.attention["conv"][2] == 0.0
    assert stats.attention["conv"][1] > 0.0
    np.testing.assert_array_equal(stats.apoz["conv"][[0, 2]], [1.0, 1.0])


def test_pruned_channels_score_zero_even_after_batchnorm():
    model = tf_asap.make_prunable(vgg_bn())
    x = np.random.default_rng(0).normal(size=(6, 16, 16, 3)).astype("float32")
    keep = np.ones(8, bool)
    keep[[1, 5]] = False
    batchnorm = model.get_layer("bn0")
    gamma, beta, moving_mean, moving_variance = batchnorm.get_weights()
    beta[~keep], moving_mean[~keep] = 1.0, 0.0  # BN(0) = 1 for the pruned channels
    batchnorm.set_weights([gamma, beta, moving_mean, moving_variance])
    tf_asap.apply_masks(model, {"conv0": keep})
    stats = StatsCollector(model).collect(x, apoz=True)
    assert np.all(stats.attention["conv0"][~keep] == 0.0)
    assert np.all(stats.apoz["conv0"][~keep] == 1.0)
    assert np.all(stats.attention["conv0"][keep] > 0.0)
    # BatchNormalization turns a zeroed channel into a constant that survives
    # the ReLU: the raw activation is not zero, the score must still be.
    raw = activations(model, "relu0", x)
    assert np.abs(raw[..., ~keep]).max() > 0.0


def test_residual_group_scores_the_mean_of_its_activation_tensors():
    model = tf_asap.make_prunable(resnet20(input_shape=(8, 8, 3), blocks=2, widths=(4, 8, 8)))
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype("float32")
    group = next(g for g in tf_asap.channel_groups(model) if g.prunable and len(g.activations) > 1)
    attention = collect_activation_stats(model, x)[group.name]
    per_tensor = [np.abs(activations(model, ref.layer, x)).mean(axis=(0, 1, 2)) for ref in group.activations]
    np.testing.assert_allclose(attention, np.mean(per_tensor, axis=0), rtol=1e-5)


def test_every_prunable_group_is_scored_and_only_those(conv_model, x):
    attention = collect_activation_stats(conv_model, x)
    groups = tf_asap.channel_groups(conv_model)
    assert set(attention) == {g.name for g in groups if g.prunable}
    for group in groups:
        if group.prunable:
            assert attention[group.name].shape == (group.size,)


def test_collector_is_cached_and_traced_once_per_options(conv_model, x):
    collector = stats_collector(conv_model)
    assert stats_collector(conv_model) is collector
    collector._steps.clear()
    collector.collect(x, batch_size=4)
    collector.collect(x, batch_size=7)  # another batch size, same graph
    assert len(collector._steps) == 1


def test_statistics_follow_mask_changes_without_rebuilding(x):
    model = tiny_conv()
    before = collect_activation_stats(model, x)["conv"]
    tf_asap.apply_masks(model, {"conv": np.array([True, False, True])})
    after = collect_activation_stats(model, x)["conv"]
    assert before[1] > 0.0
    assert after[1] == 0.0
    np.testing.assert_allclose(after[[0, 2]], before[[0, 2]], rtol=1e-6)


def test_plain_model_is_accepted(x):
    inputs = keras.Input((5, 5, 2))
    hidden = layers.Conv2D(3, 2, activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(hidden)))
    assert collect_activation_stats(model, x)["conv"].shape == (3,)


@pytest.mark.parametrize("options", [{"mapping": "median"}, {"power": 0}, {"power": -1}, {"power": True}])
def test_bad_options_are_configuration_errors(conv_model, x, options):
    with pytest.raises(ConfigurationError):
        collect_activation_stats(conv_model, x, **options)


def test_empty_data_is_a_data_error(conv_model):
    empty = tf.data.Dataset.from_tensor_slices(np.zeros((0, 5, 5, 2), "float32")).batch(4)
    with pytest.raises(DataError, match="no samples"):
        collect_activation_stats(conv_model, empty)
