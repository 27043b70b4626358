// Multi-tensor sum of squares: the first kernel gives each chunk of kSquaresChunkElements to a
// block (the owning array found by binary search over the chunk offsets, as the multi-tensor
// AdamW does), which writes the chunk's f64 sum of squares; the second kernel, one block, adds
// the partials: thread t the partials t, t + blockDim, ... in order, then a block tree sum.
#include "kernels/cuda/sum_of_squares.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/chunk_lookup.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/row_utils.cuh"
#include "kernels/cuda/vectorized.cuh"

namespace autotp::kernels::cuda {

namespace {

constexpr int kChunkThreads = 256;
constexpr int kTotalThreads = 1024;

struct Workspace {
  SquaresArray* arrays;
  int64_t* first_chunk;  // [count + 1]
  double* partials;      // [chunks]
};

int64_t align16(int64_t bytes) {
  return (bytes + 15) / 16 * 16;
}

int64_t chunks_of(int64_t numel) {
  return (numel + kSquaresChunkElements - 1) / kSquaresChunkElements;
}

Workspace carve(void* base, int64_t count) {
  char* p = static_cast<char*>(base);
  const int64_t table = align16(count * static_cast<int64_t>(sizeof(SquaresArray)));
  const int64_t offsets = align16((count + 1) * static_cast<int64_t>(sizeof(int64_t)));
  return {reinterpret_cast<SquaresArray*>(p), reinterpret_cast<int64_t*>(p + table),
          reinterpret_cast<double*>(p + table + offsets)};
}

template <typename T>
__global__ void chunk_squares_kernel(const SquaresArray* arrays, const int64_t* first_chunk,
                                     int64_t count, double* partials) {
  __shared__ double scratch[32];
  const int64_t block = blockIdx.x;
  const int64_t k = tensor_of_chunk(first_chunk, count, block);
  const SquaresArray a = arrays[k];
  const T* x = static_cast<const T*>(a.data);
  const int64_t begin = (block - first_chunk[k]) * kSquaresChunkElements;
  const int64_t end =
      begin + kSquaresChunkElements < a.numel ? begin + kSquaresChunkElements : a.numel;
  double sum = 0.0;
  constexpr int V = kVectorElems<T>;
  int64_t scalar_begin = begin;
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {  // chunk starts are multiples of V
    scalar_begin = begin + (end - begin) / V * V;
    for (int64_t i = begin + threadIdx.x * V; i < scalar_begin; i += blockDim.x * V) {
      const Pack<T, V> p = load_pack<V>(x + i);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const double v = static_cast<double>(widen(p.v[e]));
        sum += v * v;
      }
    }
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x) {
    const double v = static_cast<double>(widen(x[i]));
    sum += v * v;
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) partials[block] = sum;
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
  int64_t chunks = 0;
  for (int64_t k = 0; k < count; ++k)
    chunks += arrays[k].numel > 0 ? chunks_of(arrays[k].numel) : 0;
  return align16(count * static_cast<int64_t>(sizeof(SquaresArray))) +
         align16((count + 1) * static_cast<int64_t>(sizeof(int64_t))) +
         chunks * static_cast<int64_t>(sizeof(double));
}

void sum_of_squares_multi_tensor(int dtype, const SquaresArray* arrays, int64_t count, double* out,
                                 void* workspace, int64_t workspace_bytes, cudaStream_t stream) {
  if (count < 0) throw std::invalid_argument("sum_of_squares_multi_tensor: negative count");
  std::vector<int64_t> first_chunk(static_cast<size_t>(count) + 1, 0);
  for (int64_t k = 0; k < count; ++k) {
    const SquaresArray& a = arrays[k];
    if (a.numel < 0 || (a.numel > 0 && a.data == nullptr)) {
      throw std::invalid_argument("sum_of_squares_multi_tensor: array " + std::to_string(k) +
                                  " has a negative size or a null pointer");
    }
    first_chunk[k + 1] = first_chunk[k] + (a.numel > 0 ? chunks_of(a.numel) : 0);
  }
  const int64_t chunks = first_chunk[count];
  if (chunks == 0) {
    AUTOTP_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), stream));
    return;
  }
  const int64_t needed = sum_of_squares_workspace_bytes(arrays, count);
  if (workspace == nullptr || workspace_bytes < needed) {
    throw std::invalid_argument("sum_of_squares_multi_tensor: workspace of " +
                                std::to_string(workspace_bytes) + " bytes, need " +
                                std::to_string(needed));
  }
  if (chunks > 0x7fffffff) {
    throw std::invalid_argument("sum_of_squares_multi_tensor: too many chunks (" +
                                std::to_string(chunks) + ") for one launch");
  }
  const Workspace w = carve(workspace, count);
  AUTOTP_CUDA_CHECK(cudaMemcpyAsync(w.arrays, arrays,
                                    static_cast<size_t>(count) * sizeof(SquaresArray),
                                    cudaMemcpyHostToDevice, stream));
  AUTOTP_CUDA_CHECK(cudaMemcpyAsync(w.first_chunk, first_chunk.data(),
                                    first_chunk.size() * sizeof(int64_t), cudaMemcpyHostToDevice,
                                    stream));
  dispatch_float_code(dtype, "sum_of_squares_multi_tensor", [&]<typename T>(TypeTag<T>) {
    chunk_squares_kernel<T><<<static_cast<unsigned>(chunks), kChunkThreads, 0, stream>>>(
        w.arrays, w.first_chunk, count, w.partials);
    AUTOTP_CUDA_CHECK_LAUNCH("chunk_squares_kernel", {"arrays", count}, {"chunks", chunks},
                             {"dtype", dtype});
  });
  add_partials_kernel<<<1, kTotalThreads, 0, stream>>>(w.partials, chunks, out);
  AUTOTP_CUDA_CHECK_LAUNCH("add_partials_kernel", {"chunks", chunks});
}

}  // namespace autotp::kernels::cuda
