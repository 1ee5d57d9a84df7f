#!/usr/bin/env bash
# Runs one clm rank per Slurm task with torchrun's environment, so that
#   srun --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 scripts/slurm-clm.sh -config experiments/skipless.toml
# trains data-parallel on 16 GPUs. The first node of the allocation hosts the
# rendezvous (MASTER_PORT, default 29500).
set -euo pipefail
export RANK=${SLURM_PROCID:?run under srun}
export WORLD_SIZE=${SLURM_NTASKS:?run under srun}
export LOCAL_RANK=${SLURM_LOCALID:-0}
export MASTER_ADDR=${MASTER_ADDR:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)}
export MASTER_PORT=${MASTER_PORT:-29500}
exec "$(dirname "$0")/../bin/clm" "$@"
