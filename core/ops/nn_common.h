// Internal helpers shared by the neural-network op files (softmax, norms, embedding, rotary,
// attention): the CPU-only device check and dispatch over integer index dtypes.
#pragma once

#include <cstdint>

#include "core/dispatch.h"
#include "core/tensor.h"

namespace autotp::ops::detail {

// These ops have CPU kernels only so far; other devices get an error naming the op.
inline void check_cpu(const Tensor& t, const char* op) {
  AUTOTP_CHECK(t.device().is_cpu(), "{}: not yet available for {} tensors (CPU kernels only)", op,
               t.device().str());
}

// Calls fn(TypeTag<int32_t>{}) or fn(TypeTag<int64_t>{}) for an index tensor's dtype.
template <typename Fn>
decltype(auto) dispatch_index(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::I32: return fn(TypeTag<int32_t>{});
    case DType::I64: return fn(TypeTag<int64_t>{});
    default:
      AUTOTP_FAIL("{}: indices must be i64 or i32, got {}", op, dtype_name(dtype));
  }
}

}  // namespace autotp::ops::detail
