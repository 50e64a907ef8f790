#!/usr/bin/env bash
# Runs the test suite in the project's virtual environment (created if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import tf_asap, pytest, hypothesis, ai_edge_litert, tensorflow_datasets, matplotlib" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test,tflite,tfds,plot]"
fi
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow_serving') is None)"; then
  # The `serving` extra's protobufs pin a TensorFlow version: install the release matching ours
  # with --no-deps so that TensorFlow and Keras stay as they are (protobuf and grpcio, its only
  # other needs, come with TensorFlow). Without it the TF Serving request test is skipped.
  tf_minor=$(TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -c "import tensorflow as tf; print('.'.join(tf.__version__.split('.')[:2]))" 2>/dev/null)
  .venv/bin/python -m pip install --quiet --no-deps "tensorflow-serving-api==${tf_minor}.*" \
    || echo "tensorflow-serving-api not installed: the TF Serving request test will be skipped." >&2
fi
export TF_CPP_MIN_LOG_LEVEL=3
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
