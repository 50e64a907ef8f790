"""Tests for tf_asap.export.tflite: conversion, quantization modes, calibration data."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_asap.errors import ConfigurationError, DataError, UnsupportedModelError
from tf_asap.export.flatbuffer import tflite_operators
from tf_asap.export.litert import run_tflite
from tf_asap.export.saved_model import export_saved_model
from tf_asap.export.tflite import convert_tflite, export_tflite
from tests.export.models import random_images, residual_model, slimmed_residual_model, two_input_model


@pytest.mark.parametrize(
    "quantization, atol",
    [("none", 1e-5), ("float16", 5e-3), ("dynamic", 2e-2)],
)
def test_float_tflite_modes_match_keras_outputs(tmp_path, quantization, atol):
    model = slimmed_residual_model()
    x = random_images(32)
    path = tmp_path / f"model_{quantization}.tflite"

    returned = export_tflite(model, path, quantization)

    assert returned == os.fspath(path)
    outputs = run_tflite(path, x, batch_size=10)
    expected = model.predict(x, verbose=0)
    assert outputs.shape == expected.shape
    np.testing.assert_allclose(outputs, expected, atol=atol)
    assert np.mean(outputs.argmax(-1) == expected.argmax(-1)) >= 0.95


def test_float16_and_dynamic_files_are_smaller_than_float32(tmp_path):
    model = residual_model(width=16)
    sizes = {
        mode: len(convert_tflite(model, mode))
        for mode in ("none", "float16", "dynamic")
    }

    assert sizes["float16"] < 0.6 * sizes["none"]
    assert sizes["dynamic"] < 0.4 * sizes["none"]


def test_int8_tflite_takes_and_returns_int8(cnn_int8):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=cnn_int8)

    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["input_0"], "outputs": ["output_0"]}
    }


def test_int8_slimmed_residual_model_stays_close_to_keras():
    model = slimmed_residual_model()
    x = random_images(64, seed=3)

    flatbuffer = convert_tflite(model, "int8", random_images(100, seed=4))

    outputs = run_tflite(flatbuffer, x)
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=0.05)


@pytest.mark.parametrize(
    "make_data",
    [
        pytest.param(lambda x, y: x, id="numpy"),
        pytest.param(lambda x, y: (x, y), id="x_y_arrays"),
        pytest.param(
            lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)).batch(16),
            id="batched_dataset_of_x_y",
        ),
        pytest.param(
            lambda x, y: tf.data.Dataset.from_tensor_slices(x), id="dataset_of_x"
        ),
        pytest.param(lambda x, y: (sample for sample in x), id="generator"),
    ],
)
def test_int8_accepts_every_representative_data_form(make_data):
    model = residual_model(width=4)
    x = random_images(40)
    y = np.zeros(40, np.int64)

    flatbuffer = convert_tflite(model, "int8", make_data(x, y))

    outputs = run_tflite(flatbuffer, x[:8])
    np.testing.assert_allclose(outputs, model.predict(x[:8], verbose=0), atol=0.05)


def test_int8_reads_at_most_representative_samples_from_the_data():
    model = residual_model(width=4)
    drawn = []

    def endless():
        rng = np.random.default_rng(0)
        while True:
            drawn.append(1)
            yield rng.uniform(0, 1, (16, 16, 3)).astype(np.float32)

    convert_tflite(model, "int8", endless(), representative_samples=10)

    assert len(drawn) == 10


def test_export_tflite_replaces_a_file_without_leaving_temporaries(tmp_path):
    path = tmp_path / "out" / "model.tflite"
    path.parent.mkdir()
    path.write_bytes(b"old")

    export_tflite(residual_model(width=4), path)

    assert path.read_bytes()[4:8] == b"TFL3"
    assert os.listdir(path.parent) == ["model.tflite"]


def test_static_batch_of_one_folds_the_flatten_shape_arithmetic():
    model = residual_model(width=4)
    x = random_images(3)

    dynamic = convert_tflite(model)
    static = convert_tflite(model, batch_size=1)

    assert "SHAPE" in tflite_operators(dynamic)
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(tflite_operators(static))
    np.testing.assert_allclose(
        run_tflite(static, x), model.predict(x, verbose=0), atol=1e-5
    )


def test_int8_with_a_static_batch_calibrates_on_whole_batches():
    model = residual_model(width=4)
    x = random_images(10)

    flatbuffer = convert_tflite(
        model, "int8", random_images(40, seed=5), batch_size=4
    )

    outputs = run_tflite(flatbuffer, x)
    assert outputs.shape == (10, 10)
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=0.05)


def test_unknown_quantization_mode_is_rejected_with_the_valid_modes():
    with pytest.raises(ConfigurationError, match="`quantization` must be one of 'none', 'float16'.*received 'int4'"):
        convert_tflite(residual_model(width=4), "int4")


def test_int8_without_representative_data_names_the_fix():
    with pytest.raises(ConfigurationError, match="representative_data.*'dynamic'"):
        convert_tflite(residual_model(width=4), "int8")


@pytest.mark.parametrize("batch_size", [0, 2.5, True])
def test_batch_size_must_be_none_or_a_positive_integer(batch_size):
    with pytest.raises(ConfigurationError, match="`batch_size`"):
        convert_tflite(residual_model(width=4), batch_size=batch_size)


def test_representative_data_with_a_float_mode_is_rejected():
    with pytest.raises(ConfigurationError, match="only used with quantization='int8'"):
        convert_tflite(residual_model(width=4), "dynamic", random_images(4))


def test_unknown_input_dimensions_are_rejected_for_tflite(tmp_path):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs)

    with pytest.raises(UnsupportedModelError, match=r"\(None, None, None, 3\).*keras\.Input\(shape="):
        export_tflite(model, tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()


def test_model_without_inputs_is_rejected(tmp_path):
    model = keras.Sequential([keras.layers.Dense(2)])

    with pytest.raises(UnsupportedModelError, match="no defined inputs"):
        export_saved_model(model, tmp_path, "m")
    with pytest.raises(UnsupportedModelError, match="no defined inputs"):
        convert_tflite(model)


def test_representative_data_of_the_wrong_shape_names_the_expected_shape():
    data = random_images(8)[..., 0]  # channel axis missing

    with pytest.raises(DataError, match=r"\(8, 16, 16\).*\(None, 16, 16, 3\)"):
        convert_tflite(residual_model(width=4), "int8", data)


def test_int8_calibrates_a_two_input_model_from_a_tuple_or_a_dict():
    model = two_input_model()
    images = random_images(20, (8, 8, 3))
    extra = np.random.default_rng(2).normal(size=(20, 4)).astype(np.float32)
    by_name = {tensor.name: array for tensor, array in zip(model.inputs, (images, extra))}

    from_tuple = convert_tflite(model, "int8", (images, extra))
    from_dict = convert_tflite(model, "int8", by_name)

    assert from_tuple == from_dict
    scores, _ = run_tflite(from_tuple, [images, extra])
    np.testing.assert_allclose(scores, model.predict([images, extra], verbose=0)[0], atol=0.05)
