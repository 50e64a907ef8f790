#!/usr/bin/env bash
# Sets tf_asap up on a fresh Debian/Ubuntu machine and runs the main job on
# the embedded default data set (Fashion-MNIST): 3-7 minutes on 2 CPU cores.
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
export TF_CPP_MIN_LOG_LEVEL=3
# The main job: prune the shipped baseline (saved_models/fashion_mnist_cnn) with
# the accuracy-guaranteed policy, export SavedModel and int8 TFLite, and print
# the summary table. Its run directory, runs/main_job, makes it resumable:
# delete it to start over. Extra arguments go to `tf-asap demo` (see --help).
# TensorFlow prints start-up lines from C++ while the package is imported,
# before the command line can filter them; drop them here.
exec .venv/bin/tf-asap demo --baseline saved_models/fashion_mnist_cnn --run-dir runs/main_job "$@" \
  2> >(grep -v -E '^(WARNING: All log messages before absl|[IWEF][0-9]{4} [0-9:.]+ +[0-9]+ [^ ]+:[0-9]+\] |To enable the following instructions)' >&2)
