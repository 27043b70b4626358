// RMSNorm layer (HF LlamaRMSNorm): x * rsqrt(mean(x^2, -1) + eps) * weight over the last dim.
// Written with elementwise and reduction ops until the fused ops::rms_norm lands.
#pragma once

#include <cstdint>
#include <string>

#include "core/module.h"

namespace autotp {

class RMSNorm : public UnaryModule {
 public:
  // weight [dim] starts at one (as in HF).
  explicit RMSNorm(int64_t dim, double eps = 1e-6, DType dtype = DType::F32,
                   Device device = Device::cpu());

  std::string type_name() const override { return "RMSNorm"; }
  std::string extra_repr() const override;

  // x [..., dim] -> [..., dim]
  Tensor forward(const Tensor& x) override;

  Tensor weight() const { return parameter("weight"); }  // [dim]
  int64_t dim() const { return weight().size(0); }
  double eps() const { return eps_; }

 private:
  double eps_;
};

}  // namespace autotp
