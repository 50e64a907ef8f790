"""Tests for tf_asap.export: SavedModel, TFLite, TFLite Micro and latency."""

import gzip
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_asap
from tf_asap.export import _legacy as export
from tf_asap.errors import ConfigurationError
from tf_asap.errors import DataError
from tf_asap.errors import ExportError
from tf_asap.errors import UnsupportedModelError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


# ---------------------------------------------------------------------------
# Models and data
# ---------------------------------------------------------------------------


def residual_model(width=16, classes=10, input_shape=(16, 16, 3)):
    """A small ResNet-style model: conv/BN/ReLU, two residual blocks, head."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for block in range(2):
        y = keras.layers.Conv2D(width, 3, padding="same", name=f"b{block}_conv1")(x)
        y = keras.layers.BatchNormalization(name=f"b{block}_bn1")(y)
        y = keras.layers.ReLU(name=f"b{block}_relu1")(y)
        y = keras.layers.Conv2D(width, 3, padding="same", name=f"b{block}_conv2")(y)
        y = keras.layers.BatchNormalization(name=f"b{block}_bn2")(y)
        x = keras.layers.Add(name=f"b{block}_add")([x, y])
        x = keras.layers.ReLU(name=f"b{block}_out")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="tiny_resnet")
    _randomize_batch_norm(model)
    return model


def _randomize_batch_norm(model):
    """Gives BatchNormalization non-trivial statistics, as after training."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape),
                    rng.uniform(0.5, 1.5, variance.shape),
                ]
            )


def slimmed_residual_model():
    """The residual model with half the channels of each group removed."""
    prunable = tf_asap.make_prunable(residual_model(width=16))
    masks = {}
    for group in tf_asap.channel_groups(prunable):
        if group.prunable:
            keep = np.zeros(group.size, bool)
            keep[::2] = True
            masks[group.name] = keep
    tf_asap.apply_masks(prunable, masks)
    return tf_asap.slim(prunable)


def two_input_model():
    image = keras.Input((8, 8, 3), name="image")
    extra = keras.Input((4,), name="extra")
    x = keras.layers.Conv2D(4, 3, activation="relu")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Concatenate()([x, extra])
    class_scores = keras.layers.Dense(3, activation="softmax", name="scores")(x)
    value = keras.layers.Dense(1, name="value")(x)
    return keras.Model([image, extra], [class_scores, value])


def random_images(count, shape=(16, 16, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (count,) + shape).astype(
        np.float32
    )


def _read_idx(name):
    with gzip.open(os.path.join(FASHION_MNIST_DIR, name), "rb") as file:
        data = file.read()
    if "images" in name:
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)
    return np.frombuffer(data, np.uint8, offset=8)


@pytest.fixture(scope="module")
def fashion_mnist():
    """4000 training and 1000 test images of Fashion-MNIST, in [0, 1]."""
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip(f"Fashion-MNIST not found in {FASHION_MNIST_DIR}")
    x_train = _read_idx("train-images-idx3-ubyte.gz")[:4000]
    y_train = _read_idx("train-labels-idx1-ubyte.gz")[:4000]
    x_test = _read_idx("t10k-images-idx3-ubyte.gz")[:1000]
    y_test = _read_idx("t10k-labels-idx1-ubyte.gz")[:1000]
    scale = np.float32(1 / 255)
    return (
        (x_train[..., None] * scale, y_train.astype(np.int64)),
        (x_test[..., None] * scale, y_test.astype(np.int64)),
    )


@pytest.fixture(scope="module")
def trained_cnn(fashion_mnist):
    """A small CNN trained for 2 epochs on 4000 Fashion-MNIST images."""
    keras.utils.set_random_seed(0)
    (x_train, y_train), _ = fashion_mnist
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, outputs, name="fashion_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=64, epochs=2, verbose=0)
    return model


@pytest.fixture(scope="module")
def cnn_int8(trained_cnn, fashion_mnist):
    (x_train, _), _ = fashion_mnist
    return export.convert_tflite(trained_cnn, "int8", representative_data=x_train)


