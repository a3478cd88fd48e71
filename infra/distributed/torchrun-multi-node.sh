#!/usr/bin/env bash
# Data-parallel pre-training across machines with torchrun's c10d rendezvous. Run the same
# command on every node (any order; ranks are assigned at the rendezvous):
#   RDZV_ENDPOINT=node0.example:29400 NNODES=4 JOB_ID=base-512 \
#     infra/distributed/torchrun-multi-node.sh --preset base --data /shared/examples-512 --output-dir /shared/runs/base
# Every argument goes to `electra pretrain`; train.batch_size is the global batch (it must divide
# by NNODES x NPROC x train.grad_accum). --output-dir must be on storage every node sees: rank 0
# writes checkpoints and metrics there; every rank reads the examples and, on resume, the checkpoint.
#
# Restarts: `--resume auto` is added (unless you pass --resume yourself), so a node or pod that
# the scheduler restarts (Kubernetes restartPolicy, Slurm --requeue), or a worker group that
# torchrun restarts (MAX_RESTARTS), continues from the latest checkpoint.
set -euo pipefail
: "${RDZV_ENDPOINT:?host:port of the rendezvous (any node that can be reached, e.g. node 0)}"
: "${NNODES:?number of nodes}"
NPROC="${NPROC:-$(nvidia-smi -L 2>/dev/null | wc -l)}"
[[ "$NPROC" -gt 0 ]] || { echo "no GPU found; set NPROC" >&2; exit 2; }

args=("$@")
[[ " ${args[*]} " == *" --resume"* ]] || args+=(--resume auto)

# NCCL: fail a hung collective instead of waiting forever; choose the fabric with
# NCCL_SOCKET_IFNAME / NCCL_IB_HCA where the defaults pick the wrong interface.
export TORCH_NCCL_ASYNC_ERROR_HANDLING="${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}"
exec torchrun --nnodes="$NNODES" --nproc-per-node="$NPROC" --rdzv-backend=c10d \
  --rdzv-endpoint="$RDZV_ENDPOINT" --rdzv-id="${JOB_ID:-electra}" --max-restarts="${MAX_RESTARTS:-0}" \
  -m electra_cli pretrain "${args[@]}"
