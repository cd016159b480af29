#!/usr/bin/env bash
# QVHighlights-TimeLens (TimeLens-Bench's re-annotated QVHighlights), scored as TimeLens scores it.
#
# usage: eval/timelens_qvhighlights.sh MODEL ANNOTATIONS VIDEOS OUT [timegrpo eval flags...]
#   MODEL        model folder or Hub id, e.g. Qwen/Qwen2.5-VL-7B-Instruct
#   ANNOTATIONS  qvhighlights-timelens.json (Hugging Face dataset TencentARC/TimeLens-Bench)
#   VIDEOS       its video folder, TimeLens-Bench/videos/qvhighlights ({vid}.mp4, extracted from video_shards/)
#   OUT          output folder; a rerun resumes there
#   Any further flags go to `timegrpo eval` and override the protocol (e.g. --template think, --limit 100; for
#   a Qwen3-VL model --video.min_pixels 65536 --video.total_pixels 14680064).
# environment:
#   NPROC=N         data parallel over N GPUs with accelerate launch (default 1)
#   DRY_RUN=1       print the commands instead of running them
#
# Protocol: TimeLens (TencentARC/TimeLens scripts/eval_timelens_bench.sh, evaluation/eval_dataloader.py and
# compute_metrics.py): 2 fps, min_tokens 64, total_tokens 14336, greedy, 512 new tokens; metrics_timelens.json
# and metrics_timelens.md hold R1@0.3/0.5/0.7 and mIoU as `timegrpo score --protocol timelens` computes them
# (the FIRST time pair of the completion, rounded to whole seconds; start >= end scores 0; R1 counts IoU >= m);
# metrics.json is the SPEC protocol's. Our no_think prompt replaces TimeLens's; see eval/README.md.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
[ $# -ge 4 ] || usage "$0"
MODEL=$1 ANNOTATIONS=$2 VIDEOS=$3 OUT=$4
shift 4
run_eval_and_score timelens "$ANNOTATIONS" "$OUT" --config "$EVAL_DIR/timelens_qvhighlights.yaml" --model "$MODEL" \
  --annotations "$ANNOTATIONS" --videos "$VIDEOS" --out "$OUT" "$@"
