#!/usr/bin/env bash
# Configures a build directory: configure.sh BUILD_DIR [extra cmake args...].
# Puts the CUDA toolkit on PATH when it is installed in the usual place, so nvcc is found.
set -euo pipefail
build_dir=$1
shift
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
cmake -S "$root" -B "$build_dir" -G Ninja "$@" >"$build_dir.configure.log" 2>&1 || {
  cat "$build_dir.configure.log"
  exit 1
}
grep -E "autotp:" "$build_dir.configure.log" || true
