"""The SavedModel's serving contract, checked with the tools TF Serving users run.

`saved_model_cli` (shipped with TensorFlow) reads the signature the way TF
Serving does; the `tensorflow-serving-api` protobufs (the `serving` extra) are
the request and response a gRPC client sends and receives.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_asap.export.saved_model import export_saved_model
from tests.export.models import random_images, two_input_model

_DTYPES = {"float32": "DT_FLOAT", "float16": "DT_HALF", "int32": "DT_INT32", "int8": "DT_INT8"}


def saved_model_cli(*arguments):
    """Runs TensorFlow's `saved_model_cli` in a child process; returns its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def parse_signatures(text):
    """{signature name: {"inputs"|"outputs": {key: (dtype, shape)}, "method": str}}.

    Reads the SignatureDefs that `saved_model_cli show --all` prints.
    """
    signatures = {}
    sections = re.split(r"^signature_def\['([^']+)'\]:$", text, flags=re.M)
    for name, body in zip(sections[1::2], sections[2::2]):
        parsed = {"inputs": {}, "outputs": {}}
        for kind, key, dtype, shape in re.findall(
            r"(inputs|outputs)\['([^']+)'\] tensor_info:\s+dtype: (\w+)\s+shape: ([^\n]+)", body
        ):
            dims = tuple(int(dim) for dim in re.findall(r"-?\d+", shape))
            parsed[kind][key] = (dtype, dims)
        method = re.search(r"Method name is: ([^\n]*)", body)
        parsed["method"] = method.group(1).strip() if method else None
        signatures[name] = parsed
    return signatures


def expected_tensors(tensors, prefix):
    """{key: (dtype, shape)} as saved_model_cli prints them, from Keras tensors."""
    return {
        f"{prefix}_{index}": (_DTYPES[tensor.dtype], tuple(-1 if dim is None else dim for dim in tensor.shape))
        for index, tensor in enumerate(tensors)
    }


def test_saved_model_cli_shows_one_predict_signature_with_stable_keys(tmp_path):
    model = two_input_model()
    path = export_saved_model(model, tmp_path, "two_headed", version=4)

    shown = saved_model_cli("show", "--dir", path, "--all")

    assert "MetaGraphDef with tag-set: 'serve'" in shown
    signatures = parse_signatures(shown)
    assert set(signatures) - {"__saved_model_init_op"} == {"serving_default"}
    serving = signatures["serving_default"]
    assert serving["method"] == "tensorflow/serving/predict"
    assert serving["inputs"] == expected_tensors(model.inputs, "input")
    assert serving["outputs"] == expected_tensors(model.outputs, "output")
    assert serving["inputs"] == {"input_0": ("DT_FLOAT", (-1, 8, 8, 3)), "input_1": ("DT_FLOAT", (-1, 4))}


def test_a_tf_serving_predict_request_runs_on_the_exported_signature(tmp_path):
    predict_pb2 = pytest.importorskip(
        "tensorflow_serving.apis.predict_pb2", reason="needs the `serving` extra (tensorflow-serving-api)"
    )
    model = two_input_model()
    images = random_images(3, (8, 8, 3))
    extra = np.random.default_rng(4).normal(size=(3, 4)).astype(np.float32)
    path = export_saved_model(model, tmp_path, "two_headed", version=2)

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "two_headed"
    request.model_spec.version.value = 2
    request.model_spec.signature_name = "serving_default"
    request.inputs["input_0"].CopyFrom(tf.make_tensor_proto(images))
    request.inputs["input_1"].CopyFrom(tf.make_tensor_proto(extra))
    received = predict_pb2.PredictRequest.FromString(request.SerializeToString())

    # What TF Serving does with it: resolve the version directory and the
    # signature, feed each input tensor by key, answer with every output.
    version_dir = os.path.join(tmp_path, received.model_spec.name, str(received.model_spec.version.value))
    signature = tf.saved_model.load(version_dir).signatures[received.model_spec.signature_name]
    feeds = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in received.inputs.items()}
    response = predict_pb2.PredictResponse()
    for key, value in signature(**feeds).items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))

    assert version_dir == path
    expected = model.predict([images, extra], verbose=0)
    assert sorted(response.outputs) == ["output_0", "output_1"]
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["output_0"]), expected[0], atol=1e-5)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["output_1"]), expected[1], atol=1e-5)
