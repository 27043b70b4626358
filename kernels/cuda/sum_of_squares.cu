// Multi-tensor sum of squares (kernels/cuda/multi_tensor.cuh): each chunk's block writes the
// chunk's f64 sum of squares; then one block adds the partials: thread t the partials t,
// t + blockDim, ... in order, then a block tree sum. Inside a chunk, thread t takes the groups
// of kGroup consecutive elements t, t + blockDim, ... and squares each group's elements in
// index order (one 8- or 16-byte load per group where aligned, kGroup loads otherwise); the
// chunk's last numel % kGroup elements go to the thread whose group they start. The order of
// the additions thus depends only on the element indices: not on dtype or alignment.
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
// Elements a thread takes at a time, the same for every dtype (4 bf16 = 8 bytes, 4 f32 = 16,
// 4 f64 = two 16-byte loads).
constexpr int kGroup = 4;
static_assert(kSquaresChunkElements % kGroup == 0, "chunks start on a group boundary");

// Alignment of a group start that allows its vector loads.
template <typename T>
constexpr uintptr_t kGroupAlign = sizeof(T) * kGroup < 16 ? sizeof(T) * kGroup : 16;

template <typename T>
__device__ __forceinline__ void add_square(double& sum, T x) {
  const double v = static_cast<double>(widen(x));
  sum += v * v;  // exact product for 16-bit and f32 x: contracted or not, one rounding
}

// The squares of x[begin, end) that this thread owns (see the file comment), added in index
// order. begin is a multiple of kGroup.
template <typename T>
__device__ __forceinline__ double chunk_squares(const T* x, int64_t begin, int64_t end) {
  double sum = 0.0;
  const int64_t step = static_cast<int64_t>(kGroup) * blockDim.x;
  int64_t i = begin + static_cast<int64_t>(kGroup) * threadIdx.x;
  // Group starts are aligned when x is.
  if (reinterpret_cast<uintptr_t>(x) % kGroupAlign<T> == 0) {
    constexpr int V = static_cast<int>(kGroupAlign<T> / sizeof(T));  // elements per load
#pragma unroll 4
    for (; i + kGroup <= end; i += step) {
#pragma unroll
      for (int part = 0; part < kGroup; part += V) {
        const Pack<T, V> p = load_pack<V>(x + i + part);
#pragma unroll
        for (int e = 0; e < V; ++e)
          add_square(sum, p.v[e]);
      }
    }
  } else {
#pragma unroll 4
    for (; i + kGroup <= end; i += step) {
#pragma unroll
      for (int e = 0; e < kGroup; ++e)
        add_square(sum, x[i + e]);
    }
  }
  for (; i < end; ++i)  // the partial last group: at most one thread, fewer than kGroup elements
    add_square(sum, x[i]);
  return sum;
}

// One block per chunk; the chunk's array dtype is read from the table (uniform over a block).
__global__ void chunk_squares_kernel(MultiTensorTable<SquaresArray> table) {
  __shared__ double scratch[32];
  const ChunkRange c = chunk_of_block(table, kSquaresChunkElements);
  const SquaresArray a = table.entries[c.tensor];
  double sum = 0.0;
  switch (static_cast<DTypeCode>(a.dtype)) {
    case DTypeCode::F32:
      sum = chunk_squares(static_cast<const float*>(a.data), c.begin, c.end);
      break;
    case DTypeCode::F64:
      sum = chunk_squares(static_cast<const double*>(a.data), c.begin, c.end);
      break;
    case DTypeCode::BF16:
      sum = chunk_squares(static_cast<const bf16*>(a.data), c.begin, c.end);
      break;
    case DTypeCode::F16:
      sum = chunk_squares(static_cast<const f16*>(a.data), c.begin, c.end);
      break;
    default:  // rejected on the host
      break;
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

void sum_of_squares_multi_tensor(const SquaresArray* arrays, int64_t count, double* out,
                                 void* workspace, int64_t workspace_bytes, cudaStream_t stream) {
  const char* op = "sum_of_squares_multi_tensor";
  for (int64_t k = 0; k < count; ++k) {
    dispatch_float_code(arrays[k].dtype, op, []<typename T>(TypeTag<T>) {});  // throws if not
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
  chunk_squares_kernel<<<static_cast<unsigned>(table.chunks), kChunkThreads, 0, stream>>>(table);
  AUTOTP_CUDA_CHECK_LAUNCH("chunk_squares_kernel", {"arrays", count}, {"chunks", table.chunks});
  add_partials_kernel<<<1, kTotalThreads, 0, stream>>>(static_cast<const double*>(table.per_chunk),
                                                       table.chunks, out);
  AUTOTP_CUDA_CHECK_LAUNCH("add_partials_kernel", {"chunks", table.chunks});
}

}  // namespace autotp::kernels::cuda
