#!/usr/bin/env bash
# Multi-node training under SLURM: one `accelerate launch` per node, each with its own --machine_rank.
#
#   sbatch --nodes 2 launch/slurm.sh recipes/time_r1_qwen2_5_vl_7b.yaml [--train.beta 0 ...]
#   bash launch/slurm.sh --dry-run recipes/X.yaml      # print the per-node command instead of running it
#
# Submit from the repository root (the job runs in the submission directory). Edit the #SBATCH lines for your
# cluster. Environment knobs (all optional): ACCELERATE_CONFIG (default launch/multi_node.yaml; its
# num_machines, num_processes, machine_rank and main_process_ip are overridden here), GPUS_PER_NODE (default
# 8), MASTER_ADDR (default: the first node of the job), MASTER_PORT (default 29500).
#SBATCH --job-name=timegrpo
#SBATCH --nodes=2                    # EDIT: number of nodes
#SBATCH --ntasks-per-node=1          # one launcher per node; it starts one process per GPU
#SBATCH --gpus-per-node=8            # EDIT: GPUs per node (keep GPUS_PER_NODE in line)
#SBATCH --cpus-per-task=64           # EDIT: CPU cores per node (video decoding uses them)
#SBATCH --time=48:00:00              # EDIT: wall-clock limit
#SBATCH --output=%x-%j.out
#SBATCH --exclusive

set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
  shift
fi
RECIPE=${1:?usage: sbatch launch/slurm.sh [--dry-run] RECIPE.yaml [--section.key value ...]}
shift

ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-launch/multi_node.yaml}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
NNODES=${SLURM_NNODES:-1}
if [[ -z "${MASTER_ADDR:-}" ]]; then
  MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST:?not inside a SLURM job: set MASTER_ADDR}" | head -n 1)
fi
MASTER_PORT=${MASTER_PORT:-29500}

BEFORE=(accelerate launch
  --config_file "$ACCELERATE_CONFIG"
  --num_machines "$NNODES"
  --num_processes "$((NNODES * GPUS_PER_NODE))"
  --main_process_ip "$MASTER_ADDR"
  --main_process_port "$MASTER_PORT")
AFTER=(-m timegrpo.train --config "$RECIPE" "$@")
# $SLURM_NODEID stays unexpanded here: srun's shell on each node expands it to 0..NNODES-1.
CMD="$(printf '%q ' "${BEFORE[@]}")--machine_rank \$SLURM_NODEID $(printf '%q ' "${AFTER[@]}")"

if [[ "$DRY_RUN" == 1 ]]; then
  echo "$CMD"
  exit 0
fi
echo "[timegrpo] $NNODES node(s) x $GPUS_PER_NODE GPU(s), main process $MASTER_ADDR:$MASTER_PORT"
srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c "$CMD"
