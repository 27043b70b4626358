// strided_copy: one grid-stride kernel per (dst, src) dtype pair, over a merged StridedLayout.
// Where both sides are contiguous along the last dim and aligned (a permuted copy of whole head
// rows, a cast of a contiguous tensor), V elements move per index computation.
#include "kernels/cuda/copy.h"

#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/strided_layout.cuh"
#include "kernels/cuda/vectorized.cuh"

namespace autotp::kernels::cuda {

namespace {

// Operand 0 is dst, operand 1 is src.
template <typename Dst, typename Src>
__global__ void strided_copy_kernel(Dst* dst, const Src* src, StridedLayout<2> layout) {
  for (int64_t i = global_thread_index(); i < layout.numel; i += grid_thread_count()) {
    int64_t offsets[2];
    strided_offsets(layout, i, offsets);
    dst[offsets[0]] = convert<Dst>(src[offsets[1]]);
  }
}

// The same over a vectorized layout: V elements per index.
template <typename Dst, typename Src, int V>
__global__ void strided_copy_vector_kernel(Dst* dst, const Src* src, StridedLayout<2> layout) {
  for (int64_t i = global_thread_index(); i < layout.numel; i += grid_thread_count()) {
    int64_t offsets[2];
    strided_offsets(layout, i, offsets);
    const Pack<Src, V> in = load_pack<V>(src + offsets[1]);
    Pack<Dst, V> out;
#pragma unroll
    for (int e = 0; e < V; ++e)
      out.v[e] = convert<Dst>(in.v[e]);
    store_pack<V>(dst + offsets[0], out);
  }
}

}  // namespace

void strided_copy(void* dst, int dst_dtype, const int64_t* dst_strides, const void* src,
                  int src_dtype, const int64_t* src_strides, const int64_t* shape, int ndim,
                  cudaStream_t stream) {
  const int64_t* const strides[2] = {dst_strides, src_strides};
  const StridedLayout<2> layout = make_strided_layout<2>("strided_copy", shape, ndim, strides);
  if (layout.numel == 0) return;
  dispatch_any_code(dst_dtype, "strided_copy", [&]<typename D>(TypeTag<D>) {
    dispatch_any_code(src_dtype, "strided_copy", [&]<typename S>(TypeTag<S>) {
      constexpr int V = std::min(kVectorElems<D>, kVectorElems<S>);
      StridedLayout<2> vectors = layout;
      if (is_aligned(dst, V * sizeof(D)) && is_aligned(src, V * sizeof(S)) &&
          vectorize_layout(vectors, V)) {
        strided_copy_vector_kernel<D, S, V>
            <<<blocks_for(vectors.numel), kThreadsPerBlock, 0, stream>>>(
                static_cast<D*>(dst), static_cast<const S*>(src), vectors);
        AUTOTP_CUDA_CHECK_LAUNCH("strided_copy_vector_kernel", {"numel", layout.numel},
                                 {"ndim", layout.ndim}, {"dst_dtype", dst_dtype},
                                 {"src_dtype", src_dtype});
        return;
      }
      strided_copy_kernel<D, S><<<blocks_for(layout.numel), kThreadsPerBlock, 0, stream>>>(
          static_cast<D*>(dst), static_cast<const S*>(src), layout);
      AUTOTP_CUDA_CHECK_LAUNCH("strided_copy_kernel", {"numel", layout.numel},
                               {"ndim", layout.ndim}, {"dst_dtype", dst_dtype},
                               {"src_dtype", src_dtype});
    });
  });
}

}  // namespace autotp::kernels::cuda
