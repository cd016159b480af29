#!/usr/bin/env bash
# TACoS test (4001 queries on 25 long cooking videos).
#
# usage: eval/tacos.sh MODEL ANNOTATIONS VIDEOS OUT [timegrpo eval flags...]
#   MODEL        model folder or Hub id, e.g. Qwen/Qwen2.5-VL-7B-Instruct
#   ANNOTATIONS  tacos_test_release.jsonl (line/lighthouse data/tacos/, seconds) or test.json (microsoft/2D-TAN
#                data/TACoS/, frame indices at 29.4 fps); the format is detected from the file
#   VIDEOS       folder of the TACoS videos ({vid}.avi or .mp4, e.g. s30-d52.avi)
#   OUT          output folder; a rerun resumes there
#   Any further flags go to `timegrpo eval` and override the protocol.
# environment:
#   NPROC=N         data parallel over N GPUs with accelerate launch (default 1)
#   DRY_RUN=1       print the command instead of running it
#
# Protocol: the standard TACoS test split and R1@{0.3,0.5,0.7} / mIoU (2D-TAN, lighthouse). Time-R1 did not
# evaluate TACoS: the model-side settings are Time-R1's (think prompt, 2 fps capped at 768 frames, so videos
# longer than 384 s are sampled more sparsely, total_pixels 3584*28*28, greedy, 1024 new tokens), a choice of
# ours. Duplicate annotations (several annotators, same sentence and window) are kept, as the benchmark
# does. See eval/README.md.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
[ $# -ge 4 ] || usage "$0"
MODEL=$1 ANNOTATIONS=$2 VIDEOS=$3 OUT=$4
shift 4
run_eval --config "$EVAL_DIR/tacos.yaml" --model "$MODEL" --annotations "$ANNOTATIONS" --videos "$VIDEOS" \
  --out "$OUT" "$@"
