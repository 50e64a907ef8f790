"""The keras.applications sweep: every family builds, prunes and slims exactly.

The default run covers a representative fast subset (residual, depthwise,
squeeze-and-excitation, keras.ops activations, LayerNormalization MLPs). The
full sweep, every family, runs with:

    TF_ASAP_SLOW=1 python -m pytest tests/core/test_applications.py

(slow cases carry the `slow` marker; without `TF_ASAP_SLOW=1` they are skipped).
"""

import os

import keras
import numpy as np
import pytest

import tf_asap as asap
from tests.architectures import randomize_batchnorm

apps = keras.applications
RUN_SLOW = os.environ.get("TF_ASAP_SLOW") == "1"
slow = [pytest.mark.slow, pytest.mark.skipif(not RUN_SLOW, reason="slow: set TF_ASAP_SLOW=1 for the full sweep")]


def _small(build, size=32, **kwargs):
    return lambda: build(weights=None, input_shape=(size, size, 3), classes=5, classifier_activation=None, **kwargs)


FAMILIES = [
    pytest.param("ResNet50", _small(apps.ResNet50), id="ResNet50"),
    pytest.param("MobileNetV2", _small(apps.MobileNetV2, alpha=0.35), id="MobileNetV2"),
    pytest.param("MobileNetV3Small", _small(apps.MobileNetV3Small, minimalistic=False), id="MobileNetV3Small"),
    pytest.param("EfficientNetB0", _small(apps.EfficientNetB0), id="EfficientNetB0"),
    pytest.param("ConvNeXtTiny", _small(apps.ConvNeXtTiny), id="ConvNeXtTiny"),
    pytest.param("ResNet50V2", _small(apps.ResNet50V2), id="ResNet50V2", marks=slow),
    pytest.param("DenseNet121", _small(apps.DenseNet121), id="DenseNet121", marks=slow),
    pytest.param("EfficientNetV2B0", _small(apps.EfficientNetV2B0), id="EfficientNetV2B0", marks=slow),
    pytest.param("Xception", _small(apps.Xception, size=71), id="Xception", marks=slow),
    pytest.param("InceptionV3", _small(apps.InceptionV3, size=75), id="InceptionV3", marks=slow),
    pytest.param("InceptionResNetV2", _small(apps.InceptionResNetV2, size=75), id="InceptionResNetV2", marks=slow),
    pytest.param("MobileNet", _small(apps.MobileNet, alpha=0.25), id="MobileNet", marks=slow),
    pytest.param("VGG16", _small(apps.VGG16), id="VGG16", marks=slow),
    pytest.param("NASNetMobile", _small(apps.NASNetMobile), id="NASNetMobile", marks=slow),
]


def randomize_layer_scales(model, seed=0):
    """ConvNeXt's LayerScale starts at 1e-6, which would hide any error in its block."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "LayerScale":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.weights])
    return model


def random_half_masks(groups, seed=0):
    rng = np.random.default_rng(seed)
    masks = {}
    for group in groups:
        if group.prunable:
            keep = rng.random(group.size) > 0.5
            keep[rng.permutation(group.size)[: group.min_filters]] = True
            masks[group.name] = keep
    return masks


@pytest.mark.parametrize("name, build", FAMILIES)
def test_application_slims_to_the_masked_function(name, build):
    model = randomize_layer_scales(randomize_batchnorm(build()))
    pm = asap.make_prunable(model)
    groups = asap.channel_groups(pm)
    assert any(group.prunable for group in groups)
    for group in groups:
        assert group.prunable or group.reason
    asap.apply_masks(pm, random_half_masks(groups))
    small = asap.slim(pm)
    x = np.random.default_rng(1).normal(size=(2,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    dense = np.asarray(model(x, training=False))
    masked = np.asarray(pm(x, training=False))
    slimmed = np.asarray(small(x, training=False))
    scale = float(np.abs(masked).max())
    assert not np.allclose(masked, dense)  # The masks change the function...
    np.testing.assert_allclose(slimmed, masked, atol=1e-4 * scale, rtol=0)  # ...and slimming keeps it.
    assert small.count_params() < model.count_params()
