// CUDA AdamW over many parameters in one launch ("multi-tensor apply"): a table of tensors and
// their chunk offsets in device memory, one block per fixed-size chunk, kernels/cpu/adamw.h's
// math.
#pragma once

#include <cstdint>

#include "kernels/cpu/adamw.h"
#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// One parameter of a launch. param, exp_avg and exp_avg_sq are contiguous device arrays of
// `numel` elements of the launch's dtype, grad one of its gradient dtype; model_copy, when not
// null, receives the updated parameter converted to the launch's copy dtype (e.g. the bf16
// model weight beside its f32 master weight). `step` holds the parameter's own constants (its
// step count's bias corrections, its weight decay), in double, exactly as the CPU kernel
// receives them.
struct AdamWTensor {
  void* param;
  void* exp_avg;
  void* exp_avg_sq;
  const void* grad;
  void* model_copy;  // nullptr: no copy for this parameter
  int64_t numel;
  cpu::AdamWStep step;
};

// Elements per chunk: each chunk is one block of the launch. A block starts with a binary
// search for its tensor and a load of the tensor's entry (about ten dependent loads, the
// memory pipe idle meanwhile), so chunks are long enough for that to be a small part of a
// block's life: 32768 elements, 32 passes of 256 threads x 4 f32.
constexpr int64_t kAdamWChunkElements = 32768;
// `copy_dtype` value of a launch without model copies.
constexpr int kAdamWNoCopy = -1;

// Bytes of device workspace a launch over these `count` tensors (host array) needs: the
// tensor table plus count + 1 chunk offsets.
int64_t adamw_workspace_bytes(const AdamWTensor* tensors, int64_t count);

// For every tensor, every element, the update of kernels/cpu/adamw.h in the same operation
// order with correctly rounded operations (no contraction into FMAs), so an f32/f64 result
// equals the CPU kernel's bit for bit; then model_copy[i] = convert(param[i]).
// dtype: F32 or F64 (DTypeCode); grad_dtype: dtype, BF16 or F16 (a 16-bit gradient is widened
// exactly, so the update equals one from its f32 copy); copy_dtype: a floating DTypeCode or
// kAdamWNoCopy. grad_scale (> 0) multiplies every widened gradient element, rounded to dtype,
// before the update when it is not 1: g * scale as ops::mul(g, scale) computes it (a clipping
// coefficient folded into the update instead of a pass over the gradients).
// `tensors` is a host array; the tables are copied into `workspace` (device memory of at
// least adamw_workspace_bytes, 16-byte aligned) before one kernel launch on `stream`. The
// host array may be reused on return; the workspace must stay allocated until the kernel has
// run (stream order). Tensors with numel 0 are skipped.
void adamw_multi_tensor(int dtype, int grad_dtype, int copy_dtype, double grad_scale,
                        const AdamWTensor* tensors, int64_t count, void* workspace,
                        int64_t workspace_bytes, cudaStream_t stream);

}  // namespace autotp::kernels::cuda
