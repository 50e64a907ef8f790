import keras
import numpy as np
import pytest

import tf_asap
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.importance import (
    APoZ,
    ActivationAttention,
    Criterion,
    L1Norm,
    L2Norm,
    RandomScore,
    get_criterion,
)
from tf_asap.pruning.stats import collect_activation_stats

from tests.architectures import resnet20

layers = keras.layers

ALL_CRITERIA = [ActivationAttention(), L1Norm(), L2Norm(), APoZ(), RandomScore(seed=3)]


def two_convs():
    inputs = keras.Input((6, 6, 2))
    x = layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(5, 3, activation="relu", name="conv2")(x)
    outputs = layers.Dense(2, name="out")(layers.Flatten()(x))
    return tf_asap.make_prunable(keras.Model(inputs, outputs))


@pytest.fixture
def x():
    return np.random.default_rng(0).uniform(size=(8, 6, 6, 2)).astype("float32")


def test_l1_ranks_scaled_filters_by_their_scale():
    model = two_convs()
    conv = model.get_layer("conv1").layer
    base = np.random.default_rng(0).normal(size=(3, 3, 2, 1))
    scales = np.array([3.0, 0.5, 2.0, 1.0])
    conv.set_weights([(base * scales).astype("float32"), np.zeros(4, "float32")])
    scores = L1Norm().score(model)["conv1"]
    np.testing.assert_allclose(scores, scales * np.abs(base).sum(), rtol=1e-5)
    assert list(np.argsort(scores)) == [1, 3, 2, 0]