@pytest.fixture(scope="module")
def micro_bundle(trained_cnn, fashion_mnist, tmp_path_factory):
    (x_train, _), (x_test, y_test) = fashion_mnist
    out_dir = tmp_path_factory.mktemp("micro")
    return export.export_micro(
        trained_cnn,
        out_dir,
        "fashion_cnn",
        representative_data=x_train,
        evaluation_data=(x_test[:300], y_test[:300]),
    )


def _keras_accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


# ---------------------------------------------------------------------------
# SavedModel
# ---------------------------------------------------------------------------


def test_saved_model_signature_matches_keras_outputs(tmp_path):
    model = residual_model()
    x = random_images(8)

    path = export.export_saved_model(model, tmp_path, "classifier", version=3)

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

    path = export.export_saved_model(model, tmp_path, "slim")

    signature = tf.saved_model.load(path).signatures["serving_default"]
    outputs = signature(input_0=tf.constant(x))["output_0"].numpy()
    np.testing.assert_allclose(outputs, model(x), atol=1e-5)


def test_saved_model_keys_follow_input_and_output_order(tmp_path):
    model = two_input_model()
    images = random_images(5, (8, 8, 3))
    extra = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)

    path = export.export_saved_model(model, tmp_path, "two_headed")

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
    export.export_saved_model(first, tmp_path, "m", version=1)

    with pytest.raises(ExportError, match="already exists.*overwrite=True"):
        export.export_saved_model(second, tmp_path, "m", version=1)

    path = export.export_saved_model(second, tmp_path, "m", version=1, overwrite=True)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    outputs = signature(input_0=tf.constant(x))["output_0"]
    np.testing.assert_allclose(outputs, second(x), atol=1e-5)
    assert os.listdir(os.path.join(tmp_path, "m")) == ["1"]


def test_saved_model_failure_leaves_no_version_directory(tmp_path, monkeypatch):
    def failing_write(model, inputs, path):
        with open(os.path.join(path, "partial"), "w") as file:
            file.write("half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_write_serving_saved_model", failing_write)

    with pytest.raises(ExportError, match="disk full"):
        export.export_saved_model(residual_model(width=4), tmp_path, "m")
    assert os.listdir(os.path.join(tmp_path, "m")) == []


@pytest.mark.parametrize("version", [0, -1, "1", 1.0, True])
def test_saved_model_rejects_a_version_that_is_not_a_positive_integer(
    tmp_path, version
):
    with pytest.raises(ConfigurationError, match="positive integer"):
        export.export_saved_model(residual_model(width=4), tmp_path, "m", version)


@pytest.mark.parametrize("name", ["", "a/b", "..", None])
def test_saved_model_rejects_a_name_that_is_not_one_path_component(tmp_path, name):
    with pytest.raises(ConfigurationError, match="`name`"):
        export.export_saved_model(residual_model(width=4), tmp_path, name)


# ---------------------------------------------------------------------------
# TFLite conversion and LiteRT
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "quantization, atol",
    [("none", 1e-5), ("float16", 5e-3), ("dynamic", 2e-2)],
)
def test_float_tflite_modes_match_keras_outputs(tmp_path, quantization, atol):
    model = slimmed_residual_model()
    x = random_images(32)
    path = tmp_path / f"model_{quantization}.tflite"

    returned = export.export_tflite(model, path, quantization)

    assert returned == os.fspath(path)
    outputs = export.run_tflite(path, x, batch_size=10)
    expected = model.predict(x, verbose=0)
    assert outputs.shape == expected.shape
    np.testing.assert_allclose(outputs, expected, atol=atol)
    assert np.mean(outputs.argmax(-1) == expected.argmax(-1)) >= 0.95


