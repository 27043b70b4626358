// CUDA ops against the CPU reference: every op of core/ops/elementwise.h (fused swiglu included)
// and core/ops/reduce.h forward and backward in f32 and bf16, copies and conversions, random
// fills and the caching allocator. Each test skips, printing why, where no CUDA device is visible.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/cuda_allocator.h"
#include "core/ops.h"
#include "kernels/cuda/cuda_error.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using autotp::testing::all_close;
using autotp::testing::Tolerance;
using autotp::testing::tolerance_for;

const Device kCpu = Device::cpu();
const Device kCuda = Device::cuda(0);

// Element counts for the elementwise tests: odd, and none a multiple of a block size.
// 4104 and 1000000 are multiples of every vector width (the 16-byte kernels); 7, 33 and
// 1000003 are not (scalar kernels, or a scalar tail).
const std::vector<int64_t> kSizes = {1, 7, 33, 4104, 1000003};

std::string shape_name(const Shape& shape) {
  return shape_str(shape);
}

// ---- inputs (CPU f32) --------------------------------------------------------

// Uniform in [lo, hi), from a fixed Philox seed.
Tensor uniform_cpu(const Shape& shape, uint64_t seed, double lo, double hi) {
  Tensor t = Tensor::empty(shape, DType::F32);
  fill_uniform(t, seed, 0, lo, hi);
  return t;
}

// Integers in [lo, hi]: sums and products of a few of these are exact in f32 (and in bf16
// below 256), so the CUDA results can be held to the CPU's without accumulation-order slack.
Tensor integers_cpu(const Shape& shape, uint64_t seed, int lo, int hi) {
  std::vector<double> v = uniform_cpu(shape, seed, 0.0, 1.0).to_vector();
  for (double& x : v)
    x = lo + std::floor(x * (hi - lo + 1));
  return Tensor::from_vector(v, shape);
}

// Divisors from {-4, -2, -1, 1, 2, 4}: quotients of integers by these are exact.
Tensor power_of_two_divisors_cpu(const Shape& shape, uint64_t seed) {
  static const double kDivisors[] = {-4, -2, -1, 1, 2, 4};
  std::vector<double> v = uniform_cpu(shape, seed, 0.0, 1.0).to_vector();
  for (double& x : v)
    x = kDivisors[static_cast<int>(x * 6)];
  return Tensor::from_vector(v, shape);
}

// The f32 values a bf16 tensor holds: the inputs of the bf16 reference.
Tensor round_to_bf16(const Tensor& x) {
  return x.to(DType::BF16).to(DType::F32);
}

// ---- comparison --------------------------------------------------------------

// Same shape and the same value in every element (NaN equals NaN); names the first mismatch.
::testing::AssertionResult identical(const Tensor& actual, const Tensor& expected,
                                     const std::string& what) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure() << what << ": shape " << shape_str(actual.shape())
                                         << " != expected " << shape_str(expected.shape());
  }
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  for (size_t i = 0; i < a.size(); ++i) {
    const bool same = std::isnan(a[i]) ? std::isnan(e[i]) : a[i] == e[i];
    if (!same) {
      return ::testing::AssertionFailure()
             << what << ": element " << i << " is " << fmt::format("{:.17g}", a[i]) << ", expected "
             << fmt::format("{:.17g}", e[i]) << " (shape " << shape_str(actual.shape()) << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

// f32 CPU copy of a tensor from any device and dtype.
Tensor host_f32(const Tensor& t) {
  return t.detach().to(kCpu).to(DType::F32);
}

// ---- running one graph on a device --------------------------------------------

struct Outcome {
  Tensor out;                 // f32, CPU
  std::vector<Tensor> grads;  // per input, f32, CPU
};

using GraphFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Builds leaves from `inputs` (CPU f32 values) in `dtype` on `device`, runs fn, backpropagates
// `grad_out` (CPU f32 values, converted likewise) and returns the output and leaf gradients.
Outcome run_graph(const GraphFn& fn, const std::vector<Tensor>& inputs, const Tensor& grad_out,
                  DType dtype, Device device) {
  std::vector<Tensor> leaves;
  for (const Tensor& in : inputs) {
    Tensor leaf = in.to(dtype).to(device).detach();
    leaf.set_requires_grad(true);
    leaves.push_back(leaf);
  }
  const Tensor out = fn(leaves);
  EXPECT_EQ(out.device(), device);
  EXPECT_EQ(out.dtype(), dtype);
  out.backward(grad_out.to(dtype).to(device));
  Outcome outcome{host_f32(out), {}};
  for (const Tensor& leaf : leaves) {
    EXPECT_TRUE(leaf.grad().defined());
    outcome.grads.push_back(host_f32(leaf.grad()));
  }
  return outcome;
}

// Runs the graph in f32 on the CPU and on CUDA and compares output and gradients with the f32
// tolerance; with `bf16`, also runs it in bf16 on CUDA against the CPU f32 run on the
// bf16-rounded inputs, with the bf16 tolerance (gradients only when `bf16_grads`).
void expect_cuda_matches_cpu(const std::string& what, const GraphFn& fn,
                             const std::vector<Tensor>& inputs, const Tensor& grad_out, bool bf16,
                             bool bf16_grads) {
  const Outcome cpu = run_graph(fn, inputs, grad_out, DType::F32, kCpu);
  const Outcome gpu = run_graph(fn, inputs, grad_out, DType::F32, kCuda);
  const Tolerance f32 = tolerance_for(DType::F32);
  EXPECT_TRUE(all_close(gpu.out, cpu.out, f32, what + " forward f32"));
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_TRUE(all_close(gpu.grads[i], cpu.grads[i], f32,
                          what + " grad of input " + std::to_string(i) + " f32"));
  }
  if (!bf16) return;
  std::vector<Tensor> rounded;
  for (const Tensor& in : inputs)
    rounded.push_back(round_to_bf16(in));
  const Outcome reference = run_graph(fn, rounded, round_to_bf16(grad_out), DType::F32, kCpu);
  const Outcome gpu16 = run_graph(fn, inputs, grad_out, DType::BF16, kCuda);
  const Tolerance tol16 = tolerance_for(DType::BF16);
  EXPECT_TRUE(all_close(gpu16.out, reference.out, tol16, what + " forward bf16"));
  if (!bf16_grads) return;
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_TRUE(all_close(gpu16.grads[i], reference.grads[i], tol16,
                          what + " grad of input " + std::to_string(i) + " bf16"));
  }
}

