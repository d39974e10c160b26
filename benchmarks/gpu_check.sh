#!/usr/bin/env bash
# Run the quick step-latency benchmark on a CUDA device in bf16, installing nothing.
# Usage: bash benchmarks/gpu_check.sh [extra step_latency options, e.g. --adapter PATH]
# Writes step_latency_gpu.json under $OUT when OUT is set, else under benchmark-results/.
# Needs a Python with this repository's dependencies and a CUDA build of torch; llama.cpp is left out
# because its engine runs on CPU only. Budget: under 8 minutes (quick steps, 3 rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
OUT_DIR="${OUT:-benchmark-results}"
mkdir -p "$OUT_DIR"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch in $PYTHON sees no CUDA device; run this on a machine with a GPU and a CUDA torch" >&2
    exit 1
fi
"$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name(), '| torch', torch.__version__)"
export HF_HUB_OFFLINE=1
timeout 450 "$PYTHON" -m benchmarks.step_latency --quick --device cuda --dtype bfloat16 \
    --engines transformers,layerroute_all_blocks,layerroute,chat_huggingface \
    --json "$OUT_DIR/step_latency_gpu.json" "$@"
