#!/usr/bin/env bash
# Builds the NCCL device check from the CPU build of autotp_core (build/) plus the NCCL
# communicator compiled with CUDA and the standalone CUDA memory entry points, into
# build-nccl-check/. Run from the repository root after `ninja -C build autotp_core`.
set -euo pipefail
cuda=${CUDA_HOME:-/usr/local/cuda}
out=build-nccl-check
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -Wall -Wextra -Werror -I. -I"$cuda/include" $(mpicxx --showme:compile)
       -DOMPI_SKIP_MPICXX=1)
dir=tests/comm/nccl_device_check
g++ "${flags[@]}" -DAUTOTP_WITH_CUDA=1 -c core/comm/nccl_communicator.cpp -o "$out/nccl.o"
g++ "${flags[@]}" -c "$dir/cuda_memory_standalone.cpp" -o "$out/cuda_memory.o"
g++ "${flags[@]}" -c "$dir/nccl_device_check.cpp" -o "$out/check.o"
g++ -o "$out/nccl_device_check" "$out/check.o" "$out/nccl.o" "$out/cuda_memory.o" \
  build/libautotp_core.a build/libautotp_kernels.a -lfmt $(mpicxx --showme:link) \
  -L"$cuda/lib64" -lcudart -lnccl -Wl,-rpath,"$cuda/lib64"
echo "built $out/nccl_device_check"
