// Internal helpers shared by the neural-network op files (softmax, norms, embedding, rotary,
// attention): device checks, the dtype of saved row statistics, index-dtype dispatch.
#pragma once

#include <cstdint>

#include "core/dispatch.h"
#include "core/tensor.h"

namespace autotp::ops::detail {

// `b` must live on the device of `a`; the error names the op and both tensors.
inline void check_same_device(const Tensor& a, const Tensor& b, const char* op, const char* a_name,
                              const char* b_name) {
  AUTOTP_CHECK(a.device() == b.device(), "{}: {} (shape {}) is on {} but {} (shape {}) is on {}",
               op, a_name, shape_str(a.shape()), a.device().str(), b_name, shape_str(b.shape()),
               b.device().str());
}

// `index` (integer ids or targets) must live on the host or on the device of `data`: ops that
// read index values on the host take them from there without a copy back from the device.
inline void check_host_or_same_device(const Tensor& data, const Tensor& index, const char* op,
                                      const char* data_name, const char* index_name) {
  if (!index.device().is_cpu()) check_same_device(data, index, op, data_name, index_name);
}

// The error of a CUDA tensor reaching an op in a build without the CUDA backend (such
// tensors cannot be created there, so this is a safety net).
[[noreturn]] inline void fail_without_cuda(const char* op) {
  AUTOTP_FAIL("{}: CUDA tensors need a build with the CUDA backend", op);
}

// The dtype CUDA kernels keep row statistics and fused losses in (norm mean/rstd, attention
// logsumexp, cross-entropy loss): f32 for the 16-bit floats, the input dtype otherwise. The
// CPU kernels (f32/f64 only) keep them in the input dtype, which is the same thing there.
inline DType stats_dtype(DType dtype) {
  return dtype == DType::BF16 || dtype == DType::F16 ? DType::F32 : dtype;
}

// Calls fn(TypeTag<int32_t>{}) or fn(TypeTag<int64_t>{}) for an index tensor's dtype.
template <typename Fn>
decltype(auto) dispatch_index(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::I32:
      return fn(TypeTag<int32_t>{});
    case DType::I64:
      return fn(TypeTag<int64_t>{});
    default:
      AUTOTP_FAIL("{}: indices must be i64 or i32, got {}", op, dtype_name(dtype));
  }
}

}  // namespace autotp::ops::detail
