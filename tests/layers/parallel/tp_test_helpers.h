// Shared pieces of the tensor-parallel layer tests: small-integer tensors and Linears (so
// sums are exact and TP=N can be compared with TP=1 bit for bit), a two-layer MLP module
// built on the registry, and gathering a TP parameter's gradient.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/ops.h"
#include "layers/linear.h"
#include "layers/parallel/tensor_parallel_layer.h"
#include "tests/support/mpi_test_env.h"

namespace autotp::testing {

// Integers in [-2, 2] that vary with the element and the seed.
inline Tensor int_tensor(const Shape& shape, int seed, DType dtype = DType::F32) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = static_cast<double>((i * 7 + static_cast<size_t>(seed) * 13 + i / 3) % 5) - 2.0;
  }
  return Tensor::from_vector(v, shape, dtype);
}

inline std::shared_ptr<Linear> int_linear(int64_t in, int64_t out, bool bias, int seed,
                                          DType dtype = DType::F32) {
  auto lin = std::make_shared<Linear>(in, out, bias, dtype);
  lin->weight().copy_(int_tensor({out, in}, seed, dtype));
  if (bias) lin->bias().copy_(int_tensor({out}, seed + 100, dtype));
  return lin;
}

// y = (down(act(up(x)))) * scale, children looked up in the registry (replaceable).
class Mlp : public UnaryModule {
 public:
  Mlp(int64_t in, int64_t hidden, int64_t out, bool bias, DType dtype = DType::F32) {
    register_module("up_proj", int_linear(in, hidden, bias, 1, dtype));
    register_module("down_proj", int_linear(hidden, out, bias, 2, dtype));
    register_parameter("scale", int_tensor({out}, 3, dtype));
  }
  std::string type_name() const override { return "Mlp"; }
  Tensor forward(const Tensor& x) override {
    const Tensor h = ops::relu(child_as<UnaryModule>("up_proj").forward(x));
    return ops::mul(child_as<UnaryModule>("down_proj").forward(h), parameter("scale"));
  }
};

// The full gradient of TP parameter `name` of `layer`, gathered over its group.
inline Tensor gathered_grad(TensorParallelLayer& layer, const std::string& name) {
  const ParamSplitInfo& info = layer.split_info(name);
  const Tensor g = layer.parameter(name).grad();
  if (!info.tensor_model_parallel) return g;
  return gather_full(*layer.tp_group(), g, info.plan).reshape(info.original_shape);
}

// Same shape and bit-identical values, and a reference that is not all zeros.
inline ::testing::AssertionResult identical(const Tensor& actual, const Tensor& expected) {
  if (!actual.defined() || !expected.defined()) {
    return ::testing::AssertionFailure() << "undefined tensor";
  }
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure()
           << "shape " << shape_str(actual.shape()) << " vs " << shape_str(expected.shape());
  }
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  bool all_zero = true;
  for (double v : e)
    all_zero = all_zero && v == 0.0;
  if (all_zero && !e.empty()) return ::testing::AssertionFailure() << "the reference is all zeros";
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != e[i]) {
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << e[i];
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace autotp::testing

#define EXPECT_IDENTICAL(actual, expected) \
  EXPECT_TRUE(::autotp::testing::identical((actual), (expected))) << #actual
