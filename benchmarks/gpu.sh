#!/usr/bin/env bash
# GPU figures in a few minutes on a machine with an NVIDIA GPU, onnxruntime-gpu and torch:
# trains a paper-size bundle for one epoch on the GPU, runs the GPU tests, then benchmarks/gpu.py.
#   bash benchmarks/gpu.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
work=${TMPDIR:-/tmp}/deepsmote-gpu
rm -rf "$work" && mkdir -p "$work"
"$python" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
bundle=$work/paper.bundle
start=$(date +%s)
"$python" -m deepsmote.runtime.cli train data/fmnist-mini/train-images-idx3-ubyte.gz \
  --out "$bundle" --epochs 1 --width 64 --latent-dim 300 --device cuda
echo "paper-size bundle trained and exported in $(( $(date +%s) - start )) s"
"$python" -m pytest -q -p no:cacheprovider tests/test_runtime_precision.py
"$python" benchmarks/gpu.py --bundle "$bundle" "${@:2}"
