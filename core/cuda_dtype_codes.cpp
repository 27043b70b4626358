// Compile-time proof that the dtype codes the CUDA kernels take (kernels/cuda/dtype_codes.h)
// equal autotp::DType's values: core passes static_cast<int>(dtype) to every CUDA kernel.
#include "core/dtype.h"
#include "kernels/cuda/dtype_codes.h"

namespace autotp {

namespace {
using kernels::cuda::DTypeCode;
constexpr bool same_code(DType dtype, DTypeCode code) {
  return static_cast<int>(dtype) == static_cast<int>(code);
}
}  // namespace

static_assert(same_code(DType::F32, DTypeCode::F32) && same_code(DType::F64, DTypeCode::F64) &&
                  same_code(DType::BF16, DTypeCode::BF16) &&
                  same_code(DType::F16, DTypeCode::F16) && same_code(DType::I32, DTypeCode::I32) &&
                  same_code(DType::I64, DTypeCode::I64),
              "kernels::cuda::DTypeCode must mirror autotp::DType");

}  // namespace autotp