// ---- elementwise: unary --------------------------------------------------------

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> fn;
  double lo, hi;  // input range
  // Whether the bf16 gradient is held to the bf16 tolerance: its chain of bf16 roundings
  // (each up to 2^-8 relative) must stay within 3 (3 * 2^-8 < 1.6e-2) with no cancellation.
  // rsqrt's backward cubes a rounded output (5 roundings), tanh's and sigmoid's subtract a
  // rounded output from 1 (cancellation); their bf16 forward and the ops their backward is
  // made of are tested here, and their gradients in f32.
  bool bf16_grads;
};

std::vector<UnaryCase> unary_cases() {
  using ops::GeluApproximation;
  return {
      {"neg", [](const Tensor& x) { return ops::neg(x); }, -2, 2, true},
      {"exp", [](const Tensor& x) { return ops::exp(x); }, -2, 2, true},
      {"log", [](const Tensor& x) { return ops::log(x); }, 0.5, 2, true},
      {"sqrt", [](const Tensor& x) { return ops::sqrt(x); }, 0.5, 2, true},
      {"rsqrt", [](const Tensor& x) { return ops::rsqrt(x); }, 0.5, 2, false},
      {"pow 3", [](const Tensor& x) { return ops::pow(x, 3.0); }, 0.5, 2, true},
      {"pow 2.5", [](const Tensor& x) { return ops::pow(x, 2.5); }, 0.5, 2, true},
      {"tanh", [](const Tensor& x) { return ops::tanh(x); }, -2, 2, false},
      {"sigmoid", [](const Tensor& x) { return ops::sigmoid(x); }, -2, 2, false},
      {"relu", [](const Tensor& x) { return ops::relu(x); }, -2, 2, true},
      {"silu", [](const Tensor& x) { return ops::silu(x); }, -2, 2, true},
      {"gelu erf", [](const Tensor& x) { return ops::gelu(x, GeluApproximation::Erf); }, -2, 2,
       true},
      {"gelu tanh", [](const Tensor& x) { return ops::gelu(x, GeluApproximation::Tanh); }, -2, 2,
       true},
      {"add scalar", [](const Tensor& x) { return x + 1.25; }, -2, 2, true},
      {"sub scalar", [](const Tensor& x) { return x - 0.75; }, -2, 2, true},
      {"mul scalar", [](const Tensor& x) { return x * -1.5; }, -2, 2, true},
      {"div scalar", [](const Tensor& x) { return x / 3.0; }, -2, 2, true},
      {"rsub", [](const Tensor& x) { return 2.0 - x; }, -2, 2, true},
      {"rdiv", [](const Tensor& x) { return 1.5 / x; }, 0.5, 2, true},
  };
}

TEST(CudaElementwise, UnaryOpsMatchTheCpuForwardAndBackward_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  uint64_t seed = 100;
  for (const UnaryCase& c : unary_cases()) {
    for (int64_t n : kSizes) {
      const Tensor x = uniform_cpu({n}, ++seed, c.lo, c.hi);
      const Tensor gy = uniform_cpu({n}, ++seed, 0.5, 1.5);
      expect_cuda_matches_cpu(
          std::string(c.name) + " n=" + std::to_string(n),
          [&](const std::vector<Tensor>& in) { return c.fn(in[0]); }, {x}, gy,
          /*bf16=*/true, c.bf16_grads);
    }
  }
}

TEST(CudaElementwise, UnaryOpsReadNonContiguousViews_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const Tensor x = uniform_cpu({7, 33}, 7, 0.5, 2.0);
  const Tensor gy = uniform_cpu({33, 7}, 8, -1.0, 1.0);
  for (const UnaryCase& c : unary_cases()) {
    expect_cuda_matches_cpu(
        std::string(c.name) + " of a transpose",
        [&](const std::vector<Tensor>& in) { return c.fn(in[0].transpose(0, 1)); }, {x}, gy,
        /*bf16=*/false, false);
  }
}

TEST(CudaElementwise, UnaryOpsRunInF16WithinOneRounding_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  // f16 computes in f32 and rounds once on store: within the f16 tolerance of the CPU f32
  // result on the f16-rounded inputs.
  uint64_t seed = 150;
  for (const UnaryCase& c : unary_cases()) {
    for (int64_t n : {int64_t(33), int64_t(1000003)}) {
      const Tensor x = uniform_cpu({n}, ++seed, c.lo, c.hi).to(DType::F16).to(DType::F32);
      const Tensor expected = c.fn(x);
      const Tensor actual = host_f32(c.fn(x.to(DType::F16).to(kCuda)));
      EXPECT_TRUE(all_close(actual, expected, tolerance_for(DType::F16),
                            std::string(c.name) + " f16 n=" + std::to_string(n)));
    }
  }
}

// ---- elementwise: binary -------------------------------------------------------

struct BinaryCase {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> fn;
};

const std::vector<BinaryCase> kBinaryCases = {
    {"add", [](const Tensor& a, const Tensor& b) { return a + b; }},
    {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }},
    {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }},
    {"div", [](const Tensor& a, const Tensor& b) { return a / b; }},
};

TEST(CudaElementwise, BroadcastBinaryOpsMatchTheCpuForwardAndBackward_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  // Integer operands (divisors powers of two): the broadcast gradients are sums of exact terms,
  // so f32 on CUDA must equal the CPU and bf16 may differ by its one final rounding.
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{7}, {7}},        {{33, 7}, {7}},         {{3, 1, 5}, {4, 1}},
      {{33, 1}, {1, 7}}, {{}, {5, 3}},           {{1}, {1000003}},
      {{1000003}, {1}},  {{1000003}, {1000003}}, {{2, 1, 3, 1, 5}, {1, 4, 1, 6, 1}},
  };
  uint64_t seed = 200;
  for (const BinaryCase& c : kBinaryCases) {
    for (const auto& [sa, sb] : shapes) {
      const Tensor a = integers_cpu(sa, ++seed, -3, 3);
      const Tensor b = std::string(c.name) == "div" ? power_of_two_divisors_cpu(sb, ++seed)
                                                    : integers_cpu(sb, ++seed, -3, 3);
      const Tensor gy = integers_cpu(broadcast_shapes(sa, sb), ++seed, -3, 3);
      expect_cuda_matches_cpu(
          std::string(c.name) + " " + shape_name(sa) + " with " + shape_name(sb),
          [&](const std::vector<Tensor>& in) { return c.fn(in[0], in[1]); }, {a, b}, gy,
          /*bf16=*/true, /*bf16_grads=*/true);
    }
  }
}

