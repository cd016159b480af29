# Shared by the eval/*.sh benchmark scripts (sourced, not run on its own).

# Print the calling script's header comment (its usage and protocol) and exit 2.
usage() {
  sed -n '2,/^set -euo pipefail/p' "$1" | sed '$d; s/^# \{0,1\}//'
  exit 2
}

# Time-R1's evaluation settings (xiaomi-research/time-r1 @ 8f9c9df5d10d):
#   scripts/test.sh                          --batch_size 4, --max_new_tokens 1024, --use_r1_thinking_prompt
#   evaluate.py                              --total_pixels 3584*28*28 (= 2809856)
#   src/vllm_inference/data/__init__.py      min_pixels 16*28*28 (= 12544); fps and max_frames not set, so
#                                            qwen-vl-utils' defaults apply: FPS 2.0, FPS_MAX_FRAMES 768; the user
#                                            text is the "r1" prompt with the sentence as written (stripped only)
#   src/vllm_inference/data/config.py        the "r1" grounding prompt = our `think` template
#   src/vllm_inference/vllm_infer.py         temperature 0 (greedy), top_p 1, repetition_penalty 1
# --on-bad clip is ours: Time-R1 scores against the windows as written (some end past the video); our reader
# needs a policy for them, and clip clamps them to the duration (counted in metrics.json, `annotations`).
TIME_R1_PROTOCOL=(
  --template think --query-as-is
  --fps 2 --max-frames 768 --min-pixels 12544 --total-pixels 2809856
  --max-new-tokens 1024 --batch-size 4
  --on-bad clip
)

# Run `timegrpo eval "$@"`: on NPROC GPUs with accelerate launch when NPROC > 1; DRY_RUN=1 prints it instead.
run_eval() {
  local cmd
  if [ "${NPROC:-1}" -gt 1 ]; then
    cmd=(accelerate launch --multi_gpu --num_processes "$NPROC" -m timegrpo.cli eval)
  else
    cmd=(timegrpo eval)
  fi
  if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "${cmd[@]}" "$@"
    echo
  else
    exec "${cmd[@]}" "$@"
  fi
}
