#!/usr/bin/env bash
# Speed figures on a GPU machine in one call, for issue-8 work: `autotp bench` of CONFIG in
# bf16 (JSON) with the GPU time of every kernel over two more steps (`--kernels 2`, CUPTI),
# `autotp bench-ops` (each op's TFLOP/s or GB/s against the device's peak), then, where torch
# and transformers import, the PyTorch side-by-side (tools/bench/torch_bench.py), the bench with
# the GEMM autotune (kernels.gemm_autotune), and last the bench with each attention kernel
# variant (kernels.* in the config: identical results, so the fastest can become the default);
# then tools/bench/speed_targets.py ranks them and checks the fastest against issue 8's targets.
# Usage: tools/gpu/profile_bench.sh PACK_DIR RESULTS_DIR [CONFIG] [more autotp bench args]
#   PACK_DIR from tools/gpu/package_for_device.sh; CONFIG defaults to configs/llama-3.2-1b.yaml.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pack=$(cd "$1" && pwd)
"$root/tools/gpu/unpack_binaries.sh" "$pack" || exit 1
results=$2
config=${3:-$root/configs/llama-3.2-1b.yaml}
shift $(($# < 3 ? $# : 3))
mkdir -p "$results"
export LD_LIBRARY_PATH="$pack/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$results/device.txt"
status=0

echo "== autotp bench $(basename "$config") --dtype bf16 $*"
if ! "$pack/bin/autotp" bench "$config" --device cuda --dtype bf16 --steps 4 --warmup 2 \
  --kernels 2 --json "$results/autotp_bf16.json" "$@" >"$results/autotp_bf16.log" 2>&1; then
  status=1  # the figures still matter without the kernel table: once more without the profiler
  tail -n 5 "$results/autotp_bf16.log"
  "$pack/bin/autotp" bench "$config" --device cuda --dtype bf16 --steps 4 --warmup 2 \
    --json "$results/autotp_bf16.json" "$@" >"$results/autotp_bf16.log" 2>&1
fi
grep -v '^{' "$results/autotp_bf16.log" | head -n 60

echo "== autotp bench-ops $(basename "$config") (bf16): each kernel against the device's peak"
"$pack/bin/autotp" bench-ops "$config" --device cuda --dtype bf16 --iters 5 --warmup 2 \
  --json "$results/bench_ops_bf16.json" "$@" >"$results/bench_ops_bf16.log" 2>&1 || status=1
grep -v '^{' "$results/bench_ops_bf16.log" | tail -n 12

if python3 -c "import torch, transformers" 2>/dev/null; then
  echo "== PyTorch side by side"
  ours=()  # the side-by-side table needs autotp's figures; without them PyTorch runs alone
  [ -s "$results/autotp_bf16.json" ] && ours=(--autotp-json "$results/autotp_bf16.json")
  python3 "$root/tools/bench/torch_bench.py" "$config" --dtype bf16 --steps 4 --warmup 2 \
    "${ours[@]}" --out "$results/torch_bf16.json" >"$results/torch_bf16.log" 2>&1 || status=1
  tail -n 12 "$results/torch_bf16.log"
else
  echo "== no torch + transformers here: the PyTorch comparison is skipped"
fi

echo "== autotp bench with kernels.gemm_autotune (each GEMM shape's cuBLASLt candidates timed)"
# Against the first bench above: the step time it gains, and what the search found (shapes
# whose fastest algorithm is not the heuristic's first pick). Three warm-up steps: a GEMM
# that accumulates is timed once per call, so a search may span more than one step.
"$pack/bin/autotp" bench "$config" --device cuda --dtype bf16 --steps 4 --warmup 3 \
  --set kernels.gemm_autotune=true --json "$results/autotp_bf16_gemm_autotune.json" \
  >"$results/autotp_bf16_gemm_autotune.log" 2>&1 || status=1
echo "gemm_autotune: $(grep -E '^(step|throughput|peak) ' "$results/autotp_bf16_gemm_autotune.log" |
  tr -s ' ' | paste -sd ';' -)"
grep -E '^gemm autotune' "$results/autotp_bf16_gemm_autotune.log"

echo "== autotp bench with each attention kernel variant (step ms, tokens/s)"
# Fields: row tiles per warp, dk/dv K,V in registers, longest first, dq from stored dS.
# The stored-score backward first: the newest and the one expected to matter most.
for variant in "1 false true true" "1 false false false" "2 false true false" \
  "1 true true false" "2 false true true"; do
  set -- $variant
  name="rows$((64 * $1))_kvregs_$2_longest_first_$3_stored_scores_$4"
  profile=()  # the stored-score backward's own kernels (delta, dk/dv storing dS, dq from dS)
  [ "$4" = true ] && [ "$1" = 1 ] && profile=(--kernels 2)
  "$pack/bin/autotp" bench "$config" --device cuda --dtype bf16 --steps 4 --warmup 2 "${profile[@]}" \
    --set "kernels.attention_row_tiles=$1" --set "kernels.attention_dkdv_kv_in_registers=$2" \
    --set "kernels.attention_longest_first=$3" \
    --set "kernels.attention_dq_from_stored_scores=$4" \
    --json "$results/autotp_bf16_$name.json" >"$results/autotp_bf16_$name.log" 2>&1 || status=1
  echo "$name: $(grep -E '^(step|throughput|peak) ' "$results/autotp_bf16_$name.log" | tr -s ' ' |
    paste -sd ';' -)"
  [ ${#profile[@]} -gt 0 ] && grep -E 'attention' "$results/autotp_bf16_$name.log" | head -n 6
done

echo "== issue-8 targets: the fastest configuration above against PyTorch (speed_targets.py)"
python3 "$root/tools/bench/speed_targets.py" "$results" --json "$results/speed_targets.json" ||
  status=1
exit $status