TEST(CudaElementwise, BinaryOpsOnRandomValuesMatchTheCpu_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  // Same shapes, so no gradient is a sum: at most 3 bf16 roundings per gradient (div's).
  uint64_t seed = 300;
  for (const BinaryCase& c : kBinaryCases) {
    for (int64_t n : kSizes) {
      const Tensor a = uniform_cpu({n}, ++seed, -2.0, 2.0);
      const Tensor b = uniform_cpu({n}, ++seed, 0.5, 2.0);
      const Tensor gy = uniform_cpu({n}, ++seed, -1.0, 1.0);
      expect_cuda_matches_cpu(
          std::string(c.name) + " n=" + std::to_string(n),
          [&](const std::vector<Tensor>& in) { return c.fn(in[0], in[1]); }, {a, b}, gy,
          /*bf16=*/true, /*bf16_grads=*/true);
    }
  }
}

TEST(CudaElementwise, BinaryOpsReadStridedAndBroadcastViews_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const Tensor a = integers_cpu({7, 33}, 1, -3, 3);
  const Tensor b = integers_cpu({5, 33, 2}, 2, -3, 3);
  const Tensor gy = integers_cpu({33, 7}, 3, -3, 3);
  for (const BinaryCase& c : kBinaryCases) {
    if (std::string(c.name) == "div") continue;  // b holds zeros
    expect_cuda_matches_cpu(
        std::string(c.name) + " of a transpose and a narrowed select",
        [&](const std::vector<Tensor>& in) {
          // [33, 7] strided with [33, 1] from a select of a narrow
          return c.fn(in[0].transpose(0, 1), in[1].narrow(0, 1, 3).select(0, 2).narrow(1, 1, 1));
        },
        {a, b}, gy, /*bf16=*/true, /*bf16_grads=*/true);
  }
}

TEST(CudaElementwise, BinaryOpsOnAlignedRowsAndABroadcastRowTakeTheVectorKernels_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  // Rows of 64 (a multiple of every vector width) plus a row broadcast over them, a permuted
  // [B, S, H, D] -> [B, H, S, D] operand (contiguous along D only), and a view whose rows start
  // 4 elements in (16-byte aligned in f32; in bf16 off the boundary: the scalar kernel).
  const Tensor a = integers_cpu({6, 64}, 11, -3, 3);
  const Tensor row = integers_cpu({64}, 12, -3, 3);
  const Tensor heads = integers_cpu({2, 5, 3, 64}, 13, -3, 3);
  const Tensor gy = integers_cpu({6, 64}, 14, -3, 3);
  const Tensor gy_heads = integers_cpu({2, 3, 5, 64}, 15, -3, 3);
  const Tensor wide = integers_cpu({6, 68}, 16, -3, 3);
  for (const BinaryCase& c : kBinaryCases) {
    if (std::string(c.name) == "div") continue;  // operands hold zeros
    expect_cuda_matches_cpu(
        std::string(c.name) + " of aligned rows and a broadcast row",
        [&](const std::vector<Tensor>& in) { return c.fn(in[0], in[1]); }, {a, row}, gy,
        /*bf16=*/true, /*bf16_grads=*/true);
    expect_cuda_matches_cpu(
        std::string(c.name) + " of permuted heads",
        [&](const std::vector<Tensor>& in) {
          return c.fn(in[0].permute({0, 2, 1, 3}), in[0].permute({0, 2, 1, 3}));
        },
        {heads}, gy_heads, /*bf16=*/true, /*bf16_grads=*/true);
    expect_cuda_matches_cpu(
        std::string(c.name) + " of rows that start off the 16-byte boundary",
        [&](const std::vector<Tensor>& in) { return c.fn(in[0].narrow(1, 4, 64), in[1]); },
        {wide, row}, gy, /*bf16=*/true, /*bf16_grads=*/true);
  }
}

// ---- elementwise: fused SwiGLU -------------------------------------------------

Tensor swiglu_of(const std::vector<Tensor>& in) {
  return ops::swiglu(in[0], in[1]);
}

TEST(CudaSwiglu, MatchesTheCpuForwardAndBackwardInF32AndBf16_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  // Every output is one f32 computation rounded once to bf16 (no sums), so the bf16 outputs
  // and gradients are held to the bf16 tolerance against the CPU on the bf16-rounded inputs.
  uint64_t seed = 700;
  for (int64_t n : kSizes) {
    const Tensor gate = uniform_cpu({n}, ++seed, -6.0, 6.0);
    const Tensor up = uniform_cpu({n}, ++seed, -2.0, 2.0);
    const Tensor gy = uniform_cpu({n}, ++seed, -1.0, 1.0);
    expect_cuda_matches_cpu("swiglu n=" + std::to_string(n), swiglu_of, {gate, up}, gy,
                            /*bf16=*/true, /*bf16_grads=*/true);
  }
}

TEST(CudaSwiglu, AlignedRowsOfProjectionsTakeTheVectorKernels_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  // The MLP's layout: [tokens, ffn] gate and up, contiguous; and both halves of one fused
  // [tokens, 2 ffn] projection (row stride 2 ffn, still contiguous along ffn).
  const Tensor gate = uniform_cpu({9, 136}, 730, -6.0, 6.0);
  const Tensor up = uniform_cpu({9, 136}, 731, -2.0, 2.0);
  const Tensor fused = uniform_cpu({9, 272}, 732, -4.0, 4.0);
  const Tensor gy = uniform_cpu({9, 136}, 733, -1.0, 1.0);
  expect_cuda_matches_cpu("swiglu of [9, 136] rows", swiglu_of, {gate, up}, gy, /*bf16=*/true,
                          /*bf16_grads=*/true);
  expect_cuda_matches_cpu(
      "swiglu of the halves of a fused projection",
      [](const std::vector<Tensor>& in) {
        return ops::swiglu(in[0].narrow(1, 0, 136), in[0].narrow(1, 136, 136));
      },
      {fused}, gy, /*bf16=*/true, /*bf16_grads=*/true);
}

