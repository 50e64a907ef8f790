import functools

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tf_asap as asap
from tests import architectures


@functools.lru_cache(maxsize=None)
def prunable(name):
    return asap.make_prunable(architectures.ARCHITECTURES[name]())


def random_masks(pm, seed, drop=0.4):
    rng = np.random.default_rng(seed)
    masks = {}
    for group in asap.channel_groups(pm):
        if not group.prunable:
            continue
        keep = rng.random(group.size) > drop
        if not keep.any():
            keep[rng.integers(group.size)] = True
        masks[group.name] = keep
    return masks


def assert_same_function(a, b, seed=0):
    shape = (3,) + tuple(a.inputs[0].shape[1:])
    x = np.random.default_rng(seed).normal(size=shape).astype("float32")
    expected = np.asarray(a(x, training=False))
    actual = np.asarray(b(x, training=False))
    scale = max(1.0, float(np.abs(expected).max()))
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=1e-4 * scale, rtol=0)


@pytest.mark.parametrize("name", sorted(architectures.ARCHITECTURES))
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**16), drop=st.sampled_from([0.2, 0.5, 0.9]))
def test_slim_matches_masked_outputs(name, seed, drop):
    pm = prunable(name)
    asap.apply_masks(pm, random_masks(pm, seed, drop))
    small = asap.slim(pm)
    assert_same_function(pm, small, seed)
    assert not any(isinstance(layer, asap.MaskedLayer) for layer in small.layers)


@pytest.mark.parametrize("name", ["resnet20", "densenet_block", "bn_offset"])
def test_slimmed_cost_equals_effective_cost_of_masked(name):
    pm = prunable(name)
    asap.apply_masks(pm, random_masks(pm, 7))
    small = asap.slim(pm)
    masked, slimmed = asap.count_cost(pm), asap.count_cost(small)
    assert slimmed.params == masked.effective_params == small.count_params()
    assert slimmed.flops == masked.effective_flops
    assert slimmed.effective_params == slimmed.params
    assert masked.effective_params < masked.params


def test_slim_takes_exact_weight_slices():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, name="fc")(x)
    model = architectures.randomize_batchnorm(keras.Model(inputs, outputs))
    pm = asap.make_prunable(model)
    keep = np.array([True, False, True, False])
    asap.apply_masks(pm, {"c1": keep})
    small = asap.slim(pm)

    kernel, bias = model.get_layer("c1").get_weights()
    new_kernel, new_bias = small.get_layer("c1").get_weights()
    np.testing.assert_array_equal(new_kernel, kernel[..., [0, 2]])
    np.testing.assert_array_equal(new_bias, bias[[0, 2]])
    for old, new in zip(model.get_layer("bn").get_weights(), small.get_layer("bn").get_weights()):
        np.testing.assert_array_equal(new, old[[0, 2]])
    # Flatten of a 4x4x4 map: feature index = position * 4 + channel.
    rows = [p * 4 + c for p in range(16) for c in (0, 2)]
    fc_kernel, fc_bias = model.get_layer("fc").get_weights()
    np.testing.assert_array_equal(small.get_layer("fc").get_weights()[0], fc_kernel[rows])
    np.testing.assert_array_equal(small.get_layer("fc").get_weights()[1], fc_bias)
    assert small.get_layer("c1").filters == 2


def test_slim_keeps_concatenated_channels_at_their_offsets():
    inputs = keras.Input((5, 5, 1))
    a = keras.layers.Conv2D(3, 1, name="a")(inputs)
    b = keras.layers.Conv2D(2, 1, name="b")(inputs)
    x = keras.layers.Concatenate(name="cat")([a, b])
    outputs = keras.layers.Conv2D(1, 1, name="c")(x)
    model = keras.Model(inputs, outputs)
    pm = asap.make_prunable(model)
    asap.apply_masks(pm, {"a": np.array([1, 0, 1], bool), "b": np.array([0, 1], bool)})
    small = asap.slim(pm)
    kernel = model.get_layer("c").get_weights()[0]
    np.testing.assert_array_equal(small.get_layer("c").get_weights()[0], kernel[:, :, [0, 2, 4], :])


def test_slim_of_unmasked_model_is_identical():
    model = architectures.resnet20(blocks=1)
    small = asap.slim(asap.make_prunable(model))
    assert_same_function(model, small)
    assert small.count_params() == model.count_params()


def test_slimmed_model_saves_loads_and_trains(tmp_path):
    pm = prunable("plain_cnn")
    asap.apply_masks(pm, random_masks(pm, 3))
    small = asap.slim(pm)
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.models.load_model(path)
    assert_same_function(small, loaded)
    loaded.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(8, 12, 12, 1)).astype("float32")
    loaded.fit(x, np.arange(8) % 4, epochs=1, verbose=0)
