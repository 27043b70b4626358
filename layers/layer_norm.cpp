// LayerNorm layer: weight/bias [dim] registration and a forward composed of differentiable ops.
#include "layers/layer_norm.h"

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace autotp {

LayerNorm::LayerNorm(int64_t dim, double eps, bool bias, DType dtype, Device device) : eps_(eps) {
  AUTOTP_CHECK(dim > 0, "LayerNorm: dim ({}) must be positive", dim);
  AUTOTP_CHECK(eps >= 0.0, "LayerNorm: eps ({}) must not be negative", eps);
  AUTOTP_CHECK(is_floating(dtype), "LayerNorm: dtype {} is not a floating type", dtype_name(dtype));
  register_parameter("weight", Tensor::ones({dim}, dtype, device));
  if (bias) register_parameter("bias", Tensor::zeros({dim}, dtype, device));
}

std::string LayerNorm::extra_repr() const {
  return fmt::format("dim={}, eps={}, bias={}", dim(), eps_, has_bias());
}

Tensor LayerNorm::bias() const { return has_bias() ? parameter("bias") : Tensor(); }

Tensor LayerNorm::forward(const Tensor& x) {
  const Tensor w = weight();
  AUTOTP_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == w.size(0),
               "{}: input of shape {} does not end in dim {}", describe(),
               x.defined() ? shape_str(x.shape()) : std::string("(undefined)"), w.size(0));
  // centered [..., dim]; var [..., 1] (biased); y = centered * rsqrt(var + eps) * w (+ b)
  const Tensor centered = ops::sub(x, ops::mean(x, {-1}, true));
  const Tensor var = ops::mean(ops::mul(centered, centered), {-1}, true);
  const Tensor y = ops::mul(ops::mul(centered, ops::rsqrt(ops::add(var, eps_))), w);
  return has_bias() ? ops::add(y, bias()) : y;
}

}  // namespace autotp