TEST(CudaSwiglu, ReadsTransposedAndNarrowedViews_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const Tensor gate = uniform_cpu({7, 33}, 710, -6.0, 6.0);
  const Tensor up = uniform_cpu({33, 9}, 711, -2.0, 2.0);
  const Tensor gy = uniform_cpu({33, 7}, 712, -1.0, 1.0);
  expect_cuda_matches_cpu(
      "swiglu of a transpose and a narrow",
      [](const std::vector<Tensor>& in) {
        return ops::swiglu(in[0].transpose(0, 1), in[1].narrow(1, 1, 7));  // [33, 7] each
      },
      {gate, up}, gy, /*bf16=*/true, /*bf16_grads=*/true);
}

TEST(CudaSwiglu, RunsInF16WithinOneRounding_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  // f16 computes in f32 and rounds once on store: outputs and gradients within the f16
  // tolerance of the CPU f32 run on the f16-rounded inputs.
  uint64_t seed = 720;
  for (int64_t n : {int64_t(33), int64_t(1000003)}) {
    auto f16_values = [&](double lo, double hi) {
      return uniform_cpu({n}, ++seed, lo, hi).to(DType::F16).to(DType::F32);
    };
    const Tensor gate = f16_values(-6.0, 6.0), up = f16_values(-2.0, 2.0),
                 gy = f16_values(-1.0, 1.0);
    const Outcome reference = run_graph(swiglu_of, {gate, up}, gy, DType::F32, kCpu);
    const Outcome gpu = run_graph(swiglu_of, {gate, up}, gy, DType::F16, kCuda);
    const Tolerance tol = tolerance_for(DType::F16);
    const std::string what = "swiglu f16 n=" + std::to_string(n);
    EXPECT_TRUE(all_close(gpu.out, reference.out, tol, what + " forward"));
    EXPECT_TRUE(all_close(gpu.grads[0], reference.grads[0], tol, what + " d_gate"));
    EXPECT_TRUE(all_close(gpu.grads[1], reference.grads[1], tol, what + " d_up"));
  }
}

TEST(CudaSwiglu, LargeGatesStayFiniteAndMatchTheCpu_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  // Values exact in f32 and bf16. Results near 1e-33 (g = -80) are compared relatively only:
  // CUDA's expf (2 ulps) and CPU's differ by a few ulps, within the f32 rtol of the table.
  const std::vector<double> g = {80, -80, 1000, -1000, 20, -20, 3, -3, 0.5, 0};
  const std::vector<double> u = {0.75, -1.5, 2, -0.25, 1.25, -3, 0.5, 1, -2, 4};
  const std::vector<double> dy = {-1.5, 2, 0.5, -1.25, 1, 0.75, -2, 1.5, -0.5, 3};
  const Shape shape{static_cast<int64_t>(g.size())};
  const Tensor gate = Tensor::from_vector(g, shape), up = Tensor::from_vector(u, shape),
               gy = Tensor::from_vector(dy, shape);
  const Outcome cpu = run_graph(swiglu_of, {gate, up}, gy, DType::F32, kCpu);
  const Tolerance relative{0.0, tolerance_for(DType::F32).rtol};
  for (DType dtype : {DType::F32, DType::BF16}) {
    const Outcome gpu = run_graph(swiglu_of, {gate, up}, gy, dtype, kCuda);
    const Tolerance tol = dtype == DType::F32 ? relative : tolerance_for(DType::BF16);
    const std::string what =
        std::string("swiglu at large |gate| ") + std::string(dtype_name(dtype));
    for (const Tensor& t : {gpu.out, gpu.grads[0], gpu.grads[1]}) {
      for (double v : t.to_vector())
        EXPECT_TRUE(std::isfinite(v)) << what;
    }
    EXPECT_TRUE(all_close(gpu.out, cpu.out, tol, what + " forward"));
    EXPECT_TRUE(all_close(gpu.grads[0], cpu.grads[0], tol, what + " d_gate"));
    EXPECT_TRUE(all_close(gpu.grads[1], cpu.grads[1], tol, what + " d_up"));
  }
}

TEST(CudaElementwise, IntegerTensorsAreRejectedWithTheDTypeNamed_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const Tensor a = Tensor::arange(5, DType::I64, kCuda);
  try {
    ops::add(a, a);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("i64"), std::string::npos) << e.what();
  }
}

TEST(CudaElementwise, AComposedGraphGivesTheCpuLeafGradients_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const Tensor a = uniform_cpu({5, 7}, 11, -1.0, 1.0);
  const Tensor b = uniform_cpu({7}, 12, -1.0, 1.0);
  const Tensor c = uniform_cpu({5, 1}, 13, 0.5, 1.5);
  const GraphFn graph = [](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    const Tensor& w = in[1];
    const Tensor& s = in[2];
    const Tensor h = ops::silu(x * w + s) * ops::exp(-x) / ops::sqrt(s * s + 1.0);
    const Tensor g = ops::gelu(ops::tanh(h), ops::GeluApproximation::Tanh) - ops::sigmoid(x / s);
    return ops::mean(g, {1}) + ops::max(ops::relu(h) + ops::log(s), 1) * 0.5 +
           ops::sum(ops::pow(ops::rsqrt(s + 1.0), 2.0), {0, 1}) - 0.25;
  };
  expect_cuda_matches_cpu("composed graph", graph, {a, b, c}, uniform_cpu({5}, 14, -1.0, 1.0),
                          /*bf16=*/false, false);
}

TEST(CudaElementwise, AGraphCrossingDevicesBackpropagatesToCpuLeaves_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const Tensor x = uniform_cpu({3, 7}, 21, -1.0, 1.0);
  auto run = [&](Device middle) {
    Tensor leaf = x.detach().clone();
    leaf.set_requires_grad(true);
    const Tensor y = ops::sum(ops::silu(leaf.to(middle) * 3.0).to(kCpu) * leaf);
    y.backward();
    return std::make_pair(y.detach(), leaf.grad());
  };
  const auto [y_cpu, g_cpu] = run(kCpu);
  const auto [y_mixed, g_mixed] = run(kCuda);
  EXPECT_TRUE(all_close(y_mixed, y_cpu, tolerance_for(DType::F32), "loss"));
  EXPECT_TRUE(all_close(g_mixed, g_cpu, tolerance_for(DType::F32), "cpu leaf grad"));
  EXPECT_EQ(g_mixed.device(), kCpu);
}

