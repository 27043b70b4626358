// StridedLayout: an index space and the element strides of N operands over it, packed by value
// into a kernel's parameters. Built on the host with size-1 dims dropped and dims merged where
// every operand is contiguous across them, so most views reach the kernel with 1 or 2 dims.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace autotp::kernels::cuda {

// Dims a kernel accepts after merging; more is an error naming the shape.
constexpr int kMaxDims = 8;

template <int N>
struct StridedLayout {
  int ndim = 1;
  int64_t numel = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};  // in elements; 0 on broadcast dims
};

// Packs `shape` (ndim dims, ndim may be 0) and one stride array per operand. `what` names
// the op in the error thrown when more than kMaxDims dims remain.
template <int N>
StridedLayout<N> make_strided_layout(const char* what, const int64_t* shape, int ndim,
                                     const int64_t* const (&strides)[N]) {
  StridedLayout<N> layout;
  layout.numel = 1;
  for (int d = 0; d < ndim; ++d)
    layout.numel *= shape[d];
  std::vector<int64_t> merged_shape;
  std::vector<int64_t> merged_strides[N];
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    bool mergeable = !merged_shape.empty();
    for (int k = 0; k < N && mergeable; ++k) {
      mergeable = merged_strides[k].back() == strides[k][d] * shape[d];
    }
    if (mergeable) {
      merged_shape.back() *= shape[d];
      for (int k = 0; k < N; ++k)
        merged_strides[k].back() = strides[k][d];
    } else {
      merged_shape.push_back(shape[d]);
      for (int k = 0; k < N; ++k)
        merged_strides[k].push_back(strides[k][d]);
    }
  }
  if (merged_shape.empty()) {  // a single element (0-dim or all sizes 1)
    merged_shape.push_back(1);
    for (int k = 0; k < N; ++k)
      merged_strides[k].push_back(0);
  }
  if (merged_shape.size() > static_cast<size_t>(kMaxDims)) {
    std::string dims;
    for (int d = 0; d < ndim; ++d)
      dims += (d ? ", " : "") + std::to_string(shape[d]);
    throw std::invalid_argument(std::string(what) + ": a view of shape [" + dims + "] keeps " +
                                std::to_string(merged_shape.size()) +
                                " dims after merging contiguous dims, but CUDA kernels take at "
                                "most " +
                                std::to_string(kMaxDims) + "; reshape it to fewer dims first");
  }
  layout.ndim = static_cast<int>(merged_shape.size());
  for (int d = 0; d < layout.ndim; ++d) {
    layout.shape[d] = merged_shape[d];
    for (int k = 0; k < N; ++k)
      layout.strides[k][d] = merged_strides[k][d];
  }
  return layout;
}

// Element offsets of the row-major linear index `linear` for every operand.
template <int N>
__device__ __forceinline__ void strided_offsets(const StridedLayout<N>& layout, int64_t linear,
                                                int64_t (&offsets)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k)
    offsets[k] = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d > 0; --d) {
    if (d < layout.ndim) {
      const int64_t size = layout.shape[d];
      const int64_t quotient = linear / size;
      const int64_t coordinate = linear - quotient * size;
      linear = quotient;
#pragma unroll
      for (int k = 0; k < N; ++k)
        offsets[k] += coordinate * layout.strides[k][d];
    }
  }
#pragma unroll
  for (int k = 0; k < N; ++k)
    offsets[k] += linear * layout.strides[k][0];
}

}  // namespace autotp::kernels::cuda
