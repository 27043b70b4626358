// LayerNorm layer: (x - mean) * rsqrt(var + eps) * weight + bias over the last dim (biased
// variance, as in PyTorch). Written with elementwise and reduction ops until ops::layer_norm lands.
#pragma once

#include <cstdint>
#include <string>

#include "core/module.h"

namespace autotp {

class LayerNorm : public UnaryModule {
 public:
  // weight [dim] starts at one and bias [dim] (when `bias`) at zero.
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool bias = true, DType dtype = DType::F32,
                     Device device = Device::cpu());

  std::string type_name() const override { return "LayerNorm"; }
  std::string extra_repr() const override;

  // x [..., dim] -> [..., dim]
  Tensor forward(const Tensor& x) override;

  Tensor weight() const { return parameter("weight"); }  // [dim]
  Tensor bias() const;                                   // [dim], or undefined
  bool has_bias() const { return has_parameter("bias"); }
  int64_t dim() const { return weight().size(0); }
  double eps() const { return eps_; }

 private:
  double eps_;
};

}  // namespace autotp
