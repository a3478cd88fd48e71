#!/usr/bin/env bash
# Data-parallel pre-training on one machine: one process per GPU (NCCL), or N CPU processes (gloo).
#   infra/distributed/torchrun-single-node.sh --preset base --data runs/examples-512 --output-dir runs/base
#   NPROC=4 infra/distributed/torchrun-single-node.sh ...             # 4 of the GPUs
#   infra/distributed/torchrun-single-node.sh --preset large --train.fsdp true ...   # shard with FSDP2
#   NPROC=2 DEVICE=cpu infra/distributed/torchrun-single-node.sh --preset tiny ... # gloo on the CPU
# Every argument goes to `electra pretrain`. train.batch_size is the global batch: it must divide
# by NPROC x train.grad_accum. Resume with --resume under any NPROC (the data position is global).
set -euo pipefail
device="${DEVICE:-auto}"
if [[ -z "${NPROC:-}" ]]; then
  if [[ "$device" != cpu ]] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    NPROC="$(nvidia-smi -L | wc -l)"
  else
    NPROC=1
  fi
fi
if [[ "$device" == cpu ]]; then
  # gloo ranks share the cores: split them, and keep freed activations in the heap (fewer page faults)
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))}"
  export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-17179869184}" MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-17179869184}"
  export CUDA_VISIBLE_DEVICES=""  # gloo, even on a GPU machine
  set -- --train.device cpu "$@"
fi
exec torchrun --standalone --nproc-per-node="$NPROC" -m electra_cli pretrain "$@"
