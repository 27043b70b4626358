#!/usr/bin/env bash
# On a GPU machine: the NCCL path with one rank per GPU (as many ranks as GPUs), then the
# shared-GPU path with two ranks per GPU (MPI, CUDA tensors staged through host memory).
# Usage: run_on_device.sh PATH/TO/nccl_device_check [mpirun]
set -uo pipefail
bin=$1
mpirun_bin=${2:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
gpus=$(nvidia-smi -L | wc -l)
status=0
echo "== $gpus rank(s), one per GPU (NCCL)"
timeout 45 "$mpirun_bin" -n "$gpus" --oversubscribe "$bin" || status=1
echo "== $((2 * gpus)) ranks, two per GPU (MPI, host staging)"
timeout 45 "$mpirun_bin" -n $((2 * gpus)) --oversubscribe "$bin" || status=1
exit $status
