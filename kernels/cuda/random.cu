// fill_random: one Philox evaluation per element in a grid-stride loop.
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/random.h"
#include "kernels/philox.h"

namespace autotp::kernels::cuda {

namespace {

template <typename T>
__global__ void fill_random_kernel(T* data, int64_t n, uint64_t seed, uint64_t offset,
                                   bool normal, double a, double b) {
  for (int64_t i = global_thread_index(); i < n; i += grid_thread_count()) {
    const uint64_t counter = offset + static_cast<uint64_t>(i);
    const double value =
        normal ? philox::normal(seed, counter, a, b) : philox::uniform(seed, counter, a, b);
    data[i] = convert<T>(value);
  }
}

}  // namespace

void fill_random(int dtype, void* data, int64_t n, uint64_t seed, uint64_t offset, bool normal,
                 double a, double b, cudaStream_t stream) {
  if (n == 0) return;
  dispatch_float_code(dtype, "fill_random", [&]<typename T>(TypeTag<T>) {
    fill_random_kernel<T><<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
        static_cast<T*>(data), n, seed, offset, normal, a, b);
    AUTOTP_CUDA_CHECK_LAUNCH("fill_random_kernel", {"n", n}, {"dtype", dtype},
                             {"normal", normal ? 1 : 0});
  });
}

}  // namespace autotp::kernels::cuda
