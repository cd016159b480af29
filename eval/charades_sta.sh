#!/usr/bin/env bash
# Charades-STA test (3720 queries, 1334 videos) under Time-R1's evaluation protocol.
#
# usage: eval/charades_sta.sh MODEL ANNOTATIONS VIDEOS OUT [timegrpo eval flags...]
#   MODEL        model folder or Hub id, e.g. Qwen/Qwen2.5-VL-7B-Instruct
#   ANNOTATIONS  charades_sta_test.txt (Gao et al. release, as in microsoft/2D-TAN data/Charades-STA); the
#                durations come from Charades_v1_test.csv found beside it, or from DURATIONS
#   VIDEOS       folder of the Charades videos ({id}.mp4)
#   OUT          output folder; a rerun resumes there
#   Any further flags go to `timegrpo eval` and override the protocol (e.g. --template no_think, --limit 100).
# environment:
#   DURATIONS=FILE  Charades_v1_test.csv when it is not beside ANNOTATIONS
#   NPROC=N         data parallel over N GPUs with accelerate launch (default 1)
#   DRY_RUN=1       print the command instead of running it
#
# Protocol: Time-R1 (xiaomi-research/time-r1 scripts/test.sh + evaluate.py, dataset "charades", split "test":
# Charades_sta_test.txt with Charades_v1_test.csv durations), think prompt, 2 fps, at most 768 frames,
# total_pixels 3584*28*28, min_pixels 16*28*28, greedy, 1024 new tokens; see eval/charades_sta.yaml and eval/README.md.
# Time-R1 7B reports R1@0.3/0.5/0.7 = 78.1/60.8/35.3 zero-shot (SPEC section 1).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
[ $# -ge 4 ] || usage "$0"
MODEL=$1 ANNOTATIONS=$2 VIDEOS=$3 OUT=$4
shift 4
extra=()
[ -n "${DURATIONS:-}" ] && extra+=(--durations "$DURATIONS")
run_eval --config "$EVAL_DIR/charades_sta.yaml" --model "$MODEL" --annotations "$ANNOTATIONS" --videos "$VIDEOS" \
  --out "$OUT" ${extra[@]+"${extra[@]}"} "$@"