def test_float16_and_dynamic_files_are_smaller_than_float32(tmp_path):
    model = residual_model(width=16)
    sizes = {
        mode: len(export.convert_tflite(model, mode))
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


def test_int8_fashion_mnist_accuracy_within_one_point_of_float(
    trained_cnn, cnn_int8, fashion_mnist
):
    _, (x_test, y_test) = fashion_mnist

    float_accuracy = _keras_accuracy(trained_cnn, x_test, y_test)
    int8_accuracy = export.evaluate_tflite(cnn_int8, x_test, y_test)

    assert float_accuracy > 0.7, "the test CNN did not train"
    assert abs(int8_accuracy - float_accuracy) <= 0.01, (
        f"float {float_accuracy:.3f}, int8 {int8_accuracy:.3f}"
    )


def test_int8_top1_agrees_with_keras(trained_cnn, cnn_int8, fashion_mnist):
    _, (x_test, _) = fashion_mnist

    int8_classes = export.run_tflite(cnn_int8, x_test).argmax(-1)
    float_classes = trained_cnn.predict(x_test, verbose=0).argmax(-1)

    assert np.mean(int8_classes == float_classes) >= 0.97


def test_int8_slimmed_residual_model_stays_close_to_keras():
    model = slimmed_residual_model()
    x = random_images(64, seed=3)

    flatbuffer = export.convert_tflite(model, "int8", random_images(100, seed=4))

    outputs = export.run_tflite(flatbuffer, x)
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=0.05)


def test_run_tflite_handles_several_inputs_and_outputs():
    model = two_input_model()
    images = random_images(6, (8, 8, 3))
    extra = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)

    scores, value = export.run_tflite(export.convert_tflite(model), [images, extra])

    expected = model.predict([images, extra], verbose=0)
    np.testing.assert_allclose(scores, expected[0], atol=1e-5)
    np.testing.assert_allclose(value, expected[1], atol=1e-5)


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

    flatbuffer = export.convert_tflite(model, "int8", make_data(x, y))

    outputs = export.run_tflite(flatbuffer, x[:8])
    np.testing.assert_allclose(outputs, model.predict(x[:8], verbose=0), atol=0.05)


def test_int8_reads_at_most_representative_samples_from_the_data():
    model = residual_model(width=4)
    drawn = []

    def endless():
        rng = np.random.default_rng(0)
        while True:
            drawn.append(1)
            yield rng.uniform(0, 1, (16, 16, 3)).astype(np.float32)

    export.convert_tflite(model, "int8", endless(), representative_samples=10)

    assert len(drawn) == 10


def test_export_tflite_replaces_a_file_without_leaving_temporaries(tmp_path):
    path = tmp_path / "out" / "model.tflite"
    path.parent.mkdir()
    path.write_bytes(b"old")

    export.export_tflite(residual_model(width=4), path)

    assert path.read_bytes()[4:8] == b"TFL3"
    assert os.listdir(path.parent) == ["model.tflite"]


def test_tflite_operators_lists_each_builtin_once_in_graph_order():
    flatbuffer = export.convert_tflite(slimmed_residual_model())

    operators = export.tflite_operators(flatbuffer)

    assert operators[0] == "CONV_2D"
    assert {"ADD", "MAX_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(operators)
    assert len(operators) == len(set(operators))


def test_static_batch_of_one_folds_the_flatten_shape_arithmetic():
    model = residual_model(width=4)
    x = random_images(3)

    dynamic = export.convert_tflite(model)
    static = export.convert_tflite(model, batch_size=1)

    assert "SHAPE" in export.tflite_operators(dynamic)
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(export.tflite_operators(static))
    np.testing.assert_allclose(
        export.run_tflite(static, x), model.predict(x, verbose=0), atol=1e-5
    )


def test_int8_with_a_static_batch_calibrates_on_whole_batches():
    model = residual_model(width=4)
    x = random_images(10)

    flatbuffer = export.convert_tflite(
        model, "int8", random_images(40, seed=5), batch_size=4
    )

    outputs = export.run_tflite(flatbuffer, x)
    assert outputs.shape == (10, 10)
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=0.05)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_unknown_quantization_mode_is_rejected_with_the_valid_modes():
    with pytest.raises(ConfigurationError, match="'int4'.*'none', 'float16'"):
        export.convert_tflite(residual_model(width=4), "int4")


