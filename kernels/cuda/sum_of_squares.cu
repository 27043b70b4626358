// Multi-tensor sum of squares (kernels/cuda/multi_tensor.cuh): each chunk's block writes the
// chunk's f64 sum of squares; then one block adds the partials: thread t the partials t,
// t + blockDim, ... in order, then a block tree sum.
#include "kernels/cuda/sum_of_squares.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/cuda/row_utils.cuh"
#include "kernels/cuda/vectorized.cuh"

namespace autotp::kernels::cuda {

namespace {

constexpr int kChunkThreads = 256;
constexpr int kTotalThreads = 1024;

template <typename T>
__global__ void chunk_squares_kernel(MultiTensorTable<SquaresArray> table) {
  __shared__ double scratch[32];
  const ChunkRange c = chunk_of_block(table, kSquaresChunkElements);
  const T* x = static_cast<const T*>(table.entries[c.tensor].data);
  double sum = 0.0;
  constexpr int V = kVectorElems<T>;
  int64_t scalar_begin = c.begin;
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {  // chunk starts are multiples of V
    scalar_begin = c.begin + (c.end - c.begin) / V * V;
    for (int64_t i = c.begin + threadIdx.x * V; i < scalar_begin; i += blockDim.x * V) {
      const Pack<T, V> p = load_pack<V>(x + i);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const double v = static_cast<double>(widen(p.v[e]));
        sum += v * v;
      }
    }
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < c.end; i += blockDim.x) {
    const double v = static_cast<double>(widen(x[i]));
    sum += v * v;
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) static_cast<double*>(table.per_chunk)[blockIdx.x] = sum;
}

__global__ void add_partials_kernel(const double* partials, int64_t n, double* out) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    sum += partials[i];
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) *out = sum;
}

}  // namespace

int64_t sum_of_squares_workspace_bytes(const SquaresArray* arrays, int64_t count) {
  return multi_tensor_workspace_bytes(arrays, count, kSquaresChunkElements, sizeof(double));
}

void sum_of_squares_multi_tensor(int dtype, const SquaresArray* arrays, int64_t count, double* out,
                                 void* workspace, int64_t workspace_bytes, cudaStream_t stream) {
  const char* op = "sum_of_squares_multi_tensor";
  for (int64_t k = 0; k < count; ++k) {
    if (arrays[k].numel > 0 && arrays[k].data == nullptr) {
      throw std::invalid_argument(std::string(op) + ": array " + std::to_string(k) +
                                  " has a null pointer");
    }
  }
  const MultiTensorTable<SquaresArray> table = stage_multi_tensor(
      op, arrays, count, kSquaresChunkElements, sizeof(double), workspace, workspace_bytes, stream);
  if (table.chunks == 0) {
    AUTOTP_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), stream));
    return;
  }
  dispatch_float_code(dtype, op, [&]<typename T>(TypeTag<T>) {
    chunk_squares_kernel<T>
        <<<static_cast<unsigned>(table.chunks), kChunkThreads, 0, stream>>>(table);
    AUTOTP_CUDA_CHECK_LAUNCH("chunk_squares_kernel", {"arrays", count}, {"chunks", table.chunks},
                             {"dtype", dtype});
  });
  add_partials_kernel<<<1, kTotalThreads, 0, stream>>>(static_cast<const double*>(table.per_chunk),
                                                       table.chunks, out);
  AUTOTP_CUDA_CHECK_LAUNCH("add_partials_kernel", {"chunks", table.chunks});
}

}  // namespace autotp::kernels::cuda
