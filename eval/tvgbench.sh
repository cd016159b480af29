#!/usr/bin/env bash
# TVGBench (800 queries from Charades, HiREST, TACoS, ActivityNet and Ego4D-NLQ) under Time-R1's protocol.
#
# usage: eval/tvgbench.sh MODEL ANNOTATIONS VIDEOS OUT [timegrpo eval flags...]
#   MODEL        model folder or Hub id, e.g. Qwen/Qwen2.5-VL-7B-Instruct
#   ANNOTATIONS  tvgbench.json (xiaomi-research/time-r1 dataset/timer1/annotations/tvgbench.json)
#   VIDEOS       folder of its videos (dataset/timer1/videos/tvgbench_data: looked up by file name)
#   OUT          output folder; a rerun resumes there
#   Any further flags go to `timegrpo eval` and override the protocol.
# environment:
#   NPROC=N         data parallel over N GPUs with accelerate launch (default 1)
#   DRY_RUN=1       print the command instead of running it
#
# Protocol: Time-R1 (xiaomi-research/time-r1 evaluate.py, dataset "tvgbench"), think prompt, 2 fps, at most
# 768 frames, total_pixels 3584*28*28, min_pixels 16*28*28, greedy, 1024 new tokens; the 252 items with
# start/end are cropped to that clip (their answers are clip-relative). See eval/tvgbench.yaml and eval/README.md.
# Departure: the 11 zero-length answers (egonlq) cannot be clipped and are left out, counted in metrics.json
# (Time-R1 scores them IoU 0). Time-R1 7B reports R1@0.3/0.5/0.7 = 41.8/29.4/16.4 (SPEC section 1).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
[ $# -ge 4 ] || usage "$0"
MODEL=$1 ANNOTATIONS=$2 VIDEOS=$3 OUT=$4
shift 4
run_eval --config "$EVAL_DIR/tvgbench.yaml" --model "$MODEL" --annotations "$ANNOTATIONS" --videos "$VIDEOS" \
  --out "$OUT" "$@"
