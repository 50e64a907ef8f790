#!/usr/bin/env bash
# Sets tf_asap up on a fresh Debian/Ubuntu machine and runs the main job on
# the embedded default data set (Fashion-MNIST): about 8 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -d /usr/share/datasets/fashion-mnist && -z "${TF_ASAP_DATA_DIR:-}" ]] && command -v apt-get >/dev/null; then
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv dataset-fashion-mnist >/dev/null
fi
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
if [[ ! -x .venv/bin/tf-asap ]] || ! .venv/bin/python -c "import tf_asap, ai_edge_litert, matplotlib" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[tflite,plot]"
fi
# The main job: prune the shipped baseline (saved_models/fashion_mnist_cnn) with
# the accuracy-guaranteed policy, deciding on a held-out 10% of the training
# images, export SavedModel and int8 TFLite, and print the summary table with
# the test accuracy. Its run directory, runs/main_job, makes it resumable:
# delete it to start over. Extra arguments go to `tf-asap demo` (see --help).
# The command line filters TensorFlow's informational log lines itself and
# lets errors through.
exec .venv/bin/tf-asap demo --baseline saved_models/fashion_mnist_cnn --run-dir runs/main_job "$@"
