"""Tests for tf_asap.export.micro and micro_bundle: TFLite Micro, the arena, the firmware bundle."""

import json
import os
import re

import pytest
import tensorflow as tf

from tf_asap.errors import ConfigurationError, ExportError
from tf_asap.export.flatbuffer import tflite_operators
from tf_asap.export.litert import evaluate_tflite
from tf_asap.export.micro import ARENA_ALIGNMENT, run_tflite_micro
from tf_asap.export.micro_bundle import export_micro, micro_op_resolver_snippet
from tests.export.models import keras_accuracy, random_images, residual_model


def test_micro_bundle_name_must_be_a_c_identifier(tmp_path):
    with pytest.raises(ConfigurationError, match="C identifier"):
        export_micro(residual_model(width=4), tmp_path, "my-model", random_images(4))


def test_micro_model_runs_at_the_reported_arena_and_fails_cleanly_below(
    micro_bundle, fashion_mnist
):
    _, (x_test, _) = fashion_mnist
    arena = micro_bundle.arena_size

    assert arena % ARENA_ALIGNMENT == 0
    outputs = run_tflite_micro(micro_bundle.tflite_path, x_test[:5], arena)
    assert outputs.shape == (5, 10)
    with pytest.raises(ExportError, match=f"{arena - 16}-byte arena"):
        run_tflite_micro(micro_bundle.tflite_path, x_test[:1], arena - 16)


def test_micro_accuracy_matches_litert_int8_and_float(micro_bundle, trained_cnn, fashion_mnist):
    _, (x_test, y_test) = fashion_mnist
    x, y = x_test[:300], y_test[:300]

    litert_accuracy = evaluate_tflite(micro_bundle.tflite_path, x, y)

    assert micro_bundle.evaluated_samples == 300
    assert abs(micro_bundle.accuracy - litert_accuracy) <= 0.01
    assert abs(micro_bundle.accuracy - micro_bundle.float_accuracy) <= 0.02
    assert micro_bundle.float_accuracy == pytest.approx(
        keras_accuracy(trained_cnn, x, y)
    )


def test_micro_c_array_holds_the_exact_tflite_bytes(micro_bundle):
    source = open(micro_bundle.source_path).read()
    with open(micro_bundle.tflite_path, "rb") as file:
        flatbuffer = file.read()

    body = re.search(
        r"alignas\(16\) const unsigned char g_fashion_cnn_model_data\[\] = \{(.*?)\};",
        source,
        re.S,
    ).group(1)
    length = re.search(r"g_fashion_cnn_model_data_len = (\d+);", source).group(1)
    parsed = bytes(int(token, 16) for token in re.findall(r"0x[0-9a-f]{2}", body))

    assert parsed == flatbuffer
    assert int(length) == len(flatbuffer) == micro_bundle.model_size


def test_micro_header_declares_the_array_arena_and_quantization(micro_bundle):
    header = open(micro_bundle.header_path).read()

    assert "extern const unsigned char g_fashion_cnn_model_data[];" in header
    assert "extern const unsigned int g_fashion_cnn_model_data_len;" in header
    assert (
        f"constexpr int kFashionCnnTensorArenaSize = {micro_bundle.arena_size};"
        in header
    )
    scale = float(re.search(r"kFashionCnnInputScale = ([0-9.e-]+)f;", header).group(1))
    assert scale == pytest.approx(1 / 255, rel=1e-3)


def test_micro_op_resolver_registers_exactly_the_model_operators(micro_bundle):
    resolver = open(micro_bundle.op_resolver_path).read()

    assert micro_bundle.operators == tuple(
        tflite_operators(micro_bundle.tflite_path)
    )
    assert set(micro_bundle.operators) == {
        "CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"
    }
    registered = re.findall(r"TF_LITE_ENSURE_STATUS\(resolver\.(Add\w+)\(\)\)", resolver)
    assert len(registered) == len(micro_bundle.operators)
    assert "AddConv2D" in registered and "AddFullyConnected" in registered
    count = f"kFashionCnnOperatorCount = {len(micro_bundle.operators)};"
    assert count in resolver
    assert micro_bundle.op_resolver_snippet.startswith(
        f"tflite::MicroMutableOpResolver<{len(micro_bundle.operators)}> op_resolver;"
    )


def test_micro_manifest_records_the_measured_figures(micro_bundle):
    with open(micro_bundle.manifest_path) as file:
        manifest = json.load(file)

    assert manifest["arena_size"] == micro_bundle.arena_size
    assert manifest["operators"] == list(micro_bundle.operators)
    assert manifest["accuracy"] == micro_bundle.accuracy
    assert manifest["inputs"][0]["dtype"] == "int8"


def test_micro_bundle_evaluates_a_dataset_of_x_y(tmp_path):
    model = residual_model(width=4)
    x = random_images(12)
    y = model.predict(x, verbose=0).argmax(-1)
    evaluation = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)

    bundle = export_micro(model, tmp_path, "tiny", x, evaluation_data=evaluation)

    assert bundle.evaluated_samples == 12
    assert bundle.float_accuracy == 1.0
    assert bundle.accuracy >= 0.75
    assert sorted(os.listdir(tmp_path)) == [
        "tiny.tflite",
        "tiny_manifest.json",
        "tiny_model_data.cc",
        "tiny_model_data.h",
        "tiny_op_resolver.h",
    ]


@pytest.mark.parametrize(
    "operator, method",
    [
        ("CONV_2D", "AddConv2D"),
        ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
        ("FULLY_CONNECTED", "AddFullyConnected"),
        ("MAX_POOL_2D", "AddMaxPool2D"),
        ("AVERAGE_POOL_2D", "AddAveragePool2D"),
        ("RELU6", "AddRelu6"),
        ("MEAN", "AddMean"),
        ("BATCH_MATMUL", "AddBatchMatMul"),
    ],
)
def test_op_resolver_method_names_follow_tflite_micro(operator, method):
    assert micro_op_resolver_snippet([operator]).splitlines()[1] == (
        f"op_resolver.{method}();"
    )


def test_op_resolver_snippet_refuses_custom_operators():
    with pytest.raises(ExportError, match="custom operators"):
        micro_op_resolver_snippet(["CONV_2D", "CUSTOM:MyOp"])
