// The op conformance table: every differentiable op with its shapes, in one place. On the CPU
// each row is gradient-checked (full Jacobian, f64 central differences); where a GPU exists each
// row also runs in f32 on CUDA and must match the CPU forward output and input gradients.
// An op without a row here is an op without conformance coverage.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_f64;

// One input of a row: a float tensor (differentiated) or an index tensor (i64 in [0, range)).
struct InputSpec {
  Shape shape;
  int64_t index_range = 0;  // > 0: an i64 index tensor
  double lo = -1.0, hi = 1.0;
};

struct OpCase {
  std::string name;
  std::vector<InputSpec> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
};

InputSpec f(Shape shape) {
  return {std::move(shape)};
}
InputSpec positive(Shape shape) {
  return {std::move(shape), 0, 0.5, 2.0};
}
InputSpec ids(Shape shape, int64_t range) {
  return {std::move(shape), range};
}

std::vector<OpCase> conformance_table() {
  using V = const std::vector<Tensor>&;
  return {
      {"add (broadcast)", {f({3, 1, 5}), f({4, 1})}, [](V x) { return ops::add(x[0], x[1]); }},
      {"sub (broadcast)", {f({2, 5}), f({5})}, [](V x) { return ops::sub(x[0], x[1]); }},
      {"mul (broadcast)", {f({3, 4}), f({3, 1})}, [](V x) { return ops::mul(x[0], x[1]); }},
      {"div (broadcast)", {f({3, 4}), positive({4})}, [](V x) { return ops::div(x[0], x[1]); }},
      {"add scalar", {f({7})}, [](V x) { return ops::add(x[0], 0.5); }},
      {"mul scalar", {f({7})}, [](V x) { return ops::mul(x[0], -1.5); }},
      {"div scalar", {f({7})}, [](V x) { return ops::div(x[0], 3.0); }},
      {"rsub", {f({7})}, [](V x) { return ops::rsub(2.0, x[0]); }},
      {"rdiv", {positive({7})}, [](V x) { return ops::rdiv(2.0, x[0]); }},
      {"neg", {f({3, 5})}, [](V x) { return ops::neg(x[0]); }},
      {"exp", {f({3, 5})}, [](V x) { return ops::exp(x[0]); }},
      {"log", {positive({3, 5})}, [](V x) { return ops::log(x[0]); }},
      {"sqrt", {positive({3, 5})}, [](V x) { return ops::sqrt(x[0]); }},
      {"rsqrt", {positive({3, 5})}, [](V x) { return ops::rsqrt(x[0]); }},
      {"pow", {positive({3, 5})}, [](V x) { return ops::pow(x[0], 2.5); }},
      {"tanh", {f({3, 5})}, [](V x) { return ops::tanh(x[0]); }},
      {"sigmoid", {f({3, 5})}, [](V x) { return ops::sigmoid(x[0]); }},
      {"silu", {f({3, 5})}, [](V x) { return ops::silu(x[0]); }},
      {"gelu erf", {f({3, 5})}, [](V x) { return ops::gelu(x[0]); }},
      {"gelu tanh", {f({3, 5})}, [](V x) { return ops::gelu(x[0], ops::GeluApproximation::Tanh); }},
      {"swiglu", {f({2, 3, 7}), f({2, 3, 7})}, [](V x) { return ops::swiglu(x[0], x[1]); }},
      {"swiglu of views",  // a transposed gate and a narrowed up, both [3, 5]
       {f({5, 3}), f({3, 7})},
       [](V x) { return ops::swiglu(x[0].transpose(0, 1), x[1].narrow(1, 1, 5)); }},
      {"sum dims",
       {f({3, 4, 5})},
       [](V x) {
         return ops::sum(x[0], {0, 2});
       }},
      {"mean keepdim", {f({3, 4, 5})}, [](V x) { return ops::mean(x[0], {-1}, true); }},
      {"max dim", {f({3, 7})}, [](V x) { return ops::max(x[0], 1); }},
      {"matmul batched", {f({2, 3, 5}), f({2, 5, 4})}, [](V x) { return ops::matmul(x[0], x[1]); }},
      {"matmul broadcast b",
       {f({2, 3, 5}), f({5, 7})},
       [](V x) { return ops::matmul(x[0], x[1]); }},
      {"matmul transposed view",
       {f({5, 3}), f({4, 5})},
       [](V x) { return ops::matmul(x[0].transpose(0, 1), x[1].transpose(0, 1)); }},
      {"linear + bias",
       {f({2, 3, 5}), f({7, 5}), f({7})},
       [](V x) { return ops::linear(x[0], x[1], x[2]); }},
      {"softmax", {f({3, 7})}, [](V x) { return ops::softmax(x[0], -1); }},
      {"log_softmax dim 0", {f({5, 3})}, [](V x) { return ops::log_softmax(x[0], 0); }},
      {"cross_entropy",
       {f({5, 7}), ids({5}, 7)},
       [](V x) { return ops::cross_entropy(x[0], x[1]); }},
      {"embedding", {f({7, 3}), ids({2, 5}, 7)}, [](V x) { return ops::embedding(x[0], x[1]); }},
      {"rms_norm", {f({3, 5}), f({5})}, [](V x) { return ops::rms_norm(x[0], x[1], 1e-5); }},
      {"layer_norm",
       {f({3, 5}), f({5}), f({5})},
       [](V x) { return ops::layer_norm(x[0], x[1], x[2], 1e-5); }},
      {"apply_rotary",
       {f({1, 2, 3, 4})},
       [](V x) {
         const auto [cos, sin] = ops::rotary_tables(3, 4, 10000.0, x[0].dtype(), x[0].device());
         return ops::apply_rotary(x[0], cos, sin);
       }},
      {"causal_mask", {f({2, 3, 3})}, [](V x) { return ops::causal_mask(x[0], 0.0); }},
      {"attention causal GQA",
       {f({1, 4, 3, 4}), f({1, 2, 3, 4}), f({1, 2, 3, 4})},
       [](V x) { return ops::scaled_dot_product_attention(x[0], x[1], x[2], true); }},
      {"attention non-causal",
       {f({1, 2, 3, 4}), f({1, 2, 3, 4}), f({1, 2, 3, 4})},
       [](V x) { return ops::scaled_dot_product_attention(x[0], x[1], x[2], false); }},
      {"cat",
       {f({2, 3}), f({2, 4})},
       [](V x) {
         return ops::cat({x[0], x[1]}, 1);
       }},
      {"chunk", {f({7, 3})}, [](V x) { return ops::chunk(x[0], 3, 0)[1]; }},
      {"split sizes",
       {f({3, 7})},
       [](V x) {
         return ops::split(x[0], {2, 5}, 1)[1];
       }},
      {"index_select",
       {f({5, 3}), ids({4}, 5)},
       [](V x) { return ops::index_select(x[0], 0, x[1]); }},
      {"views: permute/narrow/expand/reshape",
       {f({2, 3, 1})},
       [](V x) {
         return x[0].permute({2, 0, 1}).narrow(2, 1, 2).expand({4, 2, 2}).reshape({8, 2});
       }},
      {"to(f64) and back",  // exact both ways; on CUDA f32 rows it casts f32 -> f64 -> f32
       {f({3, 2})},
       [](V x) { return ops::mul(x[0].to(DType::F64).to(x[0].dtype()), 2.0); }},
  };
}

