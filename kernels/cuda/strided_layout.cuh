// StridedLayout: an index space and the element strides of N operands over it, packed by value
// into a kernel's parameters. Built on the host with size-1 dims dropped and dims merged where
// every operand is contiguous across them, so most views reach the kernel with 1 or 2 dims.
// Layouts whose index space and offsets fit in 32 bits (almost every tensor) are walked with
// 32-bit divisions: a 64-bit division is a long software sequence, and one per dim per
// element (or vector) costs memory-bound kernels a good part of their bandwidth.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__CUDACC__)
#define AUTOTP_LAYOUT_FN __host__ __device__ __forceinline__
#define AUTOTP_LAYOUT_UNROLL _Pragma("unroll")
#else
#define AUTOTP_LAYOUT_FN inline
#define AUTOTP_LAYOUT_UNROLL
#endif

namespace autotp::kernels::cuda {

// Dims a kernel accepts after merging; more is an error naming the shape.
constexpr int kMaxDims = 8;

template <int N>
struct StridedLayout {
  int ndim = 1;
  int64_t numel = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};  // in elements; 0 on broadcast dims
  // Every linear index and every operand's offsets are below 2^31 (and no stride is
  // negative): strided_offsets may compute in 32 bits. Still true after vectorize_layout.
  bool index32 = false;
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
  constexpr int64_t kLimit = int64_t{1} << 31;
  layout.index32 = layout.numel < kLimit;
  for (int k = 0; k < N; ++k) {
    int64_t last = 0;  // the largest offset of operand k (sizes >= 1 after merging)
    for (int d = 0; d < layout.ndim; ++d) {
      const int64_t stride = layout.strides[k][d];
      if (stride < 0 || stride >= kLimit) layout.index32 = false;
      if (layout.index32) last += (layout.shape[d] - 1) * stride;
      if (last >= kLimit) layout.index32 = false;
    }
  }
  return layout;
}

// Rewrites `layout` in units of v consecutive elements when every operand reads its innermost
// dim with stride 1 and both that dim's size and every other stride are multiples of v. Then
// strided_offsets over the result gives, for vector i, the element offset of its first element
// in every operand (and i * v in a contiguous output). Returns false, leaving `layout` as it
// was, otherwise.
template <int N>
bool vectorize_layout(StridedLayout<N>& layout, int64_t v) {
  const int last = layout.ndim - 1;
  if (v <= 1 || layout.shape[last] % v != 0) return false;
  for (int k = 0; k < N; ++k) {
    if (layout.strides[k][last] != 1) return false;
    for (int d = 0; d < last; ++d)
      if (layout.strides[k][d] % v != 0) return false;
  }
  layout.shape[last] /= v;
  for (int k = 0; k < N; ++k)
    layout.strides[k][last] = v;
  layout.numel /= v;
  return true;
}

// Element offsets of the row-major linear index `linear` for every operand, in 64 bits.
template <int N>
AUTOTP_LAYOUT_FN void strided_offsets64(const StridedLayout<N>& layout, int64_t linear,
                                        int64_t (&offsets)[N]) {
  AUTOTP_LAYOUT_UNROLL
  for (int k = 0; k < N; ++k)
    offsets[k] = 0;
  AUTOTP_LAYOUT_UNROLL
  for (int d = kMaxDims - 1; d > 0; --d) {
    if (d < layout.ndim) {
      const int64_t size = layout.shape[d];
      const int64_t quotient = linear / size;
      const int64_t coordinate = linear - quotient * size;
      linear = quotient;
      AUTOTP_LAYOUT_UNROLL
      for (int k = 0; k < N; ++k)
        offsets[k] += coordinate * layout.strides[k][d];
    }
  }
  AUTOTP_LAYOUT_UNROLL
  for (int k = 0; k < N; ++k)
    offsets[k] += linear * layout.strides[k][0];
}

// The same in 32-bit unsigned arithmetic; only for layouts with index32.
template <int N>
AUTOTP_LAYOUT_FN void strided_offsets32(const StridedLayout<N>& layout, int64_t linear,
                                        int64_t (&offsets)[N]) {
  uint32_t rest = static_cast<uint32_t>(linear);
  uint32_t offset[N];
  AUTOTP_LAYOUT_UNROLL
  for (int k = 0; k < N; ++k)
    offset[k] = 0;
  AUTOTP_LAYOUT_UNROLL
  for (int d = kMaxDims - 1; d > 0; --d) {
    if (d < layout.ndim) {
      const auto size = static_cast<uint32_t>(layout.shape[d]);
      const uint32_t quotient = rest / size;
      const uint32_t coordinate = rest - quotient * size;
      rest = quotient;
      AUTOTP_LAYOUT_UNROLL
      for (int k = 0; k < N; ++k)
        offset[k] += coordinate * static_cast<uint32_t>(layout.strides[k][d]);
    }
  }
  AUTOTP_LAYOUT_UNROLL
  for (int k = 0; k < N; ++k)
    offsets[k] =
        static_cast<int64_t>(offset[k] + rest * static_cast<uint32_t>(layout.strides[k][0]));
}

// Element offsets of the row-major linear index `linear` for every operand.
template <int N>
AUTOTP_LAYOUT_FN void strided_offsets(const StridedLayout<N>& layout, int64_t linear,
                                      int64_t (&offsets)[N]) {
  if (layout.index32) {
    strided_offsets32(layout, linear, offsets);
  } else {
    strided_offsets64(layout, linear, offsets);
  }
}

}  // namespace autotp::kernels::cuda
