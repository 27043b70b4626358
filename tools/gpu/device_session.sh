#!/usr/bin/env bash
# One device call's worth of GPU checks, every stage under its own timeout so that a hang
# cannot spend the session's device time: the GPU tests (the *_CUDA ones only), a 20-step
# `autotp train --device cuda`, TP = 2 as two ranks on the one GPU against the one-process run
# (where an mpirun is found: MPIRUN or PATH), then `autotp bench` and `autotp bench-ops` on
# CONFIG (default the Llama-3.2-1B shape; profile_bench.sh). Results are packed into
# OUT_DIR/results.tar.gz with the summary lines in OUT_DIR/summary.txt (two files: within what
# a device call returns).
# Usage, on the GPU machine from the repository root, after tools/gpu/package_for_device.sh here:
#   tools/gpu/device_session.sh .dev/gpu "$OUT" [CONFIG]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pack=$1
out=$2
config=${3:-$root/configs/llama-3.2-1b.yaml}
work=$(mktemp -d)
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
stage() {  # stage NAME SECONDS COMMAND...: runs it, appends its tail and exit status
  local name=$1 seconds=$2
  shift 2
  local start=$SECONDS
  echo "== $name (limit ${seconds}s)" | tee -a "$summary"
  timeout "$seconds" "$@" >"$work/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$work/$name.log" >>"$summary"
  echo "== $name: exit $rc after $((SECONDS - start))s$([ $rc -eq 124 ] && echo ' (timed out)')" |
    tee -a "$summary"
}
stage device_tests 300 "$root/tools/gpu/run_device_tests.sh" "$pack" "$work/tests" '*CUDA*'
# TP = 2 as two ranks sharing the one GPU (the MPI path with host staging): every logged loss
# and gradient norm of 20 steps must equal the one-process GPU run within 1e-5 relative.
mpirun_bin=${MPIRUN:-$(command -v mpirun || true)}
if [ -n "$mpirun_bin" ]; then
  stage tp2_on_one_gpu 240 cmake -DAUTOTP="$pack/bin/autotp" \
    -DCONFIG="$root/configs/tiny-llama.yaml" -DTP=2 -DWORK_DIR="$work/tp2_on_one_gpu" \
    "-DMPI_COMMAND=$mpirun_bin;--allow-run-as-root;--oversubscribe;-np;2;$pack/bin/autotp" \
    -P "$root/tests/check_tp_matches_tp1.cmake"
else
  echo "== no mpirun on this machine (set MPIRUN): the TP=2-on-one-GPU check is skipped" |
    tee -a "$summary"
fi
stage speed 240 "$root/tools/gpu/profile_bench.sh" "$pack" "$work/speed" "$config"
tar -czf "$out/results.tar.gz" -C "$work" .
rm -rf "$work"
