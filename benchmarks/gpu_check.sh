#!/usr/bin/env bash
# GPU checks of issue 17, for a machine with an NVIDIA GPU (the `device` tool's machine):
#   1. bf16 mixed precision and the fused AdamW on the real MiniLM (one fold of 042, one epoch);
#   2. 5 folds of 042 through `comp train --ray local` with one GPU per fold task;
#   3. a 2-process ddp run of one model when the machine has 2 GPUs.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (writes gpu_check.md and the logs there)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-gpu-check}}"
mkdir -p "$OUT"
export WANDB_MODE=disabled HF_HUB_OFFLINE=1
make setup >/dev/null
COMP=.venv/bin/comp
GPUS=$(.venv/bin/python -c "import torch; print(torch.cuda.device_count())")
{
  echo "# GPU check ($(date -u +%FT%TZ))"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | sed 's/^/- GPU: /'
  echo "- torch sees $GPUS GPU(s)"
} > "$OUT/gpu_check.md"

run() {  # name, then the command
  local name=$1; shift
  local t0=$(date +%s)
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$? t1=$(date +%s)
  echo "- $name: exit $rc, $((t1 - t0)) s; $(grep -m1 'OOF ' "$OUT/$name.log" || tail -1 "$OUT/$name.log")" >> "$OUT/gpu_check.md"
}

run bf16-fold0 $COMP train exp=042 --fold 0 --force train.precision=bf16-mixed train.epochs=1
run ray-5-folds $COMP train exp=042 --fold all --force --ray local "train.resources={num_gpus: 1, num_cpus: 4}"
if [ "$GPUS" -ge 2 ]; then
  run ddp-2-gpus $COMP train exp=042 --fold 0 --force train.devices=2 train.strategy=ddp train.select=last \
      train.epochs=1
fi
cat "$OUT/gpu_check.md"
