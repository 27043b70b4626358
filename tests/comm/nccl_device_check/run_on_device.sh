#!/usr/bin/env bash
# On a GPU machine: the NCCL path with one rank per GPU (as many ranks as GPUs), then the
# shared-GPU path with two ranks per GPU (MPI staged through host memory).
set -uo pipefail
bin=build-nccl-check/nccl_device_check
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
gpus=$(nvidia-smi -L | wc -l)
status=0
echo "== $gpus rank(s), one per GPU (NCCL)"
timeout 120 mpirun -n "$gpus" --oversubscribe "$bin" || status=1
echo "== $((2 * gpus)) ranks, two per GPU (MPI, host staging)"
timeout 120 mpirun -n $((2 * gpus)) --oversubscribe "$bin" || status=1
exit $status
