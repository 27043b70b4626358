// fill_random: one Philox evaluation per element in a grid-stride loop.
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/random.h"
#include "kernels/philox.h"

namespace autotp::kernels::cuda {

namespace {

// The largest T below x, as core/random.cpp's next_below on the host: one unit in the last
// place toward -inf (16-bit floats are sign-magnitude bit patterns).
template <typename T>
__device__ __forceinline__ T next_below(T x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    return nextafter(x, -INFINITY);
  } else {
    const float f = widen(x);
    unsigned short bits;
    if constexpr (std::is_same_v<T, bf16>) {
      bits = __bfloat16_as_ushort(x);
    } else {
      bits = __half_as_ushort(x);
    }
    bits = f > 0.0f   ? static_cast<unsigned short>(bits - 1)
           : f < 0.0f ? static_cast<unsigned short>(bits + 1)
                      : static_cast<unsigned short>(0x8001);
    if constexpr (std::is_same_v<T, bf16>) {
      return __ushort_as_bfloat16(bits);
    } else {
      return __ushort_as_half(bits);
    }
  }
}

template <typename T>
__global__ void fill_random_kernel(T* data, int64_t n, uint64_t seed, uint64_t offset, bool normal,
                                   double a, double b) {
  for (int64_t i = global_thread_index(); i < n; i += grid_thread_count()) {
    const uint64_t counter = offset + static_cast<uint64_t>(i);
    const double value =
        normal ? philox::normal(seed, counter, a, b) : philox::uniform(seed, counter, a, b);
    T stored = convert<T>(value);
    // A uniform draw below hi (= b) that rounding to T lifted to hi steps down below it,
    // exactly as the CPU fill does.
    if (!normal && b > a && static_cast<double>(widen(stored)) >= b) stored = next_below(stored);
    data[i] = stored;
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
