#!/usr/bin/env bash
# Sets tf_asap up on a fresh Debian/Ubuntu machine and runs the main job on
# the embedded default data set (Fashion-MNIST).
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
if ! .venv/bin/python -c "import tf_asap, ai_edge_litert, matplotlib" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[tflite,plot]"
fi
export TF_CPP_MIN_LOG_LEVEL=3
exec .venv/bin/python examples/quickstart.py "$@"
