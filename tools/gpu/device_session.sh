#!/usr/bin/env bash
# One device call's worth of GPU checks, every stage under its own timeout so that a hang
# cannot spend the session's device time. The correctness stages share the GPU and run at the
# same time: the GPU tests (the CUDA ones only), a 20-step `autotp train --device cuda`, the
# communicators' device check (NCCL at one rank per GPU, then two ranks on the one GPU through
# MPI), and two multi-rank training runs on the one GPU checked against the one-process GPU run
# (tests/check_tp_matches_tp1.cmake: TP = 2, and DP = 2 under ZeRO-2; and DP = 2 ZeRO-2 in bf16,
# tools/gpu/check_bf16_zero2_on_one_gpu.sh). Then, alone on the GPU,
# `autotp bench`, `autotp bench-ops` and the PyTorch side-by-side on CONFIG (default the
# Llama-3.2-1B shape; profile_bench.sh; SPEED_LIMIT seconds, default 360: the bench, bench-ops,
# PyTorch, then five benches of the attention kernel variants). Results are packed
# into OUT_DIR/results.tar.gz with the stages' tails in OUT_DIR/summary.txt, and the speed
# stage's output also goes to OUT_DIR/speed_live.log as it runs (three files: within what a
# device call returns, and what is there survives a call cut short).
# Usage, on the GPU machine from the repository root, after tools/gpu/package_for_device.sh
# here (which also packs Open MPI into PACK/openmpi for machines without one):
#   tools/gpu/device_session.sh .dev/gpu "$OUT" [CONFIG]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pack=$(cd "$1" && pwd)
"$root/tools/gpu/unpack_binaries.sh" "$pack" || exit 1
out=$2
config=${3:-$root/configs/llama-3.2-1b.yaml}
work=$(mktemp -d)
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
# The packed Open MPI is the one the binaries were linked against: it goes first on PATH.
[ -f "$pack/openmpi/env.sh" ] && source "$pack/openmpi/env.sh"
export LD_LIBRARY_PATH="$pack/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
stage() {  # stage NAME SECONDS COMMAND...: runs it; its tail and exit status go to NAME.summary
  local name=$1 seconds=$2
  shift 2
  local start=$SECONDS
  {
    echo "== $name (limit ${seconds}s)"
    if [ -n "${LIVE_LOG:-}" ]; then  # also into OUT as it runs: kept if the call is cut short
      timeout "$seconds" "$@" 2>&1 | tee "$work/$name.log" >"$LIVE_LOG"
      local rc=${PIPESTATUS[0]}
    else
      timeout "$seconds" "$@" >"$work/$name.log" 2>&1
      local rc=$?
    fi
    tail -n "${TAIL_LINES:-40}" "$work/$name.log"
    echo "== $name: exit $rc after $((SECONDS - start))s$([ $rc -eq 124 ] && echo ' (timed out)')"
  } >"$work/$name.summary"
}
tiny=$root/configs/tiny-llama.yaml
matches_one_process() {  # NAME TP [PARALLEL_SETS]: the run under mpirun -np 2 on the one GPU
  stage "$1" 170 cmake -DAUTOTP="$pack/bin/autotp" -DCONFIG="$tiny" -DTP="$2" \
    -DWORK_DIR="$work/$1" "-DPARALLEL_SETS=${3:-}" \
    "-DMPI_COMMAND=mpirun;--oversubscribe;-np;2;$pack/bin/autotp" \
    -P "$root/tests/check_tp_matches_tp1.cmake"
}
stages=(device_tests)
stage device_tests 200 "$root/tools/gpu/run_device_tests.sh" "$pack" "$work/tests" \
  '*CUDA*:CudaCachingAllocator*:CudaDevice*' &
if command -v mpirun >/dev/null; then
  stages+=(nccl_device_check tp2_on_one_gpu dp2_zero2_on_one_gpu bf16_dp2_zero2_on_one_gpu)
  stage nccl_device_check 100 "$root/tests/comm/nccl_device_check/run_on_device.sh" \
    "$pack/bin/nccl_device_check" &
  matches_one_process tp2_on_one_gpu 2 &
  matches_one_process dp2_zero2_on_one_gpu 1 \
    "--set;data_parallel_size=2;--set;train_micro_batch_size_per_gpu=4;--set;zero_optimization.stage=2" &
  stage bf16_dp2_zero2_on_one_gpu 170 "$root/tools/gpu/check_bf16_zero2_on_one_gpu.sh" \
    "$pack/bin/autotp" "$tiny" "$work/bf16_dp2_zero2_on_one_gpu" &
else
  echo "== no mpirun (neither on PATH nor packed): the multi-rank GPU checks are skipped" >>"$summary"
fi
wait
for name in "${stages[@]}"; do cat "$work/$name.summary" >>"$summary"; done
tar -czf "$out/results.tar.gz" -C "$work" .  # again below; this one survives a cut-short call
TAIL_LINES=120 LIVE_LOG="$out/speed_live.log" stage speed "${SPEED_LIMIT:-360}" \
  "$root/tools/gpu/profile_bench.sh" "$pack" "$work/speed" "$config"
cat "$work/speed.summary" >>"$summary"
tar -czf "$out/results.tar.gz" -C "$work" .
rm -rf "$work"