def test_int8_without_representative_data_names_the_fix():
    with pytest.raises(ConfigurationError, match="representative_data.*'dynamic'"):
        export.convert_tflite(residual_model(width=4), "int8")


@pytest.mark.parametrize("batch_size", [0, 2.0, True])
def test_batch_size_must_be_none_or_a_positive_integer(batch_size):
    with pytest.raises(ConfigurationError, match="`batch_size`"):
        export.convert_tflite(residual_model(width=4), batch_size=batch_size)


def test_representative_data_with_a_float_mode_is_rejected():
    with pytest.raises(ConfigurationError, match="only used with quantization='int8'"):
        export.convert_tflite(residual_model(width=4), "dynamic", random_images(4))


def test_unknown_input_dimensions_are_rejected_for_tflite(tmp_path):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs)

    with pytest.raises(UnsupportedModelError, match=r"\(None, None, None, 3\).*keras\.Input\(shape="):
        export.export_tflite(model, tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()


def test_model_without_inputs_is_rejected(tmp_path):
    model = keras.Sequential([keras.layers.Dense(2)])

    with pytest.raises(UnsupportedModelError, match="no defined inputs"):
        export.export_saved_model(model, tmp_path, "m")
    with pytest.raises(UnsupportedModelError, match="no defined inputs"):
        export.convert_tflite(model)


def test_representative_data_of_the_wrong_shape_names_the_expected_shape():
    data = random_images(8)[..., 0]  # channel axis missing

    with pytest.raises(DataError, match=r"\(8, 16, 16\).*\(None, 16, 16, 3\)"):
        export.convert_tflite(residual_model(width=4), "int8", data)


def test_run_tflite_rejects_inputs_of_the_wrong_shape():
    flatbuffer = export.convert_tflite(residual_model(width=4))

    with pytest.raises(DataError, match=r"\(16, 16, 3\).*\(2, 8, 8, 3\)"):
        export.run_tflite(flatbuffer, random_images(2, (8, 8, 3)))


def test_run_tflite_rejects_something_that_is_not_a_flatbuffer(tmp_path):
    with pytest.raises(ExportError, match="not a TFLite flatbuffer"):
        export.run_tflite(b"definitely not a model", random_images(1))
    with pytest.raises(ConfigurationError, match="convert_tflite"):
        export.run_tflite(residual_model(width=4), random_images(1))


def test_missing_runtime_names_the_extra_to_install(monkeypatch):
    flatbuffer = export.convert_tflite(residual_model(width=4))
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)

    with pytest.raises(ImportError, match=r"pip install tf_asap\[tflite\]"):
        export.run_tflite(flatbuffer, random_images(1))


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


def test_micro_bundle_name_must_be_a_c_identifier(tmp_path):
    with pytest.raises(ConfigurationError, match="C identifier"):
        export.export_micro(residual_model(width=4), tmp_path, "my-model", random_images(4))


# ---------------------------------------------------------------------------
# TFLite Micro bundle
# ---------------------------------------------------------------------------


def test_micro_model_runs_at_the_reported_arena_and_fails_cleanly_below(
    micro_bundle, fashion_mnist
):
    _, (x_test, _) = fashion_mnist
    arena = micro_bundle.arena_size

    assert arena % export.ARENA_ALIGNMENT == 0
    outputs = export.run_tflite_micro(micro_bundle.tflite_path, x_test[:5], arena)
    assert outputs.shape == (5, 10)
    with pytest.raises(ExportError, match=f"{arena - 16}-byte arena"):
        export.run_tflite_micro(micro_bundle.tflite_path, x_test[:1], arena - 16)


