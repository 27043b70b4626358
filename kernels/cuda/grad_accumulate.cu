// Multi-tensor gradient accumulation (kernels/cuda/multi_tensor.cuh): a block per chunk,
// 16-byte accesses where both arrays of its tensor are aligned, element by element otherwise.
#include "kernels/cuda/grad_accumulate.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/cuda/vectorized.cuh"

namespace autotp::kernels::cuda {

namespace {

constexpr int kThreads = 256;

template <typename S>
__global__ void accumulate_kernel(MultiTensorTable<AccumulateTensor> table, float scale1,
                                  float scale2, bool use_scale1, bool use_scale2) {
  const ChunkRange c = chunk_of_block(table, kAccumulateChunkElements);
  const AccumulateTensor t = table.entries[c.tensor];
  const S* src = static_cast<const S*>(t.src);
  float* dst = t.dst;
  // The tensor ops' order: to(F32), mul, mul, add; correctly rounded, never fused.
  auto value = [&](float acc, S raw) {
    float g = convert<float>(raw);
    if (use_scale1) g = __fmul_rn(g, scale1);
    if (use_scale2) g = __fmul_rn(g, scale2);
    return t.add ? __fadd_rn(acc, g) : g;
  };
  constexpr int V = 4;  // 16 bytes of f32
  int64_t scalar_begin = c.begin;
  if (reinterpret_cast<uintptr_t>(dst) % 16 == 0 &&
      reinterpret_cast<uintptr_t>(src) % (V * sizeof(S)) == 0) {
    scalar_begin = c.begin + (c.end - c.begin) / V * V;  // chunk starts are multiples of V
    for (int64_t i = c.begin + threadIdx.x * V; i < scalar_begin; i += blockDim.x * V) {
      const Pack<S, V> s = load_pack<V>(src + i);
      Pack<float, V> d;
      if (t.add) d = load_pack<V>(dst + i);
#pragma unroll
      for (int e = 0; e < V; ++e)
        d.v[e] = value(t.add ? d.v[e] : 0.0f, s.v[e]);
      store_pack<V>(dst + i, d);
    }
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < c.end; i += blockDim.x)
    dst[i] = value(t.add ? dst[i] : 0.0f, src[i]);
}

}  // namespace

int64_t accumulate_workspace_bytes(const AccumulateTensor* tensors, int64_t count) {
  return multi_tensor_workspace_bytes(tensors, count, kAccumulateChunkElements, 0);
}

void accumulate_widened_multi_tensor(int src_dtype, double scale1, double scale2,
                                     const AccumulateTensor* tensors, int64_t count,
                                     void* workspace, int64_t workspace_bytes,
                                     cudaStream_t stream) {
  const char* op = "accumulate_widened_multi_tensor";
  for (int64_t k = 0; k < count; ++k) {
    if (tensors[k].numel > 0 && (tensors[k].dst == nullptr || tensors[k].src == nullptr)) {
      throw std::invalid_argument(std::string(op) + ": tensor " + std::to_string(k) +
                                  " has a null pointer");
    }
  }
  const MultiTensorTable<AccumulateTensor> table = stage_multi_tensor(
      op, tensors, count, kAccumulateChunkElements, 0, workspace, workspace_bytes, stream);
  if (table.chunks == 0) return;
  dispatch_float_code(src_dtype, op, [&]<typename S>(TypeTag<S>) {
    accumulate_kernel<S><<<static_cast<unsigned>(table.chunks), kThreads, 0, stream>>>(
        table, static_cast<float>(scale1), static_cast<float>(scale2), scale1 != 1.0,
        scale2 != 1.0);
    AUTOTP_CUDA_CHECK_LAUNCH("accumulate_kernel", {"tensors", count}, {"chunks", table.chunks},
                             {"src_dtype", src_dtype});
  });
}

}  // namespace autotp::kernels::cuda
