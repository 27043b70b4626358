// Differentiable matrix products: matmul (batched, broadcasting batch dims) and linear.
#pragma once

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/gemm_algorithm_search.h"

namespace autotp::ops {

// a [..., M, K] @ b [..., K, N] -> [..., M, N]; batch dims broadcast (NumPy rules).
// A 2-D b [K, N] is shared by every batch of a. 1-D operands are not accepted.
Tensor matmul(const Tensor& a, const Tensor& b);

// PyTorch's linear: x [..., in] @ weight[out, in]^T (+ bias [out]) -> [..., out].
// `bias` may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// residual + linear(x, weight, bias) with the residual [..., out] as the GEMM's C input: added
// in the GEMM's f32 accumulator and rounded once with the product (a residual connection after
// an output projection, without a separate add over the activations). `bias` may be undefined.
Tensor linear_add(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& residual);

// GEMM autotune (`kernels.gemm_autotune`) for the GEMMs run on `device`: on a CUDA device each
// GEMM shape's first calls time cuBLASLt's heuristic candidates and later calls run the
// fastest (kernels/cuda/gemm.h, GemmContext::set_autotune: a setting of the process-wide
// per-device GEMM context: every later GEMM on the device, from any caller, sees it until it
// is set again; the trainer and `autotp bench` set it from their config). The CPU GEMM has one
// algorithm: a CPU device ignores it. A CUDA device in a build without CUDA is an error.
void set_gemm_autotune(const Device& device, bool on);
// What the autotune on `device` has found so far (all zeros on the CPU or when it is off).
kernels::GemmAutotuneReport gemm_autotune_report(const Device& device);

}  // namespace autotp::ops
