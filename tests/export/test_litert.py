"""Tests for tf_asap.export.litert: running and evaluating .tflite models in LiteRT."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tf_asap.errors import ConfigurationError, DataError, ExportError
from tf_asap.export.litert import evaluate_tflite, run_tflite
from tf_asap.export.tflite import convert_tflite
from tests.export.models import keras_accuracy, random_images, residual_model, two_input_model


def test_int8_fashion_mnist_accuracy_within_one_point_of_float(
    trained_cnn, cnn_int8, fashion_mnist
):
    _, (x_test, y_test) = fashion_mnist

    float_accuracy = keras_accuracy(trained_cnn, x_test, y_test)
    int8_accuracy = evaluate_tflite(cnn_int8, x_test, y_test)

    assert float_accuracy > 0.7, "the test CNN did not train"
    assert abs(int8_accuracy - float_accuracy) <= 0.01, (
        f"float {float_accuracy:.3f}, int8 {int8_accuracy:.3f}"
    )


def test_int8_top1_agrees_with_keras(trained_cnn, cnn_int8, fashion_mnist):
    _, (x_test, _) = fashion_mnist

    int8_classes = run_tflite(cnn_int8, x_test).argmax(-1)
    float_classes = trained_cnn.predict(x_test, verbose=0).argmax(-1)

    assert np.mean(int8_classes == float_classes) >= 0.97


def test_run_tflite_handles_several_inputs_and_outputs():
    model = two_input_model()
    images = random_images(6, (8, 8, 3))
    extra = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)

    scores, value = run_tflite(convert_tflite(model), [images, extra])

    expected = model.predict([images, extra], verbose=0)
    np.testing.assert_allclose(scores, expected[0], atol=1e-5)
    np.testing.assert_allclose(value, expected[1], atol=1e-5)


def test_run_tflite_rejects_inputs_of_the_wrong_shape():
    flatbuffer = convert_tflite(residual_model(width=4))

    with pytest.raises(DataError, match=r"\(16, 16, 3\).*\(2, 8, 8, 3\)"):
        run_tflite(flatbuffer, random_images(2, (8, 8, 3)))


def test_run_tflite_rejects_something_that_is_not_a_flatbuffer(tmp_path):
    with pytest.raises(ExportError, match="not a TFLite flatbuffer"):
        run_tflite(b"definitely not a model", random_images(1))
    with pytest.raises(ConfigurationError, match="convert_tflite"):
        run_tflite(residual_model(width=4), random_images(1))


def test_missing_runtime_names_the_extra_to_install(monkeypatch):
    flatbuffer = convert_tflite(residual_model(width=4))
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)

    with pytest.raises(ImportError, match=r"pip install tf_asap\[tflite\]"):
        run_tflite(flatbuffer, random_images(1))


def test_importing_export_does_not_import_the_runtimes():
    code = (
        "import sys, tf_asap.export; "
        "print(any(m.startswith(('ai_edge_litert', 'tflite_micro')) "
        "for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )

    assert result.stdout.strip() == "False"
