// RMSNorm layer: weight [dim] registration and the fused ops::rms_norm forward.
#include "layers/rms_norm.h"

#include "core/ops/nn.h"

namespace autotp {

RMSNorm::RMSNorm(int64_t dim, double eps, DType dtype, Device device) : eps_(eps) {
  AUTOTP_CHECK(dim > 0, "RMSNorm: dim ({}) must be positive", dim);
  AUTOTP_CHECK(eps >= 0.0, "RMSNorm: eps ({}) must not be negative", eps);
  AUTOTP_CHECK(is_floating(dtype), "RMSNorm: dtype {} is not a floating type", dtype_name(dtype));
  register_parameter("weight", Tensor::ones({dim}, dtype, device));
}

std::string RMSNorm::extra_repr() const {
  return fmt::format("dim={}, eps={}", dim(), eps_);
}

Tensor RMSNorm::forward(const Tensor& x) {
  const Tensor w = weight();
  AUTOTP_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == w.size(0),
               "{}: input of shape {} does not end in dim {}", describe(),
               x.defined() ? shape_str(x.shape()) : std::string("(undefined)"), w.size(0));
  return ops::rms_norm(x, w, eps_);
}

}  // namespace autotp