// ---- reductions ----------------------------------------------------------------

struct ReduceShape {
  Shape shape;
  std::vector<int64_t> dims;
};

const std::vector<ReduceShape> kReduceShapes = {
    {{1}, {0}},        {{7}, {0}},         {{33, 7}, {0}},       {{33, 7}, {1}},
    {{33, 7}, {0, 1}}, {{5, 7, 33}, {1}},  {{5, 7, 33}, {0, 2}}, {{5, 7, 33}, {-1}},
    {{1000003}, {0}},  {{3, 333337}, {1}}, {{333337, 3}, {0}},   {{2, 1000003, 1}, {1}},
};

TEST(CudaReduce, SumAndMeanMatchTheCpuForwardAndBackward_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  // Integer inputs: every partial sum is exact in f32, whatever order CUDA adds in.
  uint64_t seed = 400;
  for (const ReduceShape& r : kReduceShapes) {
    for (bool keepdim : {false, true}) {
      const Tensor x = integers_cpu(r.shape, ++seed, -3, 3);
      const std::vector<int64_t> dims = r.dims;
      const Shape out_shape = ops::sum(x, dims, keepdim).shape();
      const Tensor gy = integers_cpu(out_shape, ++seed, -3, 3);
      const std::string where =
          shape_name(r.shape) + " dims " + shape_name(dims) + (keepdim ? " keepdim" : "");
      expect_cuda_matches_cpu(
          "sum " + where,
          [&](const std::vector<Tensor>& in) { return ops::sum(in[0], dims, keepdim); }, {x}, gy,
          /*bf16=*/true, /*bf16_grads=*/true);
      expect_cuda_matches_cpu(
          "mean " + where,
          [&](const std::vector<Tensor>& in) { return ops::mean(in[0], dims, keepdim); }, {x}, gy,
          /*bf16=*/true, /*bf16_grads=*/true);
    }
  }
  const Tensor x = integers_cpu({5, 7, 33}, 499, -3, 3);
  const Tensor one = Tensor::ones({});
  expect_cuda_matches_cpu(
      "sum of all", [](const std::vector<Tensor>& in) { return ops::sum(in[0]); }, {x}, one, true,
      true);
  expect_cuda_matches_cpu(
      "mean of all", [](const std::vector<Tensor>& in) { return ops::mean(in[0]); }, {x}, one, true,
      true);
}

TEST(CudaReduce, SumOfRandomValuesIsWithinTheF32Tolerance_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  // Positive terms, at most 33 per sum: f32 accumulation is within 33 * 2^-24 relative.
  const Tensor x = uniform_cpu({5, 7, 33}, 31, 0.5, 1.5);
  for (int64_t dim : {0, 1, 2}) {
    const Tensor expected = ops::sum(x, {dim});
    const Tensor actual = host_f32(ops::sum(x.to(kCuda), {dim}));
    EXPECT_TRUE(all_close(actual, expected, tolerance_for(DType::F32),
                          "sum over dim " + std::to_string(dim)));
  }
}

// The multi-tensor kernel squares and sums in f64 like the CPU, in another order: within a
// few f64 roundings of the CPU's sum (positive terms: relative error <= n * 2^-53). Sizes
// around its 16384-element chunks, f32 and bf16 views off the vector boundary narrowed on the
// device (the scalar loads), bf16, f32 and f64 in one launch, and no elements at all.
TEST(CudaReduce, SumOfSquaresOverManyTensorsMatchesTheCpuF64Sum_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const Tensor off_f32 = uniform_cpu({1000}, 5, -2, 2);                   // 3 f32 in: 12 bytes
  const Tensor off_bf16 = uniform_cpu({1001}, 7, -2, 2).to(DType::BF16);  // 1 bf16 in: 2 bytes
  const std::vector<Tensor> whole = {uniform_cpu({1}, 1, -2, 2), uniform_cpu({16383}, 2, -2, 2),
                                     uniform_cpu({16385}, 3, -2, 2),
                                     uniform_cpu({129, 257}, 4, -2, 2).to(DType::BF16),
                                     uniform_cpu({40000}, 6, -2, 2).to(DType::F64)};
  std::vector<Tensor> cpu = whole, gpu;
  for (const Tensor& t : whole)
    gpu.push_back(t.to(kCuda));
  cpu.push_back(off_f32.narrow(0, 3, 990));
  gpu.push_back(off_f32.to(kCuda).narrow(0, 3, 990));
  cpu.push_back(off_bf16.narrow(0, 1, 997));
  gpu.push_back(off_bf16.to(kCuda).narrow(0, 1, 997));
  ASSERT_NE(reinterpret_cast<uintptr_t>(gpu[5].raw_data()) % 16, 0u);
  ASSERT_NE(reinterpret_cast<uintptr_t>(gpu[6].raw_data()) % 8, 0u);
  const double expected = ops::sum_of_squares(cpu).item();
  const double actual = ops::sum_of_squares(gpu).item();
  ASSERT_GT(expected, 0.0);
  EXPECT_NEAR(actual, expected, expected * 120000 * 0x1p-53);
  EXPECT_EQ(ops::sum_of_squares({Tensor::zeros({0}, DType::F32, kCuda)}).item(), 0.0);
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(std::isfinite(
      ops::sum_of_squares({gpu[2], Tensor::from_vector({1.0, inf}, {2}).to(kCuda)}).item()));
}