def test_micro_accuracy_matches_litert_int8_and_float(micro_bundle, trained_cnn, fashion_mnist):
    _, (x_test, y_test) = fashion_mnist
    x, y = x_test[:300], y_test[:300]

    litert_accuracy = export.evaluate_tflite(micro_bundle.tflite_path, x, y)

    assert micro_bundle.evaluated_samples == 300
    assert abs(micro_bundle.accuracy - litert_accuracy) <= 0.01
    assert abs(micro_bundle.accuracy - micro_bundle.float_accuracy) <= 0.02
    assert micro_bundle.float_accuracy == pytest.approx(
        _keras_accuracy(trained_cnn, x, y)
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
        export.tflite_operators(micro_bundle.tflite_path)
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

    bundle = export.export_micro(model, tmp_path, "tiny", x, evaluation_data=evaluation)

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
    assert export.micro_op_resolver_snippet([operator]).splitlines()[1] == (
        f"op_resolver.{method}();"
    )


def test_op_resolver_snippet_refuses_custom_operators():
    with pytest.raises(ExportError, match="custom operators"):
        export.micro_op_resolver_snippet(["CONV_2D", "CUSTOM:MyOp"])


# ---------------------------------------------------------------------------
# Latency report
# ---------------------------------------------------------------------------


def test_latency_report_rows_hold_speedup_and_flops_ratio(tmp_path):
    wide = residual_model(width=32)
    slim = slimmed_residual_model()
    flatbuffer_path = export.export_tflite(slim, tmp_path / "slim.tflite")

    rows = export.latency_report(
        {"wide": wide, "slim": slim, "slim_file": flatbuffer_path},
        costs={"slim_file": (123, 4567)},
        num_runs=20,
        warmup_runs=2,
    )

    assert [row.name for row in rows] == ["wide", "slim", "slim_file"]
    wide_row, slim_row, file_row = rows
    assert wide_row.speedup == 1.0 and wide_row.flops_ratio == 1.0
    assert wide_row.flops == tf_asap.count_cost(wide).flops
    assert slim_row.flops_ratio == pytest.approx(
        tf_asap.count_cost(wide).flops / tf_asap.count_cost(slim).flops
    )
    assert slim_row.speedup == pytest.approx(wide_row.latency_ms / slim_row.latency_ms)
    assert slim_row.efficiency == pytest.approx(slim_row.speedup / slim_row.flops_ratio)
    assert (file_row.params, file_row.flops) == (123, 4567)
    assert file_row.size_bytes == os.path.getsize(flatbuffer_path)
    assert all(0 < row.latency_p10_ms <= row.latency_ms <= row.latency_p90_ms for row in rows)


def test_latency_report_can_time_with_thread_cpu_time():
    model = residual_model(width=8)

    rows = export.latency_report(
        {"a": model, "b": model}, clock="cpu", num_runs=10, warmup_runs=1
    )

    assert all(row.latency_ms > 0 for row in rows)
    with pytest.raises(ConfigurationError, match="num_threads=1"):
        export.latency_report({"a": model}, clock="cpu", num_threads=2)
    with pytest.raises(ConfigurationError, match="`clock`"):
        export.latency_report({"a": model}, clock="gpu")


def test_latency_table_renders_one_markdown_row_per_model():
    rows = [
        export.LatencyRow("original", 2048, 2.0, 1.9, 2.2, 1000, 4_000_000, 1.0, 1.0, 1.0),
        export.LatencyRow("slimmed", 1024, 1.0, 0.9, 1.1, 500, 2_000_000, 2.0, 2.0, 1.0),
        export.LatencyRow("no_cost", 1024, 1.0, 0.9, 1.1),
    ]

    table = export.render_latency_table(rows).splitlines()

    assert len(table) == 5
    assert table[0].startswith("| model | size (KiB) | params | FLOPs |")
    assert table[3] == (
        "| slimmed | 1.0 | 500 | 2.00M | 1.000 (0.900-1.100) | 2.00x | 2.00x | 100% |"
    )
    assert table[4].endswith("| 1.00x | - | - |")


def test_latency_report_rejects_an_unknown_baseline():
    with pytest.raises(ConfigurationError, match="baseline"):
        export.latency_report({"a": residual_model(width=4)}, baseline="b")
