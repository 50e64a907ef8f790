"""Tests for tf_asap.export.saved_model: the TF Serving layout and signature."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tf_asap.errors import ConfigurationError, ExportError
from tf_asap.export import saved_model
from tf_asap.export.saved_model import export_saved_model
from tests.export.models import random_images, residual_model, slimmed_residual_model, two_input_model


def test_saved_model_signature_matches_keras_outputs(tmp_path):
    model = residual_model()
    x = random_images(8)

    path = export_saved_model(model, tmp_path, "classifier", version=3)

    assert path == os.path.join(tmp_path, "classifier", "3")
    signature = tf.saved_model.load(path).signatures["serving_default"]
    _, input_specs = signature.structured_input_signature
    assert set(input_specs) == {"input_0"}
    assert input_specs["input_0"].shape.as_list() == [None, 16, 16, 3]
    outputs = signature(input_0=tf.constant(x))
    assert set(outputs) == {"output_0"}
    np.testing.assert_allclose(outputs["output_0"].numpy(), model(x), atol=1e-5)


def test_saved_model_round_trips_a_slimmed_residual_model(tmp_path):
    model = slimmed_residual_model()
    x = random_images(4)

    path = export_saved_model(model, tmp_path, "slim")

    signature = tf.saved_model.load(path).signatures["serving_default"]
    outputs = signature(input_0=tf.constant(x))["output_0"].numpy()
    np.testing.assert_allclose(outputs, model(x), atol=1e-5)


def test_saved_model_keys_follow_input_and_output_order(tmp_path):
    model = two_input_model()
    images = random_images(5, (8, 8, 3))
    extra = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)

    path = export_saved_model(model, tmp_path, "two_headed")

    signature = tf.saved_model.load(path).signatures["serving_default"]
    _, input_specs = signature.structured_input_signature
    assert input_specs["input_0"].shape.as_list() == [None, 8, 8, 3]
    assert input_specs["input_1"].shape.as_list() == [None, 4]
    outputs = signature(input_0=tf.constant(images), input_1=tf.constant(extra))
    expected = model([images, extra])
    assert set(outputs) == {"output_0", "output_1"}
    np.testing.assert_allclose(outputs["output_0"], expected[0], atol=1e-5)
    np.testing.assert_allclose(outputs["output_1"], expected[1], atol=1e-5)


def test_saved_model_refuses_an_existing_version_unless_overwrite(tmp_path):
    first = residual_model(width=4)
    second = residual_model(width=8)
    x = random_images(2)
    export_saved_model(first, tmp_path, "m", version=1)

    with pytest.raises(ExportError, match="already exists.*overwrite=True"):
        export_saved_model(second, tmp_path, "m", version=1)

    path = export_saved_model(second, tmp_path, "m", version=1, overwrite=True)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    outputs = signature(input_0=tf.constant(x))["output_0"]
    np.testing.assert_allclose(outputs, second(x), atol=1e-5)
    assert os.listdir(os.path.join(tmp_path, "m")) == ["1"]


def test_saved_model_failure_leaves_no_version_directory(tmp_path, monkeypatch):
    def failing_write(model, inputs, path):
        with open(os.path.join(path, "partial"), "w") as file:
            file.write("half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(saved_model, "write_serving_saved_model", failing_write)

    with pytest.raises(ExportError, match="disk full"):
        export_saved_model(residual_model(width=4), tmp_path, "m")
    assert os.listdir(os.path.join(tmp_path, "m")) == []


@pytest.mark.parametrize("version", [0, -1, "1", 2.5, True])
def test_saved_model_rejects_a_version_that_is_not_a_positive_integer(
    tmp_path, version
):
    with pytest.raises(ConfigurationError, match="`version` must be an integer >= 1.*numeric directory names"):
        export_saved_model(residual_model(width=4), tmp_path, "m", version)


@pytest.mark.parametrize("name", ["", "a/b", "..", None])
def test_saved_model_rejects_a_name_that_is_not_one_path_component(tmp_path, name):
    with pytest.raises(ConfigurationError, match="`name`"):
        export_saved_model(residual_model(width=4), tmp_path, name)
