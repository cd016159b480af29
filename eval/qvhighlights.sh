#!/usr/bin/env bash
# QVHighlights val (1550 queries on 150 s clips), scored with the official Moment-DETR metrics.
#
# usage: eval/qvhighlights.sh MODEL ANNOTATIONS VIDEOS OUT [timegrpo eval flags...]
#   MODEL        model folder or Hub id, e.g. Qwen/Qwen2.5-VL-7B-Instruct
#   ANNOTATIONS  highlight_val_release.jsonl (jayleicn/moment_detr data/), or highlight_test_with_gt.jsonl;
#                highlight_test_release.jsonl has no ground truth: predictions.jsonl is then the submission file
#   VIDEOS       folder of the QVHighlights clips ({vid}.mp4, e.g. NUsG9BgSes0_210.0_360.0.mp4)
#   OUT          output folder; a rerun resumes there
#   Any further flags go to `timegrpo eval` and override the protocol.
# environment:
#   NPROC=N         data parallel over N GPUs with accelerate launch (default 1)
#   DRY_RUN=1       print the command instead of running it
#
# Protocol: metrics.json holds the official moment-retrieval keys (MR-full-R1@0.5, MR-full-mAP, MR-short-mAP,
# ...: jayleicn/moment_detr standalone_eval/eval.py, reproduced by timegrpo.metrics.qvhighlights) from the one
# predicted window per query; the highlight (HL-...) keys need saliency scores, which a generative model does
# not output. Time-R1 did not evaluate QVHighlights: the model-side settings below are Time-R1's (think
# prompt, 2 fps, total_pixels 3584*28*28, greedy, 1024 new tokens), a choice of ours. See eval/README.md.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
[ $# -ge 4 ] || usage "$0"
MODEL=$1 ANNOTATIONS=$2 VIDEOS=$3 OUT=$4
shift 4
run_eval --config "$EVAL_DIR/qvhighlights.yaml" --model "$MODEL" --annotations "$ANNOTATIONS" --videos "$VIDEOS" \
  --out "$OUT" "$@"
