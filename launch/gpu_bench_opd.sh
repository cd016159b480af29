#!/usr/bin/env bash
# BENCHMARKS.md's Video-OPD step-time run: `timegrpo bench --method opd` (timegrpo/bench/opd.py) on the
# Qwen2.5-VL-3B architecture (random weights, built offline from its published shapes), bf16, sdpa, gradient
# checkpointing: a GRPO step (1 prompt x G 8, beta 0.04, reference on the GPU) and a Video-OPD step (the same prompt,
# G 1, beta 0, a frozen teacher of the student's size) alternating, 3 timed steps each after 1 warm-up; 72 frames of
# 280x280 at 2 fps = 3600 visual tokens per prompt, 200-token completions. Both trainers live at once (policy,
# reference or teacher, gradients and AdamW state of each): the 3B, not the 7B, fits one 139 GiB H200 so.
# Writes benchopd.json, benchopd.md and log.txt to $OUT (default outputs/gpu-opd). Run from the repository root.
# Extra arguments go to `timegrpo bench`. Needs timegrpo's dependencies (`pip install -e .`) and a GPU.
set -o pipefail
OUT=${OUT:-outputs/gpu-opd}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
PY=${PY:-python3}
{
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  date -u +"start %Y-%m-%d %H:%M:%S UTC"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv 2>&1 || true
  "$PY" -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__); print('gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)" \
    || exit 1
  time "$PY" -m timegrpo.cli bench --method opd --arch qwen2_5_vl_3b --frames 72 --size 280 --prompts 1 \
    --num-generations 8 --completion-len 200 --beta 0.04 --dtype bfloat16 --gradient-checkpointing --steps 3 \
    --warmup 1 --threads 0 --label qwen2_5_vl_3b-opd-vs-grpo --json-out "$OUT/benchopd.json" \
    --markdown "$OUT/benchopd.md" "$@"
  rc=$?
  nvidia-smi --query-gpu=memory.used,memory.total --format=csv 2>&1 || true
  date -u +"end %Y-%m-%d %H:%M:%S UTC (rc $rc)"
  exit $rc
} 2>&1 | tee "$OUT/log.txt"
