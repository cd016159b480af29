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
