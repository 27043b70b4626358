// CUDA RMSNorm and LayerNorm over the last axis of a contiguous [rows, dim] view (the contract
// of kernels/cpu/norm.h): fused forward, fused dx, and a two-stage deterministic dweight/dbias.
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// Dtypes (DTypeCode): f32, f64, bf16, f16 for x, y, weight, bias, dy, dx, dweight, dbias.
// The row statistics (mean, rstd [rows]) and the workspace are in the compute type: f32 for
// f32 and the 16-bit floats, f64 for f64. Row sums are block reductions in a fixed order;
// dweight/dbias sum per-chunk partials (chunks of rows, fixed) and then the chunks in order,
// so every result is deterministic. weight/bias may be null (no scaling / no shift); a null
// dweight/dbias is not computed. All async on `stream`.

// y = x * rstd * weight, rstd[r] = 1 / sqrt(mean(x[r]^2) + eps). For 16-bit x (as Hugging
// Face's LlamaRMSNorm) the normalized x is rounded to x's dtype before the weight multiplies
// it; f32/f64 round once.
void rms_norm_forward(int dtype, void* y, void* rstd, const void* x, const void* weight,
                      int64_t rows, int64_t dim, double eps, cudaStream_t stream);

// With xhat = x * rstd and g = dy * weight: dx = rstd * (g - xhat * mean(g * xhat))
// (+ dx_addend), dweight[j] = sum_r dy[r, j] * xhat[r, j]. dx_addend (null, or [rows, dim] of
// x's dtype, possibly dx itself) is added in the compute type before dx is rounded: a gradient
// that reached x by another path, such as a residual connection, folded into this pass.
void rms_norm_backward(int dtype, void* dx, void* dweight, const void* x, const void* weight,
                       const void* rstd, const void* dy, const void* dx_addend, int64_t rows,
                       int64_t dim, void* workspace, cudaStream_t stream);

// y = (x - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + eps) (biased variance),
// computed in the compute type and rounded once (as torch.nn.LayerNorm).
void layer_norm_forward(int dtype, void* y, void* mean, void* rstd, const void* x,
                        const void* weight, const void* bias, int64_t rows, int64_t dim, double eps,
                        cudaStream_t stream);

// With xhat = (x - mean) * rstd and g = dy * weight:
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dweight = sum_r dy * xhat,
// dbias = sum_r dy.
void layer_norm_backward(int dtype, void* dx, void* dweight, void* dbias, const void* x,
                         const void* weight, const void* mean, const void* rstd, const void* dy,
                         int64_t rows, int64_t dim, void* workspace, cudaStream_t stream);

// Elements (of the compute type) of the workspace the backward kernels need: per-chunk
// partial sums of dweight and dbias, 2 * chunks * dim.
int64_t norm_backward_workspace_elems(int64_t rows, int64_t dim);

}  // namespace autotp::kernels::cuda
