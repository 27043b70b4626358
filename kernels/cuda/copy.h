// CUDA strided copy with dtype conversion: the device side of views, contiguous(), to(dtype),
// copy_ and fill_ (same contract as kernels/cpu/copy.h).
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// dst[i] = convert(src[i]) over the `ndim`-dimensional index space `shape` (host arrays);
// strides are in elements (0 on broadcast dims of src). Dtypes are DTypeCode values, all six
// supported in any pair; conversions match the CPU's convert_value. Async on `stream`.
void strided_copy(void* dst, int dst_dtype, const int64_t* dst_strides, const void* src,
                  int src_dtype, const int64_t* src_strides, const int64_t* shape, int ndim,
                  cudaStream_t stream);

}  // namespace autotp::kernels::cuda
