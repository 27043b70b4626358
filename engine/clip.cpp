// Global gradient norm and clipping.
#include "engine/clip.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace autotp {

double grad_sq_sum(const NamedTensors& params) {
  // The gradients of each device (in order of first appearance) in one sum_of_squares: on
  // CUDA one launch and one read, however many parameters.
  std::vector<std::pair<Device, std::vector<Tensor>>> by_device;
  for (const auto& [name, p] : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    AUTOTP_CHECK(is_floating(g.dtype()), "grad norm: gradient of '{}' has dtype {}", name,
                 dtype_name(g.dtype()));
    auto it = std::find_if(by_device.begin(), by_device.end(),
                           [&](const auto& entry) { return entry.first == g.device(); });
    if (it == by_device.end()) it = by_device.insert(by_device.end(), {g.device(), {}});
    it->second.push_back(g);
  }
  double total = 0.0;
  for (const auto& [device, grads] : by_device)
    total += ops::sum_of_squares(grads).item();
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
