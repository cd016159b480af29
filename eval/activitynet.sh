#!/usr/bin/env bash
# ActivityNet Captions (Time-R1's test split: val_2, 17031 queries, 4885 videos) under Time-R1's protocol.
#
# usage: eval/activitynet.sh MODEL ANNOTATIONS VIDEOS OUT [timegrpo eval flags...]
#   MODEL        model folder or Hub id, e.g. Qwen/Qwen2.5-VL-7B-Instruct
#   ANNOTATIONS  val_2.json ({vid: {duration, timestamps, sentences}}; the same file is 2D-TAN's
#                data/ActivityNet/test.json, the split Time-R1 loads as "test")
#   VIDEOS       folder of the ActivityNet videos (v_{id}.mp4, .mkv or .webm)
#   OUT          output folder; a rerun resumes there
#   Any further flags go to `timegrpo eval` and override the protocol.
# environment:
#   NPROC=N         data parallel over N GPUs with accelerate launch (default 1)
#   DRY_RUN=1       print the command instead of running it
#
# Protocol: Time-R1 (xiaomi-research/time-r1 evaluate.py, dataset "activitynet", split "test" =
# annotations/sentence_temporal_grounding/test.json), think prompt, 2 fps, at most 768 frames, total_pixels
# 3584*28*28, min_pixels 16*28*28, greedy, 1024 new tokens; see eval/activitynet.yaml and eval/README.md.
# Time-R1 7B reports R1@0.3/0.5/0.7 = 58.6/39.0/21.4 zero-shot (SPEC section 1).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
[ $# -ge 4 ] || usage "$0"
MODEL=$1 ANNOTATIONS=$2 VIDEOS=$3 OUT=$4
shift 4
run_eval --config "$EVAL_DIR/activitynet.yaml" --model "$MODEL" --annotations "$ANNOTATIONS" --videos "$VIDEOS" \
  --out "$OUT" "$@"
