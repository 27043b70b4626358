// CPU reference AdamW/Adam update (see adamw.h for the exact operation order).
#include "kernels/cpu/adamw.h"

#include <cmath>

namespace autotp::kernels::cpu {

template <typename T>
void adamw_step(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, int64_t n,
                const AdamWStep& step) {
  const bool decay = step.weight_decay != 0.0;
  const T decay_factor = static_cast<T>(1.0 - step.lr * step.weight_decay);
  const T weight_decay = static_cast<T>(step.weight_decay);
  const T lerp_weight = static_cast<T>(1.0 - step.beta1);
  const bool lerp_small = std::abs(lerp_weight) < static_cast<T>(0.5);
  const T beta2 = static_cast<T>(step.beta2);
  const T one_minus_beta2 = static_cast<T>(1.0 - step.beta2);
  const T neg_step_size = static_cast<T>(-step.step_size);
  const T bc2_sqrt = static_cast<T>(step.bias_correction2_sqrt);
  const T eps = static_cast<T>(step.eps);
  for (int64_t i = 0; i < n; ++i) {
    T p = param[i];
    T g = grad[i];
    if (decay) {
      if (step.decoupled_weight_decay) {
        p = p * decay_factor;
      } else {
        g = g + weight_decay * p;
      }
    }
    T m = exp_avg[i];
    const T diff = g - m;
    m = lerp_small ? m + lerp_weight * diff : g - diff * (static_cast<T>(1) - lerp_weight);
    T v = exp_avg_sq[i] * beta2;
    v = v + one_minus_beta2 * g * g;
    const T denom = std::sqrt(v) / bc2_sqrt + eps;
    p = p + neg_step_size * m / denom;
    param[i] = p;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
  }
}

template void adamw_step<float>(float*, float*, float*, const float*, int64_t, const AdamWStep&);
template void adamw_step<double>(double*, double*, double*, const double*, int64_t,
                                 const AdamWStep&);

}  // namespace autotp::kernels::cpu
