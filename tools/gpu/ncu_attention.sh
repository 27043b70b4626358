#!/usr/bin/env bash
# Hardware counters of the tensor-core attention kernels (Nsight Compute), for the attention
# work of issue 8: one launch of each kernel `autotp bench-ops` runs at CONFIG's shapes (the
# forward, dq and dk/dv kernels, and the stored-score backward's delta, dk/dv and dq kernels),
# with throughput, occupancy, shared-memory and warp-stall sections. The clocks are left alone
# (--clock-control none), as the device notes ask. Where ncu is missing or cannot read the
# counters (a gVisor machine), it says so and exits 0: the counters are a diagnosis, not a test.
# Usage: tools/gpu/ncu_attention.sh PACK_DIR RESULTS_DIR [CONFIG]
#   PACK_DIR from tools/gpu/package_for_device.sh; CONFIG defaults to configs/llama-3.2-1b.yaml.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pack=$(cd "$1" && pwd)
"$root/tools/gpu/unpack_binaries.sh" "$pack" || exit 1
results=$2
config=${3:-$root/configs/llama-3.2-1b.yaml}
mkdir -p "$results"
export LD_LIBRARY_PATH="$pack/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
if ! command -v ncu >/dev/null; then
  echo "== no ncu on PATH: no hardware counters here"
  exit 0
fi
report="$results/ncu_attention.txt"
# With --iters 1 --warmup 0 bench-ops launches these 19 kernels in order: the attention op (the
# forward, dq and dk/dv kernels), then each variant row (the default, 128-row blocks, K/V in
# registers, blocks by head: three kernels each; the stored-score backward: forward, delta,
# dk/dv storing dS, dq from dS). --launch-count 20 profiles all of them once.
timeout 300 ncu --clock-control none \
  --kernel-name regex:'tc_attention_(forward|dq|dkdv|delta|dq_from_scores)_kernel' \
  --launch-count 20 \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
  --section SchedulerStats --section MemoryWorkloadAnalysis_Tables --print-details all \
  "$pack/bin/autotp" bench-ops "$config" --device cuda --dtype bf16 --iters 1 --warmup 0 \
  >"$report" 2>&1
rc=$?
if grep -q -E 'LibraryNotLoaded|ERR_NVGPUCTRPERM|Failed to initialize the profiler' "$report"; then
  echo "== ncu could not read the hardware counters here:"
  grep -E 'LibraryNotLoaded|ERR_NVGPUCTRPERM|Failed to initialize' "$report" | head -n 3
  exit 0
fi
# Per kernel: its name, duration, throughputs, occupancy, registers and the warp stalls.
grep -E 'tc_attention_[a-z_]+_kernel|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per Thread|Warp Cycles Per Issued|Issue Slots Busy|Stall|Bank Conflicts' \
  "$report" | sed -E 's/ +/ /g' | head -n 150
exit $rc
