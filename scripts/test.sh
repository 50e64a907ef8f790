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
export TF_CPP_MIN_LOG_LEVEL=3
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
