#!/usr/bin/env bash
# Builds autotp with CUDA (Release) in BUILD_DIR (default build-gpu/) on this machine and packs what a bare GPU
# machine needs to run the test binaries into .dev/gpu/: bin.tar.gz (the test executables and
# the autotp command, unpacked there by tools/gpu/unpack_binaries.sh) and lib/ (the non-system shared libraries they link, e.g. fmt, yaml-cpp).
# Then, on the GPU machine: tools/gpu/device_session.sh .dev/gpu RESULTS_DIR (or
# tools/gpu/run_device_tests.sh .dev/gpu RESULTS_DIR for the tests alone). Open MPI is packed
# into .dev/gpu/openmpi (tools/gpu/pack_openmpi.sh) for the multi-rank checks.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${1:-build-gpu}
tools/scripts/configure.sh "$build" -DCMAKE_BUILD_TYPE=Release -DAUTOTP_WARNINGS_AS_ERRORS=ON
cmake --build "$build"
out=.dev/gpu
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
# The binaries the GPU checks run (tools/gpu/device_session.sh): every test suite with CUDA
# cases, the command and the communicators' device check; PACK_BINARIES names others. Each
# embeds the sm_90 kernels, so they travel as one bin.tar.gz (a quarter of their size; the
# tracked tree and the pack must stay under the 64 MiB a device call carries), which the
# scripts there unpack first (tools/gpu/unpack_binaries.sh).
for name in ${PACK_BINARIES:-autotp nccl_device_check test_core test_engine test_models}; do
  cp "$build/bin/$name" "$out/bin/"
done
strip "$out"/bin/*
# Shared libraries outside glibc/libstdc++ and the CUDA toolkit (which the GPU machine has).
for exe in "$out"/bin/*; do
  ldd "$exe" | awk '/=> \// {print $3}'
done | sort -u | grep -E 'libfmt|libyaml-cpp|libgtest|libmpi|libopen-|libhwloc|libevent|libudev|libcupti' | while read -r lib; do
  cp -L "$lib" "$out/lib/"
done
tar -czf "$out/bin.tar.gz" -C "$out" bin
rm -rf "${out:?}/bin"
"$root/tools/gpu/pack_openmpi.sh" "$out/openmpi"
du -sh "$out"
