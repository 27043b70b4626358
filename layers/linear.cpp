// Linear layer: registration of weight [out, in] and optional bias [out], forward via ops::linear.
#include "layers/linear.h"

#include "core/ops/linalg.h"

namespace autotp {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, DType dtype, Device device) {
  AUTOTP_CHECK(in_features > 0 && out_features > 0,
               "Linear: in_features ({}) and out_features ({}) must be positive", in_features,
               out_features);
  AUTOTP_CHECK(is_floating(dtype), "Linear: dtype {} is not a floating type", dtype_name(dtype));
  register_parameter("weight", Tensor::zeros({out_features, in_features}, dtype, device));
  if (bias) register_parameter("bias", Tensor::zeros({out_features}, dtype, device));
}

std::string Linear::extra_repr() const {
  return fmt::format("in_features={}, out_features={}, bias={}", in_features(), out_features(),
                     has_bias());
}

Tensor Linear::bias() const {
  return has_bias() ? parameter("bias") : Tensor();
}

namespace {
void check_input(const Module& m, const Tensor& x, const Tensor& w) {
  AUTOTP_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == w.size(1),
               "{}: input of shape {} does not end in in_features {}", m.describe(),
               x.defined() ? shape_str(x.shape()) : std::string("(undefined)"), w.size(1));
}
}  // namespace

Tensor Linear::forward(const Tensor& x) {
  const Tensor w = weight();
  check_input(*this, x, w);
  return ops::linear(x, w, bias());
}

Tensor Linear::forward_add(const Tensor& x, const Tensor& addend) {
  const Tensor w = weight();
  check_input(*this, x, w);
  return ops::linear_add(x, w, bias(), addend);
}

}  // namespace autotp
