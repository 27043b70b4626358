#!/usr/bin/env bash
# Builds autotp with CUDA (Release) in BUILD_DIR (default build-gpu/) on this machine and packs what a bare GPU
# machine needs to run the test binaries into .dev/gpu/: bin/ (the test executables and the
# autotp command) and lib/ (the non-system shared libraries they link, e.g. fmt, yaml-cpp).
# Then, on the GPU machine: tools/gpu/run_device_tests.sh .dev/gpu RESULTS_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${1:-build-gpu}
tools/scripts/configure.sh "$build" -DCMAKE_BUILD_TYPE=Release -DAUTOTP_WARNINGS_AS_ERRORS=ON
cmake --build "$build"
out=.dev/gpu
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
for exe in "$build"/bin/*; do
  [ -x "$exe" ] && [ -f "$exe" ] && cp "$exe" "$out/bin/"
done
# Shared libraries outside glibc/libstdc++ and the CUDA toolkit (which the GPU machine has).
for exe in "$out"/bin/*; do
  ldd "$exe" | awk '/=> \// {print $3}'
done | sort -u | grep -E 'libfmt|libyaml-cpp|libgtest|libmpi|libopen-|libhwloc|libevent|libudev' | while read -r lib; do
  cp -L "$lib" "$out/lib/"
done
du -sh "$out"
