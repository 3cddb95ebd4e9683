#!/usr/bin/env bash
# GPU benchmark of glipcli on a machine with an NVIDIA GPU and no network: installs nothing.
#
#   bash bench/gpu.sh [OUT_DIR] [extra options of python -m bench.gpu]
#
# Exports a GLIP-T-sized random model in fp32 and fp16 (bench/.cache), times ONNX Runtime's CUDA
# (and TensorRT, when present) provider against eager PyTorch on CUDA at 800x1333, checks fp16
# against fp32, and writes gpu.json to OUT_DIR (default: $OUT, else runs/bench-gpu). < 8 minutes.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${OUT:-$repo/runs/bench-gpu}}"
shift || true

if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python="${PYTHON:-python3}"; fi
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "bench/gpu.sh: no NVIDIA GPU here (nvidia-smi missing or sees no device); nothing measured" >&2
    exit 2
fi
nvidia-smi -L

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # never reach for the network
cd "$repo"
mkdir -p "$out"
exec timeout 470 "$python" -m bench.gpu --out "$out" "$@"