// Inputs of a row as `dtype` on `device`: floats from fixed seeds (grad on), indices as i64.
std::vector<Tensor> make_inputs(const OpCase& row, DType dtype, Device device) {
  std::vector<Tensor> inputs;
  uint64_t seed = 100;
  for (const InputSpec& spec : row.inputs) {
    if (spec.index_range > 0) {
      const Tensor u =
          random_f64(spec.shape, seed++, false, 0.0, static_cast<double>(spec.index_range));
      inputs.push_back(u.to(DType::I64).to(device));
    } else {
      Tensor t = random_f64(spec.shape, seed++, false, spec.lo, spec.hi).to(dtype).to(device);
      t.set_requires_grad(true);
      inputs.push_back(t);
    }
  }
  return inputs;
}

class OpConformance : public ::testing::TestWithParam<size_t> {};

TEST_P(OpConformance, GradientMatchesFiniteDifferencesOnCpu) {
  const OpCase row = conformance_table()[GetParam()];
  SCOPED_TRACE(row.name);
  EXPECT_GRADCHECK(row.fn, make_inputs(row, DType::F64, Device::cpu()));
}

// f32 forward and gradients on CUDA against the CPU f32 reference. The sizes here sum at most
// a few dozen terms, so the f32 tolerance is 64 ulps of accumulated rounding: atol 1e-5,
// rtol 1e-5 (relative error per element bounded by K * eps32 with K <= 64, eps32 = 1.2e-7).
TEST_P(OpConformance, CudaMatchesTheCpuReference_CUDA) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CPU rows still run";
  const OpCase row = conformance_table()[GetParam()];
  SCOPED_TRACE(row.name);
  const testing::Tolerance tol{1e-5, 1e-5};
  const std::vector<Tensor> cpu_in = make_inputs(row, DType::F32, Device::cpu());
  const std::vector<Tensor> gpu_in = make_inputs(row, DType::F32, Device::cuda());
  const Tensor cpu_out = row.fn(cpu_in);
  const Tensor gpu_out = row.fn(gpu_in);
  ASSERT_EQ(gpu_out.device(), Device::cuda());
  EXPECT_TRUE(testing::all_close(gpu_out.to(Device::cpu()), cpu_out, tol, row.name + " output"));
  // Backward with the same non-uniform upstream gradient on both devices.
  const Tensor upstream = random_f64(cpu_out.shape(), 7, false).to(DType::F32);
  cpu_out.backward(upstream);
  gpu_out.backward(upstream.to(Device::cuda()));
  for (size_t i = 0; i < cpu_in.size(); ++i) {
    if (!cpu_in[i].requires_grad()) continue;
    EXPECT_TRUE(testing::all_close(gpu_in[i].grad().to(Device::cpu()), cpu_in[i].grad(), tol,
                                   row.name + " gradient of input " + std::to_string(i)));
  }
}

std::string row_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string name = conformance_table()[info.param].name;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return std::to_string(info.param) + "_" + name;
}

INSTANTIATE_TEST_SUITE_P(EveryOp, OpConformance,
                         ::testing::Range<size_t>(0, conformance_table().size()), row_name);

}  // namespace
}  // namespace autotp
