# Shared by the eval/*.sh benchmark scripts (sourced, not run on its own).

# Print the calling script's header comment (its usage and protocol) and exit 2.
usage() {
  sed -n '2,/^set -euo pipefail/p' "$1" | sed '$d; s/^# \{0,1\}//'
  exit 2
}

# The folder of these scripts: each benchmark's protocol is eval/<benchmark>.yaml, given as --config.
EVAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

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

# Run `timegrpo eval "$@"` (as run_eval), then score its predictions under another protocol:
#   run_eval_and_score PROTOCOL ANNOTATIONS OUT [timegrpo eval arguments...]
# writes OUT/metrics_PROTOCOL.json and OUT/metrics_PROTOCOL.md beside the eval's own metrics.json (the queries
# predicted are scored: --missing skip; metrics_PROTOCOL.json counts the others as n_missing_prediction).
# DRY_RUN=1 prints the two commands, one a line.
run_eval_and_score() {
  local protocol=$1 annotations=$2 out=$3
  shift 3
  local score=(timegrpo score --predictions "$out/predictions.jsonl" --annotations "$annotations"
               --protocol "$protocol" --from-completion --missing skip --out-md "$out/metrics_$protocol.md" --json)
  if [ -n "${DRY_RUN:-}" ]; then
    run_eval "$@"
    printf '%q ' "${score[@]}"
    echo
  else
    (run_eval "$@")
    "${score[@]}" > "$out/metrics_$protocol.json"
  fi
}
