// RMSNorm layer: weight [dim] registration and a forward composed of differentiable ops.
#include "layers/rms_norm.h"

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace autotp {

RMSNorm::RMSNorm(int64_t dim, double eps, DType dtype, Device device) : eps_(eps) {
  AUTOTP_CHECK(dim > 0, "RMSNorm: dim ({}) must be positive", dim);
  AUTOTP_CHECK(eps >= 0.0, "RMSNorm: eps ({}) must not be negative", eps);
  AUTOTP_CHECK(is_floating(dtype), "RMSNorm: dtype {} is not a floating type", dtype_name(dtype));
  register_parameter("weight", Tensor::ones({dim}, dtype, device));
}

std::string RMSNorm::extra_repr() const { return fmt::format("dim={}, eps={}", dim(), eps_); }

Tensor RMSNorm::forward(const Tensor& x) {
  const Tensor w = weight();
  AUTOTP_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == w.size(0),
               "{}: input of shape {} does not end in dim {}", describe(),
               x.defined() ? shape_str(x.shape()) : std::string("(undefined)"), w.size(0));
  // inv_rms [..., 1] = rsqrt(mean(x^2, -1) + eps)
  const Tensor inv_rms = ops::rsqrt(ops::add(ops::mean(ops::mul(x, x), {-1}, true), eps_));
  return ops::mul(ops::mul(x, inv_rms), w);
}

}  // namespace autotp
