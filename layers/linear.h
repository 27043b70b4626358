// Linear layer: y = x @ weight^T + bias, weight [out_features, in_features] (PyTorch/HF layout).
// Forward is ops::linear; parameters live in the Module registry as "weight" and "bias".
#pragma once

#include <cstdint>
#include <string>

#include "core/module.h"

namespace autotp {

class Linear : public UnaryModule {
 public:
  // Weight starts at zero and bias at zero: initialize with init::init_weights_hf (or set
  // values) before training.
  Linear(int64_t in_features, int64_t out_features, bool bias = true, DType dtype = DType::F32,
         Device device = Device::cpu());

  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override;

  // x [..., in_features] -> [..., out_features]
  Tensor forward(const Tensor& x) override;
  // addend + forward(x) with the addend [..., out_features] as the GEMM's C input.
  Tensor forward_add(const Tensor& x, const Tensor& addend) override;

  // Registry lookups (never cached, so set_parameter/replacement are always seen).
  Tensor weight() const { return parameter("weight"); }  // [out_features, in_features]
  Tensor bias() const;                                   // [out_features], or undefined
  bool has_bias() const { return has_parameter("bias"); }
  int64_t in_features() const { return weight().size(1); }
  int64_t out_features() const { return weight().size(0); }
};

}  // namespace autotp