// The order of the kernel's additions depends only on the tensors' sizes and order: the same
// values (bf16-representable, so every dtype holds them exactly) as bf16, f32, f64 or f16,
// aligned or one element off the vector boundary, or dtypes mixed in one list, give the same
// bits. (The mixed-precision optimizer takes its norm from bf16 gradients for this reason.)
TEST(CudaReduce, SumOfSquaresOfEqualValuesIsTheSameInEveryDTypeAndAlignment_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const std::vector<int64_t> sizes = {1, 3, 16383, 16385, 33153, 40003};
  std::vector<Tensor> values;  // CPU f32, each element a bf16 value well inside f16's range
  for (size_t i = 0; i < sizes.size(); ++i) {
    values.push_back(round_to_bf16(uniform_cpu({sizes[i]}, 90 + i, 0.5, 2.0)));
    Tensor signs = power_of_two_divisors_cpu({sizes[i]}, 190 + i);  // +-1, 2, 4
    values.back() = ops::mul(values.back(), signs);
  }
  // The values in `dtype` on the device; `offset` elements into a larger buffer.
  const auto on_device = [&](DType dtype, int64_t offset) {
    std::vector<Tensor> out;
    for (const Tensor& v : values) {
      const int64_t n = v.numel();
      Tensor full = Tensor::zeros({n + offset}, DType::F32);
      full.narrow(0, offset, n).copy_(v);
      out.push_back(full.to(dtype).to(kCuda).narrow(0, offset, n));
    }
    return out;
  };
  const double reference = ops::sum_of_squares(on_device(DType::F32, 0)).item();
  ASSERT_TRUE(std::isfinite(reference));
  ASSERT_GT(reference, 0.0);
  for (DType dtype : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
    for (int64_t offset : {0, 1, 3}) {
      const std::vector<Tensor> tensors = on_device(dtype, offset);
      // Off the kernel's group alignment (4 elements, at most 16 bytes): its scalar loads.
      const uintptr_t group_bytes = std::min<uintptr_t>(4 * dtype_size(dtype), 16);
      if (offset != 0) {
        ASSERT_NE(reinterpret_cast<uintptr_t>(tensors[2].raw_data()) % group_bytes, 0u);
      }
      EXPECT_EQ(ops::sum_of_squares(tensors).item(), reference)
          << dtype_name(dtype) << ", " << offset << " element(s) into the buffer";
    }
  }
  std::vector<Tensor> mixed;  // bf16, f32, f16, f64, bf16 off the boundary, f32 off it
  const std::vector<std::vector<Tensor>> sources = {
      on_device(DType::BF16, 0), on_device(DType::F32, 0),  on_device(DType::F16, 0),
      on_device(DType::F64, 0),  on_device(DType::BF16, 1), on_device(DType::F32, 1)};
  for (size_t i = 0; i < values.size(); ++i)
    mixed.push_back(sources[i % sources.size()][i]);
  EXPECT_EQ(ops::sum_of_squares(mixed).item(), reference) << "dtypes mixed in one list";
}

TEST(CudaReduce, MaxAndArgmaxMatchTheCpuExactly_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  uint64_t seed = 500;
  for (const ReduceShape& r : kReduceShapes) {
    if (r.dims.size() != 1) continue;
    const int64_t dim = r.dims[0];
    for (DType dtype : {DType::F32, DType::BF16}) {  // bf16 rounding makes ties: first wins
      for (bool keepdim : {false, true}) {
        // The CPU reference runs in f32 on the values the bf16 tensor holds.
        Tensor x = uniform_cpu(r.shape, ++seed, -2.0, 2.0);
        if (dtype == DType::BF16) x = round_to_bf16(x);
        const std::string where = std::string(dtype_name(dtype)) + " " + shape_name(r.shape) +
                                  " dim " + std::to_string(dim) + (keepdim ? " keepdim" : "");
        const Tensor xc = x.to(dtype).to(kCuda);
        EXPECT_TRUE(
            identical(ops::max(xc, dim, keepdim), ops::max(x, dim, keepdim), "max " + where));
        const Tensor index = ops::argmax(xc, dim, keepdim);
        EXPECT_EQ(index.dtype(), DType::I64);
        EXPECT_EQ(index.to_vector_i64(), ops::argmax(x, dim, keepdim).to_vector_i64())
            << "argmax " << where;
      }
    }
  }
  const Tensor x = uniform_cpu({5, 7, 33}, 599, -2.0, 2.0);
  EXPECT_TRUE(identical(ops::max(x.to(kCuda)), ops::max(x), "max of all"));
}

TEST(CudaReduce, MaxGradientReachesTheFirstMaximum_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  // Integers in [-2, 2] make many ties; the gradient goes to the first maximum on both.
  uint64_t seed = 600;
  for (const ReduceShape& r : kReduceShapes) {
    if (r.dims.size() != 1) continue;
    const int64_t dim = r.dims[0];
    for (bool keepdim : {false, true}) {
      const Tensor x = integers_cpu(r.shape, ++seed, -2, 2);
      const Tensor gy = integers_cpu(ops::max(x, dim, keepdim).shape(), ++seed, 1, 5);
      expect_cuda_matches_cpu(
          "max " + shape_name(r.shape) + " dim " + std::to_string(dim),
          [&](const std::vector<Tensor>& in) { return ops::max(in[0], dim, keepdim); }, {x}, gy,
          /*bf16=*/true, /*bf16_grads=*/true);
    }
  }
}

TEST(CudaReduce, MaxPropagatesTheFirstNaNLikeTheCpu_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  std::vector<double> v(3 * 300);
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = std::sin(static_cast<double>(i));
  v[1 * 300 + 17] = NAN;  // row 1: NaN at 17 and 250
  v[1 * 300 + 250] = NAN;
  v[2 * 300 + 299] = NAN;  // row 2: NaN last
  const Tensor x = Tensor::from_vector(v, {3, 300});
  for (int64_t dim : {1, 0}) {
    const Tensor xc = x.to(kCuda);
    EXPECT_TRUE(identical(ops::max(xc, dim), ops::max(x, dim), "max dim " + std::to_string(dim)));
    EXPECT_EQ(ops::argmax(xc, dim).to_vector_i64(), ops::argmax(x, dim).to_vector_i64());
  }
  EXPECT_EQ(ops::argmax(x.to(kCuda), 1).to_vector_i64(),
            (std::vector<int64_t>{ops::argmax(x, 1).to_vector_i64()[0], 17, 299}));
}

// ---- copies and conversions ------------------------------------------------------

const std::vector<DType> kAllDTypes = {DType::F32, DType::F64, DType::BF16,
                                       DType::F16, DType::I32, DType::I64};

// Values that exercise rounding, truncation, ties, f16 overflow and f64 -> bf16 double rounding
// (1 + 2^-8 + 2^-30 rounds to the bf16 tie 1 + 2^-8 in f32, then to even: 1).
const std::vector<double> kConversionValues = {
    0.0,   -0.0,       0.5,      -2.5,  3.14159265358979,       -300.7, 1e5, 65519,
    65520, 123456.789, 16777217, -0.49, 1.0 + 0x1p-8 + 0x1p-30, 7.0};

