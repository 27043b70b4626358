// LayerNorm layer: weight/bias [dim] registration and the fused ops::layer_norm forward.
#include "layers/layer_norm.h"

#include "core/ops/nn.h"

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

Tensor LayerNorm::bias() const {
  return has_bias() ? parameter("bias") : Tensor();
}

Tensor LayerNorm::forward(const Tensor& x) {
  const Tensor w = weight();
  AUTOTP_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == w.size(0),
               "{}: input of shape {} does not end in dim {}", describe(),
               x.defined() ? shape_str(x.shape()) : std::string("(undefined)"), w.size(0));
  return ops::layer_norm(x, w, bias(), eps_);
}

}  // namespace autotp
