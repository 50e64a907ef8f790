import keras
import numpy as np
import pytest

import tf_asap as asap
from tf_asap.errors import ConfigurationError, MaskError
from tests import architectures


@pytest.fixture
def pm():
    return asap.make_prunable(architectures.plain_cnn(), min_filters=2)


def test_make_prunable_computes_the_same_function():
    model = architectures.vgg_bn()
    pm = asap.make_prunable(model)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(pm(x), model(x))
    assert sum(isinstance(layer, asap.MaskedLayer) for layer in pm.layers) == 5


def test_make_prunable_does_not_touch_the_original():
    model = architectures.plain_cnn()
    before = [w.copy() for w in model.get_weights()]
    pm = asap.make_prunable(model)
    asap.apply_masks(pm, {"conv1": np.array([1, 0, 1, 0, 1, 1], bool)})
    pm.get_layer("conv1").layer.kernel.assign(np.zeros((3, 3, 1, 6), "float32"))
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_apply_then_get_masks_round_trips(pm):
    keep = np.array([1, 0, 1, 1, 0, 1], bool)
    asap.apply_masks(pm, {"conv1": keep})
    masks = asap.get_masks(pm)
    np.testing.assert_array_equal(masks["conv1"], keep)
    assert masks["conv2"].all()
    np.testing.assert_array_equal(pm.get_layer("conv2").input_mask.numpy(), keep.astype("float32"))


def test_consumer_after_flatten_gets_tiled_input_mask(pm):
    keep = np.array([1, 1, 0, 1, 1, 1, 1, 0], bool)
    asap.apply_masks(pm, {"conv2": keep})
    np.testing.assert_array_equal(pm.get_layer("fc1").input_mask.numpy(), np.tile(keep, 16).astype("float32"))


def test_masks_save_and_load_with_the_model(pm, tmp_path):
    keep = np.array([1, 0, 1, 1, 0, 1], bool)
    asap.apply_masks(pm, {"conv1": keep})
    pm.save(tmp_path / "pm.keras")
    loaded = keras.models.load_model(tmp_path / "pm.keras")
    np.testing.assert_array_equal(asap.get_masks(loaded)["conv1"], keep)
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 1)).astype("float32")
    np.testing.assert_allclose(loaded(x), pm(x), atol=1e-6)
    assert loaded.get_layer("conv1").min_filters == 2


def test_mask_variables_are_frozen_and_first_replica_aggregated_after_a_reload(pm, tmp_path):
    # The aggregation is not part of the saved config: a file saved before it
    # existed loads the same way, and the loaded masks get it from build().
    pm.save(tmp_path / "pm.keras")
    loaded = keras.models.load_model(tmp_path / "pm.keras")
    for model in (pm, loaded):
        for layer in model.layers:
            if isinstance(layer, asap.MaskedLayer):
                for mask in (layer.filter_mask, layer.input_mask):
                    assert not mask.trainable
                    assert mask.aggregation == "only_first_replica"
                    assert mask.synchronization == "auto"


def test_masked_model_trains_and_masked_filters_stay_silent(pm):
    asap.apply_masks(pm, {"conv1": np.array([1, 0, 1, 1, 0, 1], bool)})
    pm.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(16, 12, 12, 1)).astype("float32")
    pm.fit(x, np.arange(16) % 4, epochs=2, verbose=0)
    assert asap.get_masks(pm)["conv1"].sum() == 4
    tap = keras.Model(pm.input, pm.get_layer("conv1").output)
    assert np.all(np.asarray(tap(x))[..., [1, 4]] == 0)


def test_strip_masks_returns_plain_layers_computing_the_same_function():
    pm = asap.make_prunable(architectures.resnet20(blocks=1))
    asap.apply_masks(pm, {"stem": np.arange(16) % 3 != 0})
    plain = asap.strip_masks(pm)
    assert not any(isinstance(layer, asap.MaskedLayer) for layer in plain.layers)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(plain(x), pm(x), atol=1e-5)
    assert plain.count_params() == pm.count_params() - sum(
        l.filter_mask.shape[0] + l.input_mask.shape[0] for l in pm.layers if isinstance(l, asap.MaskedLayer)
    )


@pytest.mark.parametrize(
    "masks, message",
    [
        ({"conv9": np.ones(6, bool)}, "not a channel group.*conv1"),
        ({"conv1": np.ones(5, bool)}, r"shape \(5,\).*\(6,\)"),
        ({"conv1": np.zeros(6, bool)}, "removes every channel"),
        ({"conv1": np.eye(6, dtype=bool)[0]}, "min_filters=2"),
        ({"conv1": np.full(6, 0.5)}, "must be boolean"),
        ({"logits": np.eye(4, dtype=bool)[0] | np.eye(4, dtype=bool)[1]}, "cannot be pruned.*model output"),
    ],
)
def test_bad_masks_get_clear_errors(pm, masks, message):
    with pytest.raises(MaskError, match=message):
        asap.apply_masks(pm, masks)


def test_apply_masks_on_plain_model_says_to_make_it_prunable():
    with pytest.raises(MaskError, match="make_prunable"):
        asap.apply_masks(architectures.plain_cnn(), {})


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_bad_min_filters_gets_a_clear_error(value):
    with pytest.raises(ConfigurationError, match="min_filters"):
        asap.make_prunable(architectures.plain_cnn(), min_filters=value)


def test_make_prunable_twice_is_refused(pm):
    with pytest.raises(ConfigurationError, match="already prunable"):
        asap.make_prunable(pm)


def test_mask_digest_changes_with_the_masks_and_only_with_them():
    from tf_asap.core.masks import mask_digest

    pm = asap.make_prunable(architectures.plain_cnn())
    dense = mask_digest(pm)
    masks = asap.get_masks(pm)
    name = next(iter(masks))
    keep = masks[name].copy()
    keep[0] = False
    asap.apply_masks(pm, {name: keep})
    pruned = mask_digest(pm)
    assert pruned != dense
    other = asap.make_prunable(architectures.plain_cnn())
    asap.apply_masks(other, {name: keep})
    assert mask_digest(other) == pruned  # the same masks on another copy