TEST(CudaCopy, ToDeviceRoundTripsEveryDTypeExactly_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  for (DType dtype : kAllDTypes) {
    const Tensor x = Tensor::from_vector(kConversionValues, {2, 7}, dtype);
    const Tensor on_gpu = x.to(kCuda);
    EXPECT_EQ(on_gpu.device(), kCuda);
    EXPECT_EQ(on_gpu.dtype(), dtype);
    const Tensor back = on_gpu.to(kCpu);
    EXPECT_EQ(std::memcmp(back.raw_data(), x.raw_data(), x.numel() * x.itemsize()), 0)
        << dtype_name(dtype);
  }
}

TEST(CudaCopy, ToDTypeOnCudaConvertsLikeTheCpuForEveryPair_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  for (DType from : kAllDTypes) {
    const Tensor x = Tensor::from_vector(kConversionValues, {14}, from);
    for (DType to : kAllDTypes) {
      if (!is_floating(to) && from == DType::F16) continue;  // f16 inf -> integer is undefined
      const Tensor expected = x.to(to);
      const Tensor actual = x.to(kCuda).to(to).to(kCpu);
      EXPECT_EQ(actual.dtype(), to);
      EXPECT_EQ(std::memcmp(actual.raw_data(), expected.raw_data(), x.numel() * actual.itemsize()),
                0)
          << dtype_name(from) << " -> " << dtype_name(to) << ": "
          << identical(actual, expected, "values").message();
    }
  }
}

TEST(CudaCopy, ContiguousOfViewsMatchesTheCpu_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const Tensor x = uniform_cpu({3, 5, 7}, 41, -100.0, 100.0);
  const Tensor big = uniform_cpu({1000003 + 10}, 42, -1.0, 1.0);
  const std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>> views = {
      {"permute",
       [](const Tensor& t) {
         return t.permute({2, 0, 1});
       }},
      {"transpose", [](const Tensor& t) { return t.transpose(0, 2); }},
      {"narrow", [](const Tensor& t) { return t.narrow(2, 1, 5); }},
      {"select", [](const Tensor& t) { return t.select(1, 3); }},
      {"expand",
       [](const Tensor& t) {
         return t.select(2, 0).unsqueeze(0).expand({4, 3, 5});
       }},
      {"0-dim", [](const Tensor& t) { return t.select(0, 1).select(0, 2).select(0, 3); }},
  };
  for (const auto& [name, view] : views) {
    for (DType dtype : {DType::F32, DType::BF16, DType::I64}) {
      const Tensor cpu = view(x.to(dtype));
      const Tensor gpu = view(x.to(dtype).to(kCuda));
      if (name != "0-dim") {
        EXPECT_FALSE(gpu.is_contiguous()) << name;
      }
      EXPECT_TRUE(identical(gpu.contiguous(), cpu.contiguous(),
                            name + " " + std::string(dtype_name(dtype))));
    }
  }
  // Whole rows moved by the 16-byte kernels: [B, S, H, D] -> [B, H, S, D] (D = 64) and casts
  // between dtypes of different widths.
  const Tensor heads = uniform_cpu({2, 5, 3, 64}, 43, -100.0, 100.0);
  for (DType dtype : {DType::F32, DType::BF16, DType::I64}) {
    const Tensor cpu = heads.to(dtype).permute({0, 2, 1, 3});
    const Tensor gpu = heads.to(dtype).to(kCuda).permute({0, 2, 1, 3});
    EXPECT_TRUE(identical(gpu.contiguous(), cpu.contiguous(),
                          "head permute " + std::string(dtype_name(dtype))));
    for (DType to : {DType::F32, DType::BF16, DType::F64}) {
      EXPECT_TRUE(identical(
          gpu.contiguous().to(to), cpu.contiguous().to(to),
          "cast " + std::string(dtype_name(dtype)) + " to " + std::string(dtype_name(to))));
    }
  }
  const Tensor narrowed = big.to(kCuda).narrow(0, 10, 1000003);
  EXPECT_TRUE(identical(narrowed.clone(), big.narrow(0, 10, 1000003), "1000003 at offset 10"));
}

TEST(CudaCopy, CopyIntoCudaViewsBroadcastsAndConverts_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const Tensor row = Tensor::from_vector({1.5, -2.25, 3.0}, {3}, DType::F64);
  Tensor cpu = Tensor::zeros({5, 7}, DType::BF16);
  Tensor gpu = Tensor::zeros({5, 7}, DType::BF16, kCuda);
  cpu.narrow(1, 2, 3).copy_(row);
  gpu.narrow(1, 2, 3).copy_(row);  // from the CPU, broadcast over 5 rows
  gpu.select(0, 4).fill_(-7.0);    // a strided fill
  cpu.select(0, 4).fill_(-7.0);
  gpu.transpose(0, 1).narrow(0, 0, 1).copy_(row.to(kCuda).narrow(0, 0, 1).expand({1, 5}));
  cpu.transpose(0, 1).narrow(0, 0, 1).copy_(row.narrow(0, 0, 1).expand({1, 5}));
  EXPECT_TRUE(identical(gpu, cpu, "copied and filled views"));
  EXPECT_TRUE(identical(Tensor::full({33}, 2.5, DType::F16, kCuda),
                        Tensor::full({33}, 2.5, DType::F16), "full f16"));
  EXPECT_TRUE(identical(Tensor::arange(0.0, 7.0, 0.5, DType::F32, kCuda),
                        Tensor::arange(0.0, 7.0, 0.5), "arange"));
}

TEST(CudaCopy, ToDeviceAndToDTypeCarryGradients_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  Tensor x = uniform_cpu({7}, 51, -1.0, 1.0);
  x.set_requires_grad(true);
  const Tensor w = uniform_cpu({7}, 52, -1.0, 1.0);
  const Tensor y = ops::sum(x.to(kCuda).to(DType::BF16).to(DType::F32) * w.to(kCuda));
  y.backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().device(), kCpu);
  // d/dx sum(f32(bf16(x)) * w) flows back through to(bf16)'s backward: w rounded to bf16.
  EXPECT_TRUE(identical(x.grad(), round_to_bf16(w), "gradient through to(cuda/bf16/f32)"));
}