def test_l1_and_l2_disagree_on_peaked_versus_spread_filters():
    model = two_convs()
    kernel = np.zeros((3, 3, 2, 4), "float32")
    kernel[0, 0, 0, 0] = 3.0  # one large weight: L1 = 3, L2 = 3
    kernel[:2, :2, 0, 1] = 1.0  # four unit weights: L1 = 4, L2 = 2
    kernel[..., 2:] = 0.1
    model.get_layer("conv1").layer.set_weights([kernel, np.zeros(4, "float32")])
    l1, l2 = L1Norm().score(model)["conv1"], L2Norm().score(model)["conv1"]
    np.testing.assert_allclose(l1[:2], [3.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(l2[:2], [3.0, 2.0], rtol=1e-6)


def test_norms_leave_out_weights_of_pruned_input_channels():
    model = two_convs()
    keep = np.array([True, False, True, False])
    tf_asap.apply_masks(model, {"conv1": keep})
    kernel = model.get_layer("conv2").layer.get_weights()[0]
    expected = np.abs(kernel[:, :, keep, :]).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(L1Norm().score(model)["conv2"], expected, rtol=1e-5)


def test_residual_group_norm_is_the_sum_over_producers():
    model = tf_asap.make_prunable(resnet20(input_shape=(8, 8, 3), blocks=2, widths=(4, 8, 8)))
    group = next(g for g in tf_asap.channel_groups(model) if g.prunable and len(g.producers) > 1)
    expected = sum(
        np.sqrt((model.get_layer(name).layer.get_weights()[0] ** 2).sum(axis=(0, 1, 2)))
        for name in group.producers
    )
    np.testing.assert_allclose(L2Norm().score(model)[group.name], expected, rtol=1e-5)


def test_separable_and_transposed_convolutions_use_their_output_axis():
    inputs = keras.Input((6, 6, 3))
    x = layers.SeparableConv2D(4, 3, depth_multiplier=2, activation="relu", name="sep")(inputs)
    x = layers.Conv2DTranspose(5, 3, activation="relu", name="up")(x)
    model = tf_asap.make_prunable(keras.Model(inputs, layers.Conv2D(2, 1, name="head")(x)))
    scores = L1Norm().score(model)
    pointwise = model.get_layer("sep").layer.pointwise_kernel.numpy()
    transposed = model.get_layer("up").layer.kernel.numpy()  # (h, w, out, in)
    np.testing.assert_allclose(scores["sep"], np.abs(pointwise).sum(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(scores["up"], np.abs(transposed).sum(axis=(0, 1, 3)), rtol=1e-5)


def sparse_units():
    """Unit 0 fires on every sample, unit 1 on about half, unit 2 never."""
    inputs = keras.Input((1,))
    hidden = layers.Dense(3, activation="relu", name="hidden")(inputs)
    model = tf_asap.make_prunable(keras.Model(inputs, layers.Dense(2, name="out")(hidden)))
    model.get_layer("hidden").layer.set_weights(
        [np.array([[0.2, 1.0, -1.0]], "float32"), np.array([0.1, -0.5, 0.0], "float32")]
    )
    return model


def test_apoz_scores_the_fraction_of_non_zero_activations():
    samples = np.linspace(0.01, 0.99, 98, dtype="float32")[:, None]
    scores = APoZ().score(sparse_units(), samples)["hidden"]
    np.testing.assert_allclose(scores, [1.0, 0.5, 0.0], atol=0.02)


def test_attention_criterion_equals_collected_statistics(x):
    model = two_convs()
    scores = ActivationAttention(power=2, mapping="max").score(model, x)
    expected = collect_activation_stats(model, x, power=2, mapping="max")
    for name in expected:
        np.testing.assert_allclose(scores[name], expected[name])


def test_random_scores_are_reproducible_and_seed_dependent():
    model = two_convs()
    first, again = RandomScore(seed=7).score(model), RandomScore(seed=7).score(model)
    other = RandomScore(seed=8).score(model)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
        assert np.all((first[name] > 0) & (first[name] <= 1))
    assert not np.allclose(first["conv1"], other["conv1"])


@pytest.mark.parametrize("criterion", ALL_CRITERIA, ids=lambda c: c.name)
def test_every_criterion_scores_each_prunable_group_and_zeroes_pruned_channels(criterion, x):
    model = two_convs()
    keep = np.array([True, False, True, True, False])
    tf_asap.apply_masks(model, {"conv2": keep})
    scores = criterion.score(model, x)
    groups = [g for g in tf_asap.channel_groups(model) if g.prunable]
    assert set(scores) == {g.name for g in groups}
    for group in groups:
        assert scores[group.name].shape == (group.size,)
    assert np.all(scores["conv2"][~keep] == 0.0)


@pytest.mark.parametrize("criterion", [ActivationAttention(), APoZ()], ids=lambda c: c.name)
def test_data_criteria_without_data_say_so(criterion):
    with pytest.raises(ConfigurationError, match="calibration data"):
        criterion.score(two_convs())


@pytest.mark.parametrize(
    "name, expected",
    [("attention", ActivationAttention()), ("L1", L1Norm()), ("l2", L2Norm()),
     ("apoz", APoZ()), ("random", RandomScore())],
)  # fmt: skip
def test_get_criterion_by_name(name, expected):
    assert get_criterion(name) == expected


def test_get_criterion_passes_options_and_instances():
    assert get_criterion("attention", power=2, mapping="sum") == ActivationAttention(power=2, mapping="sum")
    assert get_criterion("random", seed=4).seed == 4
    criterion = L1Norm()
    assert get_criterion(criterion) is criterion
    assert isinstance(criterion, Criterion)


@pytest.mark.parametrize("call", [lambda: get_criterion("taylor"), lambda: get_criterion("l1", power=2),
                                  lambda: get_criterion("attention", mapping="median")])  # fmt: skip
def test_get_criterion_rejects_unknown_names_and_options(call):
    with pytest.raises(ConfigurationError):
        call()


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_random_score_refuses_a_seed_that_is_not_a_non_negative_integer(seed):
    with pytest.raises(ConfigurationError, match=f"`seed`.*{seed!r}"):
        RandomScore(seed=seed)
