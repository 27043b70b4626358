// CPU reference AdamW/Adam update: one fused pass over a parameter, its gradient and its two
// moment buffers, with the operation order of PyTorch's single-tensor torch.optim.AdamW.
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// Step constants, computed in double by the caller (engine/optimizer.cpp) and rounded to the
// element type inside the kernel, as PyTorch rounds its Python-float scalars.
struct AdamWStep {
  double lr;
  double beta1;
  double beta2;
  double eps;
  double weight_decay;
  bool decoupled_weight_decay;   // true: AdamW (p *= 1 - lr*wd); false: Adam (g += wd*p)
  double step_size;              // lr / (1 - beta1^t), or lr without bias correction
  double bias_correction2_sqrt;  // sqrt(1 - beta2^t), or 1 without bias correction
};

// For i in [0, n), in this order (T = float or double):
//   decoupled and wd != 0:  p = p * T(1 - lr*wd)
//   coupled and wd != 0:    g' = g + T(wd) * p            (else g' = g)
//   m = lerp(m, g', T(1 - beta1))     (m + w*(g'-m) for w < 0.5, else g' - (g'-m)*(1-w))
//   v = v * T(beta2);  v = v + T(1 - beta2) * g' * g'
//   p = p + T(-step_size) * m / (sqrt(v) / T(bias_correction2_sqrt) + T(eps))
// `grad` is read only; param, exp_avg and exp_avg_sq are updated in place.
template <typename T>
void adamw_step(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, int64_t n,
                const AdamWStep& step);

}  // namespace autotp::kernels::cpu
