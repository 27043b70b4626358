#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs missing packages; builds build/ (CUDA code
# compiled where nvcc exists, warnings as errors) and runs every test; then builds the CPU
# code under AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/ and runs the tests
# again. GPU tests skip themselves (with the reason) where no GPU is present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc 2>/dev/null || echo 2)
start=$(date +%s)

tools/scripts/install_deps.sh

echo "== build/ (Release, warnings as errors)"
tools/scripts/configure.sh build -DCMAKE_BUILD_TYPE=Release -DAUTOTP_WARNINGS_AS_ERRORS=ON
cmake --build build -j "$jobs"
echo "== tests in build/"
(cd build && ctest --output-on-failure -j "$jobs" --timeout 600)

echo "== build-asan/ (CPU only, AddressSanitizer + UndefinedBehaviorSanitizer)"
tools/scripts/configure.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DAUTOTP_ENABLE_CUDA=OFF \
  -DAUTOTP_SANITIZE=ON -DAUTOTP_WARNINGS_AS_ERRORS=ON
cmake --build build-asan -j "$jobs"
echo "== tests in build-asan/"
# The installed-package test is covered by build/; sanitizers add nothing to it.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -j "$jobs" --timeout 900 -E '^install\.')

echo "== all tests passed in $(( $(date +%s) - start )) s"
