import keras
import numpy as np
import pytest

from tf_asap import zoo
from tf_asap.errors import ConfigurationError

# Trainable parameters with the default input shape and 10 classes. The CIFAR
# ResNets have option-B projections: ResNet-20 is option A's 269,722 plus
# 2,752 for its two 1x1 conv + BN shortcuts.
TRAINABLE_PARAMS = {
    "mobilenet_v2": 2_236_682,
    "resnet110": 1_730_714,
    "resnet20": 272_474,
    "resnet32": 466_906,
    "resnet56": 855_770,
    "resnet_small": 77_754,
    "small_cnn": 468_138,
    "vgg16": 14_987_210,
    "vgg19": 20_298_186,
    "vgg_small": 72_666,
}

STOCK_LAYERS = (
    keras.layers.InputLayer, keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
    keras.layers.BatchNormalization, keras.layers.ReLU,
    keras.layers.MaxPooling2D, keras.layers.GlobalAveragePooling2D,
    keras.layers.Flatten, keras.layers.Dense, keras.layers.Add,
)


def trainable_count(model):
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


def test_available_models_lists_the_registry():
    assert zoo.available_models() == sorted(TRAINABLE_PARAMS)


@pytest.mark.parametrize("name", sorted(TRAINABLE_PARAMS))
def test_model_has_expected_size_and_output(name):
    model = zoo.build_model(name)
    assert trainable_count(model) == TRAINABLE_PARAMS[name]
    assert model.output_shape == (None, 10)
    assert model.name == name


@pytest.mark.parametrize("name", sorted(TRAINABLE_PARAMS))
def test_model_is_functional_and_made_of_stock_layers(name):
    model = zoo.build_model(name, num_classes=7)
    assert type(model).__name__ == "Functional"
    assert model.output_shape == (None, 7)
    for layer in model.layers:
        assert isinstance(layer, STOCK_LAYERS), layer
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            assert not layer.use_bias
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.momentum == pytest.approx(0.9)


def test_resnet20_is_about_0_27_million_parameters():
    model = zoo.build_model("resnet20")
    assert 0.27e6 < trainable_count(model) < 0.275e6
    assert model.count_params() == 274_042  # plus BN moving statistics


def test_resnet_uses_projection_shortcuts_only_where_shape_changes():
    model = zoo.build_model("resnet20")
    shortcuts = [layer.name for layer in model.layers if "shortcut_conv" in layer.name]
    assert shortcuts == ["stage2_block1_shortcut_conv", "stage3_block1_shortcut_conv"]
    assert model.get_layer("stage2_block1_shortcut_conv").kernel.shape == (1, 1, 16, 32)
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 9


def test_small_models_predict_probabilities_on_28x28_images():
    images = np.random.rand(2, 28, 28, 1).astype("float32")
    for name in ("small_cnn", "vgg_small", "resnet_small"):
        probabilities = zoo.build_model(name)(images, training=False).numpy()
        assert probabilities.shape == (2, 10)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_cifar_models_run_on_32x32_images():
    images = np.random.rand(2, 32, 32, 3).astype("float32")
    for name in ("resnet20", "mobilenet_v2"):
        assert zoo.build_model(name)(images, training=False).shape == (2, 10)


def test_models_accept_other_input_shapes_and_logits():
    model = zoo.build_model(
        "resnet20", input_shape=(28, 28, 1), num_classes=100,
        classifier_activation=None,
    )
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 100)
    assert model.get_layer("classifier").activation is keras.activations.linear


def test_mobilenet_v2_width_multiplier_scales_channels():
    half = zoo.build_model("mobilenet_v2", alpha=0.5)
    full = zoo.build_model("mobilenet_v2")
    assert half.get_layer("stem_conv").filters == 16
    assert full.get_layer("stem_conv").filters == 32
    assert half.get_layer("head_conv").filters == 1280
    assert trainable_count(half) < trainable_count(full) / 2
    # 32x32 inputs keep stride 1 in the stem and the second stage.
    assert full.get_layer("stage2_block1_project_bn").output.shape[1:3] == (32, 32)


def test_names_are_matched_loosely():
    assert zoo.build_model("ResNet-20").name == "resnet20"
    assert zoo.build_model("MobileNetV2", alpha=0.35).name == "mobilenet_v2"


def test_unknown_model_lists_available_names():
    with pytest.raises(ConfigurationError, match="Available models: mobilenet_v2"):
        zoo.build_model("resnet50")


def test_vgg_rejects_inputs_too_small_for_five_poolings():
    with pytest.raises(ConfigurationError, match="at least 32x32"):
        zoo.build_model("vgg16", input_shape=(28, 28, 1))


def test_invalid_arguments_are_configuration_errors():
    with pytest.raises(ConfigurationError, match="6n \\+ 2"):
        zoo.resnet_cifar(21)
    with pytest.raises(ConfigurationError, match="alpha"):
        zoo.build_model("mobilenet_v2", alpha=0)
    with pytest.raises(ConfigurationError, match="does not accept"):
        zoo.build_model("small_cnn", alpha=0.5)
    with pytest.raises(ConfigurationError, match="does not accept"):
        zoo.build_model("resnet20", depth=44)
    with pytest.raises(ConfigurationError, match="num_classes"):
        zoo.build_model("small_cnn", num_classes=1)
    with pytest.raises(ConfigurationError, match="input_shape"):
        zoo.build_model("small_cnn", input_shape=(28, 28))


def test_model_round_trips_through_keras_file(tmp_path):
    model = zoo.build_model("resnet_small")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    images = np.random.rand(3, 28, 28, 1).astype("float32")
    np.testing.assert_allclose(
        loaded(images, training=False), model(images, training=False), atol=1e-6
    )


@pytest.mark.parametrize(
    "name",
    ["mobilenet_v2", "resnet20", "resnet_small", "small_cnn", "vgg16", "vgg_small"],
)
def test_pruning_graph_scores_every_filter_of_zoo_models(name):
    import tf_asap

    model = tf_asap.make_prunable(zoo.build_model(name))
    groups = tf_asap.channel_groups(model)
    unprunable = [group.name for group in groups if not group.prunable]
    assert unprunable == ["classifier"]
    for group in groups:
        if group.prunable:
            assert group.activations, group.name


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet20", "small_cnn", "vgg_small"])
def test_slimmed_zoo_model_matches_masked_model(name):
    import tf_asap

    model = zoo.build_model(name, classifier_activation=None)
    masked = tf_asap.make_prunable(model)
    rng = np.random.default_rng(0)
    masks = {}
    for group in tf_asap.channel_groups(masked):
        if group.prunable:
            keep = rng.random(group.size) < 0.6
            keep[0] = True
            masks[group.name] = keep
    tf_asap.apply_masks(masked, masks)
    slimmed = tf_asap.slim(masked)
    images = rng.random((2,) + model.input_shape[1:]).astype("float32")
    assert slimmed.count_params() < 0.8 * model.count_params()
    np.testing.assert_allclose(
        slimmed(images, training=False), masked(images, training=False), atol=1e-5
    )
