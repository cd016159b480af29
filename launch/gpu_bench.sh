#!/usr/bin/env bash
# BENCHMARKS.md's GPU run: the Qwen2.5-VL-7B architecture (random weights, built offline from its published shapes),
# bf16, sdpa, gradient checkpointing, at Time-R1's settings: G 8, 2 fps, 72 frames of 280x280 = 3600 visual
# tokens per prompt, 200-token completions, beta 0.04; 3 timed optimiser steps after 1 warm-up, first with
# train.share_prompt_prefix on (each prompt computed once for its 8 completions), then, that trainer freed, off
# (--compare-prefix-off --sequential: the model is built once; each trainer's peak memory is its own): step time by
# phase, language-model tokens per forward, peak allocated GPU memory and MFU of both. About 4-5 minutes on one
# H200, model construction included (one side alone took 117 s before).
# Writes bench7b.json, bench7b.md and log.txt to $OUT (default outputs/gpu). Run from the repository root.
# Extra arguments go to `timegrpo bench` (e.g. --vs-trl to add TRL, --beta 0 on an 80 GB GPU).
# Needs timegrpo's dependencies (`pip install -e .`) and a GPU with more than 90 GiB (the H200's 139 GiB here).
set -o pipefail
OUT=${OUT:-outputs/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
PY=${PY:-python3}
{
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  date -u +"start %Y-%m-%d %H:%M:%S UTC"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv 2>&1 || true
  "$PY" -c "import sys, torch, transformers, accelerate, peft, av, decord, qwen_vl_utils; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'peft', peft.__version__, 'av', av.__version__, 'decord', decord.__version__); print('gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)" \
    || exit 1
  df -h /tmp | tail -1
  "$PY" -m pip list 2>/dev/null | grep -iE "^(pyarrow|fsspec|regex|pandas|tokenizers|huggingface.hub|safetensors|numpy) " | tr -s ' ' | paste -sd';'
  time "$PY" -m timegrpo.cli bench --arch qwen2_5_vl_7b --frames 72 --size 280 --prompts 1 --num-generations 8 \
    --completion-len 200 --beta 0.04 --dtype bfloat16 --gradient-checkpointing --steps 3 --warmup 1 --threads 0 \
    --compare-prefix-off --sequential \
    --label qwen2_5_vl_7b-time-r1 --json-out "$OUT/bench7b.json" --markdown "$OUT/bench7b.md" "$@"
  rc=$?
  nvidia-smi --query-gpu=memory.used,memory.total --format=csv 2>&1 || true
  date -u +"end %Y-%m-%d %H:%M:%S UTC (rc $rc)"
  exit $rc
} 2>&1 | tee "$OUT/log.txt"
