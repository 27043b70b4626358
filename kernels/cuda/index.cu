// Gather and segmented scatter-add: one thread per output element (grid-stride, 64-bit
// indices); the scatter-add thread walks its segment's positions in order.
#include "kernels/cuda/check.h"
#include "kernels/cuda/index.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/row_utils.cuh"

namespace autotp::kernels::cuda {

namespace {

template <typename T, typename I>
__global__ void index_select_kernel(T* out, const T* x, const I* index, int64_t outer, int64_t n,
                                    int64_t inner, int64_t count) {
  const int64_t total = outer * count * inner;
  for (int64_t e = global_thread_index(); e < total; e += grid_thread_count()) {
    const int64_t i = e % inner;
    const int64_t j = (e / inner) % count;
    const int64_t o = e / (inner * count);
    out[e] = x[(o * n + static_cast<int64_t>(index[j])) * inner + i];
  }
}

template <typename T>
__global__ void index_add_sorted_kernel(T* out, const T* src, const int64_t* order,
                                        const int64_t* starts, const int64_t* values,
                                        int64_t segments, int64_t outer, int64_t n, int64_t inner,
                                        int64_t count) {
  using C = ComputeType<T>;
  const int64_t total = outer * segments * inner;
  for (int64_t e = global_thread_index(); e < total; e += grid_thread_count()) {
    const int64_t i = e % inner;
    const int64_t s = (e / inner) % segments;
    const int64_t o = e / (inner * segments);
    C acc = 0;
    for (int64_t p = starts[s]; p < starts[s + 1]; ++p) {
      acc += widen(src[(o * count + order[p]) * inner + i]);
    }
    T& target = out[(o * n + values[s]) * inner + i];
    target = convert<T>(widen(target) + acc);
  }
}

}  // namespace

void index_select(int dtype, int index_dtype, void* out, const void* x, const void* index,
                  int64_t outer, int64_t n, int64_t inner, int64_t count, cudaStream_t stream) {
  const int64_t total = outer * count * inner;
  if (total == 0) return;
  dispatch_float_code(dtype, "index_select", [&]<typename T>(TypeTag<T>) {
    dispatch_index_code(index_dtype, "index_select", [&]<typename I>(TypeTag<I>) {
      index_select_kernel<T, I><<<blocks_for(total), kThreadsPerBlock, 0, stream>>>(
          static_cast<T*>(out), static_cast<const T*>(x), static_cast<const I*>(index), outer, n,
          inner, count);
      AUTOTP_CUDA_CHECK_LAUNCH("index_select_kernel", {"outer", outer}, {"n", n}, {"inner", inner},
                               {"count", count}, {"dtype", dtype});
    });
  });
}

void index_add_sorted(int dtype, void* out, const void* src, const int64_t* order,
                      const int64_t* starts, const int64_t* values, int64_t segments, int64_t outer,
                      int64_t n, int64_t inner, int64_t count, cudaStream_t stream) {
  const int64_t total = outer * segments * inner;
  if (total == 0) return;
  dispatch_float_code(dtype, "index_add_sorted", [&]<typename T>(TypeTag<T>) {
    index_add_sorted_kernel<T><<<blocks_for(total), kThreadsPerBlock, 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(src), order, starts, values, segments, outer, n,
        inner, count);
    AUTOTP_CUDA_CHECK_LAUNCH("index_add_sorted_kernel", {"segments", segments}, {"outer", outer},
                             {"n", n}, {"inner", inner}, {"count", count}, {"dtype", dtype});
  });
}

}  // namespace autotp::kernels::cuda
