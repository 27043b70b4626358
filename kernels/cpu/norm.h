// CPU reference RMSNorm and LayerNorm over the last axis of a contiguous [rows, dim] view:
// fused forward (saving per-row statistics) and backward (dx, dweight, dbias).
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// y = x * rstd * weight with rstd[r] = 1 / sqrt(mean(x[r]^2) + eps). weight [dim] may be
// null (no scaling). Row statistics accumulate in double; rstd [rows] is saved for backward.
template <typename T>
void rms_norm_forward(T* y, T* rstd, const T* x, const T* weight, int64_t rows, int64_t dim,
                      double eps);

// With g = dy * weight: dx = rstd * (g - x * rstd^2 * mean(g * x)) (+ dx_addend), and
// dweight[j] = sum_r dy[r, j] * x[r, j] * rstd[r] (rows summed in order: deterministic).
// dweight may be null (not wanted); weight may be null (treated as ones). dx_addend [rows,
// dim], when not null, is added to dx before the one rounding (a gradient that reached x by
// another path, such as a residual connection); it may be dx itself.
template <typename T>
void rms_norm_backward(T* dx, T* dweight, const T* x, const T* weight, const T* rstd, const T* dy,
                       const T* dx_addend, int64_t rows, int64_t dim);

// y = (x - mean) * rstd * weight + bias with rstd = 1 / sqrt(var + eps) (biased variance).
// weight and bias may be null. mean and rstd [rows] are saved for backward.
template <typename T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                        int64_t rows, int64_t dim, double eps);

// With xhat = (x - mean) * rstd and g = dy * weight:
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dweight = sum_r dy * xhat,
// dbias = sum_r dy (rows summed in order). dweight/dbias may be null; weight may be null.
template <typename T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* x, const T* weight, const T* mean,
                         const T* rstd, const T* dy, int64_t rows, int64_t dim);

}  // namespace autotp::kernels::cpu
