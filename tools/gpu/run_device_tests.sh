#!/usr/bin/env bash
# Runs the packed test binaries (tools/gpu/package_for_device.sh) on a GPU machine and writes
# one JSON report per suite plus a summary to RESULTS_DIR, then a short `autotp train` on the
# GPU (configs/tiny-llama.yaml, 20 steps: the CLI path of the CUDA trainer) into
# RESULTS_DIR/train_cuda.log.
# Usage: tools/gpu/run_device_tests.sh PACK_DIR RESULTS_DIR [gtest filter]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pack=$(cd "$1" && pwd)
"$root/tools/gpu/unpack_binaries.sh" "$pack" || exit 1
results=$2
filter=${3:-*}
mkdir -p "$results"
export LD_LIBRARY_PATH="$pack/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
# NCCL may come with a Python wheel rather than the toolkit: add its folder when needed.
if ! ldconfig -p | grep -q libnccl.so.2 && [ ! -e /usr/local/cuda/lib64/libnccl.so.2 ]; then
  nccl=$(find /usr /opt -name 'libnccl.so.2' 2>/dev/null | head -1)
  if [ -n "$nccl" ]; then
    nccl_dir=$(dirname "$nccl")
    export LD_LIBRARY_PATH="$nccl_dir:$LD_LIBRARY_PATH"
  fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$results/device.txt"
status=0
for exe in "$pack"/bin/test_*; do
  name=$(basename "$exe")
  case $name in *_mpi) continue ;; esac  # multi-rank suites need mpirun: see tests/comm
  echo "== $name"
  "$exe" --gtest_filter="$filter" --gtest_output="json:$results/$name.json" >"$results/$name.log" 2>&1
  rc=$?
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests? from .* ran" "$results/$name.log" | head -40
  grep -E "^\[  FAILED  \]" "$results/$name.log" | head -40
  [ $rc -ne 0 ] && status=1
  # On a GPU machine a test that skipped for want of a GPU checked nothing: a failure (a
  # driver/runtime mismatch makes cuda_available() false, and every CUDA test would "pass").
  skipped=$(grep -c "^no CUDA device" "$results/$name.log")
  if [ "$skipped" -gt 0 ]; then
    echo "$name: $skipped test(s) skipped with 'no CUDA device' on a GPU machine: CUDA is not usable here"
    status=1
  fi
done
# The CLI on the GPU: must finish its 20 steps ("done: 20 steps ..., peak GPU memory ...").
echo "== autotp train configs/tiny-llama.yaml --device cuda --set train.steps=20"
if [ -x "$pack/bin/autotp" ]; then
  "$pack/bin/autotp" train "$root/configs/tiny-llama.yaml" --device cuda --set train.steps=20 \
    --out "$results/train_cuda" >"$results/train_cuda.log" 2>&1
  rc=$?
  grep -E "^(model|device|done):|^step 20/20|autotp: error" "$results/train_cuda.log"
  if [ $rc -ne 0 ] || ! grep -q "^done: 20 steps" "$results/train_cuda.log"; then
    echo "autotp train on the GPU failed (rc $rc, see $results/train_cuda.log)"
    status=1
  fi
else
  echo "no $pack/bin/autotp: skipped"
fi
exit $status
