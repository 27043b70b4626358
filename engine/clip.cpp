// Global gradient norm and clipping.
#include "engine/clip.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "kernels/cpu/sum_of_squares.h"

namespace autotp {

double grad_sq_sum(const NamedTensors& params) {
  double total = 0.0;
  // Device gradients: the f64 sum of their sums, kept on the device and read back once.
  Tensor device_total;  // [] f64
  for (const auto& [name, p] : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    AUTOTP_CHECK(is_floating(g.dtype()), "grad norm: gradient of '{}' has dtype {}", name,
                 dtype_name(g.dtype()));
    if (g.device().is_cpu() && (g.dtype() == DType::F32 || g.dtype() == DType::F64)) {
      const Tensor c = g.contiguous();
      dispatch_float(c.dtype(), "grad norm", [&]<typename T>(TypeTag<T>) {
        total += kernels::cpu::sum_of_squares<T>(c.data<T>(), c.numel());
      });
    } else {
      // Other devices/dtypes: square in f32, reduce with the device's sum, add in double.
      NoGradGuard no_grad;
      const Tensor g32 = g.dtype() == DType::F64 ? g : g.to(DType::F32);
      const Tensor s = ops::sum(ops::mul(g32, g32)).to(DType::F64);  // []
      if (device_total.defined() && device_total.device() != s.device()) {
        total += device_total.item();  // gradients on several devices: one read per switch
        device_total = Tensor();
      }
      device_total = device_total.defined() ? ops::add(device_total, s) : s;
    }
  }
  if (device_total.defined()) total += device_total.item();
  return total;
}

double global_grad_norm(const NamedTensors& params) {
  return std::sqrt(grad_sq_sum(params));
}

double clip_coefficient(double total_norm, double max_norm) {
  const double coef = max_norm / (total_norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

void scale_grads(const NamedTensors& params, double coef) {
  NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    const Tensor g = p.grad();
    if (g.defined()) g.copy_(ops::mul(g, coef));
  }
}

void clip_grads_to_norm(const NamedTensors& params, double total_norm, double max_norm) {
  AUTOTP_CHECK(max_norm > 0.0, "gradient clipping: max_norm must be > 0, got {}", max_norm);
  if (!std::isfinite(total_norm)) return;  // the caller sees the norm and decides (skip, stop)
  const double coef = clip_coefficient(total_norm, max_norm);
  if (coef < 1.0) scale_grads(params, coef);
}

double clip_grad_norm(const NamedTensors& params, double max_norm) {
  const double norm = global_grad_norm(params);
  clip_grads_to_norm(params, norm, max_norm);
  return norm;
}

}  // namespace autotp