TEST(CudaCopy, ViewsThatKeepMoreThanEightDimsAreRejected_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const Tensor x = Tensor::zeros(Shape(9, 2), DType::F32, kCuda);
  const Tensor reversed = x.permute({8, 7, 6, 5, 4, 3, 2, 1, 0});  // no two dims merge
  try {
    reversed.contiguous();
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("at most 8"), std::string::npos) << e.what();
  }
  // Nine dims that merge are fine.
  EXPECT_TRUE(identical(x.narrow(8, 0, 1).contiguous(),
                        Tensor::zeros(Shape{2, 2, 2, 2, 2, 2, 2, 2, 1}), "narrowed 9-dim"));
}

TEST(CudaCopy, AFailedCudaCallNamesTheCallAndTheDevice_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  try {
    cuda_memory::memset_zero(reinterpret_cast<void*>(0x1000), 16, 999);  // no device 999
    FAIL() << "expected an error";
  } catch (const kernels::cuda::CudaError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("cudaSetDevice(999)"), std::string::npos) << message;
    EXPECT_NE(message.find("cudaErrorInvalidDevice"), std::string::npos) << message;
    EXPECT_NE(message.find("on cuda:"), std::string::npos) << message;
    EXPECT_NE(message.find("device_guard.h:"), std::string::npos) << message;
  }
  // The failure left nothing behind for later launches to report.
  EXPECT_TRUE(identical(Tensor::ones({3}, DType::F32, kCuda) * 2.0, Tensor::full({3}, 2.0),
                        "a kernel after the failure"));
}

// ---- random fills ----------------------------------------------------------------

TEST(CudaRandom, FillsEqualTheCpuFillsBitForBit_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  const uint64_t offsets[] = {0, 12345, (uint64_t(1) << 32) - 3};  // the last crosses 2^32
  for (DType dtype : {DType::F64, DType::F32, DType::BF16, DType::F16}) {
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(1000003)}) {
      for (uint64_t offset : offsets) {
        for (bool normal : {false, true}) {
          const Tensor cpu = Tensor::empty({n}, dtype);
          const Tensor gpu = Tensor::empty({n}, dtype, kCuda);
          if (normal) {
            fill_normal(cpu, 77, offset, 0.5, 2.0);
            fill_normal(gpu, 77, offset, 0.5, 2.0);
          } else {
            fill_uniform(cpu, 77, offset, -2.0, 3.0);
            fill_uniform(gpu, 77, offset, -2.0, 3.0);
          }
          const Tensor back = gpu.to(kCpu);
          EXPECT_EQ(std::memcmp(back.raw_data(), cpu.raw_data(), n * cpu.itemsize()), 0)
              << (normal ? "normal " : "uniform ") << dtype_name(dtype) << " n=" << n
              << " offset=" << offset << ": " << identical(back, cpu, "fill").message();
        }
      }
    }
  }
}

TEST(CudaRandom, GeneratorDrawsOnCudaMatchTheCpu_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  Generator cpu_gen(5), gpu_gen(5);
  const Tensor a = rand({33, 7}, cpu_gen);
  const Tensor b = randn({1000003}, cpu_gen, DType::BF16);
  const Tensor ga = rand({33, 7}, gpu_gen, DType::F32, kCuda);
  const Tensor gb = randn({1000003}, gpu_gen, DType::BF16, kCuda);
  EXPECT_EQ(gpu_gen.offset(), cpu_gen.offset());
  EXPECT_TRUE(identical(ga, a, "rand"));
  EXPECT_TRUE(identical(gb, b, "randn bf16"));
}

// ---- the caching allocator -------------------------------------------------------

TEST(CudaAllocator, PeakGrowsAndAFreedBlockIsReusedWithoutCudaMalloc_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  CudaCachingAllocator& allocator = CudaCachingAllocator::for_device(0);
  allocator.release_cached();
  allocator.reset_peak();
  const CudaCachingAllocator::Stats start = allocator.stats();
  const size_t bytes = 3000009;  // class 3 MiB
  const size_t size = CudaCachingAllocator::round_size(bytes);
  ASSERT_EQ(size, size_t(3) << 20);

  void* block = allocator.allocate(bytes);
  const CudaCachingAllocator::Stats allocated = allocator.stats();
  EXPECT_EQ(allocated.device_malloc_calls, start.device_malloc_calls + 1);
  EXPECT_EQ(allocated.current_bytes, start.current_bytes + size);
  EXPECT_EQ(allocated.peak_bytes, allocated.current_bytes);
  EXPECT_EQ(allocated.reserved_bytes, start.reserved_bytes + size);

  allocator.release(block);
  void* again = allocator.allocate(bytes - 7);  // same class: the cached block
  const CudaCachingAllocator::Stats reused = allocator.stats();
  EXPECT_EQ(again, block);
  EXPECT_EQ(reused.device_malloc_calls, allocated.device_malloc_calls);
  EXPECT_EQ(reused.reserved_bytes, allocated.reserved_bytes);

  allocator.release(again);
  EXPECT_EQ(allocator.stats().cached_bytes, size);
  allocator.release_cached();
  const CudaCachingAllocator::Stats released = allocator.stats();
  EXPECT_EQ(released.reserved_bytes, start.reserved_bytes);
  EXPECT_EQ(released.device_free_calls, start.device_free_calls + 1);
  EXPECT_EQ(released.peak_bytes, start.current_bytes + size);

  // Tensors go through the same allocator: a second tensor of the class reuses the first's block.
  { const Tensor t = Tensor::empty({1000003}, DType::F32, kCuda); }
  const int64_t calls = allocator.stats().device_malloc_calls;
  const Tensor t = Tensor::empty({1000001}, DType::F32, kCuda);
  EXPECT_EQ(allocator.stats().device_malloc_calls, calls);
}

TEST(CudaAllocator, OutOfMemoryNamesTheRequestedSize_CUDA) {
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs";
  try {
    Tensor::empty({int64_t(1) << 48}, DType::F32, kCuda);  // 1 PiB
    FAIL() << "expected an out-of-memory error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("out of memory on cuda:0"), std::string::npos) << message;
    EXPECT_NE(message.find("1125899906842624 bytes"), std::string::npos) << message;
    EXPECT_NE(message.find("peak"), std::string::npos) << message;
    EXPECT_NE(message.find("reserved"), std::string::npos) << message;
  }
  // The failed cudaMalloc left no error behind: allocation and kernels still work.
  EXPECT_TRUE(identical(Tensor::ones({7}, DType::F32, kCuda) + 1.0, Tensor::full({7}, 2.0),
                        "ones + 1 after the failure"));
}

}  // namespace
}  // namespace autotp
