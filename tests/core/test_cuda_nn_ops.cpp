// CUDA against the CPU reference for the GEMM ops (matmul, linear) and the neural-network ops
// (softmax, cross entropy, embedding, norms, rotary, causal mask, index_select, attention),
// forward and gradients, f32 and bf16, on odd shapes. Each test skips, saying why, without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using autotp::testing::all_close;
using autotp::testing::Tolerance;
using autotp::testing::tolerance_for;

const Device kCpu = Device::cpu();
const Device kCuda = Device::cuda(0);

#define SKIP_WITHOUT_CUDA()                                                      \
  if (!cuda_available())                                                         \
  GTEST_SKIP() << "no CUDA device: CUDA ops are compared with the CPU on GPUs"

// ---- inputs (CPU f32) --------------------------------------------------------

// Uniform in [lo, hi), from a fixed Philox seed.
Tensor uniform_cpu(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Tensor t = Tensor::empty(shape, DType::F32);
  fill_uniform(t, seed, 0, lo, hi);
  return t;
}

// Integers in [lo, hi]: products and sums of a few hundred of these are exact in f32, so a
// GEMM on CUDA must equal the CPU's whatever order either adds in.
Tensor integers_cpu(const Shape& shape, uint64_t seed, int lo = -3, int hi = 3) {
  std::vector<double> v = uniform_cpu(shape, seed, 0.0, 1.0).to_vector();
  for (double& x : v) x = lo + std::floor(x * (hi - lo + 1));
  return Tensor::from_vector(v, shape);
}

// The f32 values a bf16 tensor holds: the inputs of the bf16 reference.
Tensor round_to_bf16(const Tensor& x) { return x.to(DType::BF16).to(DType::F32); }

// f32 CPU copy of a tensor from any device and dtype.
Tensor host_f32(const Tensor& t) { return t.detach().to(kCpu).to(DType::F32); }

// ---- tolerances ----------------------------------------------------------------

constexpr double kF32Unit = 0x1p-24;  // unit roundoff of f32

// Exact equality: integer-valued GEMMs.
constexpr Tolerance kExact{0.0, 0.0};

// f32 results made of sums of `terms` terms whose partial sums stay below `bound` in
// magnitude: in any summation order each addition errs by at most u * bound, so one
// implementation is within terms * u * bound of the exact value and two implementations are
// within twice that of each other. Never below the table's f32 tolerance (one rounding).
Tolerance f32_sum_tolerance(int64_t terms, double bound) {
  const Tolerance table = tolerance_for(DType::F32);
  return {std::max(table.atol, 2.0 * static_cast<double>(terms) * kF32Unit * bound), table.rtol};
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
  out.backward(grad_out.to(out.dtype()).to(device));
  Outcome outcome{host_f32(out), {}};
  for (const Tensor& leaf : leaves) {
    EXPECT_TRUE(leaf.grad().defined());
    outcome.grads.push_back(leaf.grad().defined() ? host_f32(leaf.grad()) : Tensor());
  }
  return outcome;
}

struct Tolerances {
  Tolerance f32;                     // CUDA f32 against CPU f32, output and gradients
  std::optional<Tolerance> bf16;     // CUDA bf16 against CPU f32 on bf16-rounded inputs
  bool bf16_grads = true;            // whether the bf16 gradients are held to `bf16` too
};

// Runs the graph in f32 on the CPU and on CUDA and compares output and gradients; with a bf16
// tolerance, also runs it in bf16 on CUDA against the CPU f32 run on the bf16-rounded inputs.
void expect_cuda_matches_cpu(const std::string& what, const GraphFn& fn,
                             const std::vector<Tensor>& inputs, const Tensor& grad_out,
                             const Tolerances& tol) {
  SCOPED_TRACE(what);
  const Outcome cpu = run_graph(fn, inputs, grad_out, DType::F32, kCpu);
  const Outcome gpu = run_graph(fn, inputs, grad_out, DType::F32, kCuda);
  EXPECT_TRUE(all_close(gpu.out, cpu.out, tol.f32, what + " forward f32"));
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_TRUE(all_close(gpu.grads[i], cpu.grads[i], tol.f32,
                          what + " grad of input " + std::to_string(i) + " f32"));
  }
  if (!tol.bf16) return;
  std::vector<Tensor> rounded;
  for (const Tensor& in : inputs) rounded.push_back(round_to_bf16(in));
  const Outcome reference = run_graph(fn, rounded, round_to_bf16(grad_out), DType::F32, kCpu);
  const Outcome gpu16 = run_graph(fn, inputs, grad_out, DType::BF16, kCuda);
  EXPECT_TRUE(all_close(gpu16.out, reference.out, *tol.bf16, what + " forward bf16"));
  if (!tol.bf16_grads) return;
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_TRUE(all_close(gpu16.grads[i], reference.grads[i], *tol.bf16,
                          what + " grad of input " + std::to_string(i) + " bf16"));
  }
}

// Refuses a vacuous comparison: the reference must hold a nonzero value.
::testing::AssertionResult has_nonzero(const Tensor& t, const std::string& what) {
  for (double v : t.to_vector()) {
    if (v != 0.0) return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << what << " is all zeros";
}

const Tolerance kBf16 = tolerance_for(DType::BF16);

// ---- GEMM: matmul and linear ----------------------------------------------------

struct MatmulCase {
  Shape a, b;
  // Applied to the leaves before the matmul (views: transposes, narrows, expands).
  std::function<Tensor(const Tensor&)> view_a = [](const Tensor& t) { return t; };
  std::function<Tensor(const Tensor&)> view_b = [](const Tensor& t) { return t; };
  const char* name = "";
};

TEST(CudaGemm, MatmulOfIntegerMatricesEqualsTheCpuExactly_CUDA) {
  SKIP_WITHOUT_CUDA();
  // Integer inputs in [-3, 3] with K <= 130: every partial sum is an integer below 2^24, so
  // f32 is exact on both devices, and bf16 (f32 accumulation) is one rounding of that.
  auto transpose = [](const Tensor& t) { return t.transpose(-1, -2); };
  const std::vector<MatmulCase> cases = {
      {{7, 33}, {33, 129}, {}, {}, "2-D"},
      {{129, 7}, {7, 33}, {}, {}, "2-D tall"},
      {{1, 33}, {33, 1}, {}, {}, "row times column"},
      {{33, 1}, {1, 7}, {}, {}, "outer product"},
      {{33, 7}, {33, 129}, transpose, {}, "a transposed"},
      {{7, 33}, {129, 33}, {}, transpose, "b transposed"},
      {{33, 7}, {129, 33}, transpose, transpose, "both transposed"},
      {{3, 7, 33}, {3, 33, 5}, {}, {}, "batched"},
      {{3, 33, 7}, {3, 5, 33}, transpose, transpose, "batched, both transposed"},
      {{2, 1, 7, 33}, {3, 33, 5}, {}, {}, "broadcast batch dims"},
      {{4, 7, 33}, {33, 5}, {}, {}, "shared 2-D b (folded into M)"},
      {{4, 33, 7}, {33, 5}, transpose, {}, "shared 2-D b, a transposed"},
      {{7, 33}, {4, 33, 5}, {}, {}, "shared 2-D a"},
      {{7, 40}, {40, 129},
       [](const Tensor& t) { return t.narrow(1, 3, 33); },
       [](const Tensor& t) { return t.narrow(0, 2, 33).narrow(1, 1, 127); },
       "narrowed views (leading dims above the row length)"},
      {{1, 33}, {33, 5}, [](const Tensor& t) { return t.expand({7, 33}); }, {},
       "expanded rows (stride 0: copied for cuBLAS)"},
      {{6, 17, 32}, {6, 17, 32}, {}, transpose, "attention-like scores q k^T"},
  };
  uint64_t seed = 1000;
  for (const MatmulCase& c : cases) {
    const Tensor a = integers_cpu(c.a, ++seed), b = integers_cpu(c.b, ++seed);
    const GraphFn fn = [&c](const std::vector<Tensor>& in) {
      return ops::matmul(c.view_a(in[0]), c.view_b(in[1]));
    };
    const Tensor out = fn({a, b});
    ASSERT_TRUE(has_nonzero(out, c.name));
    const Tensor g = integers_cpu(out.shape(), ++seed);
    expect_cuda_matches_cpu(std::string("matmul ") + c.name, fn, {a, b}, g, {kExact, kBf16});
  }
}

TEST(CudaGemm, MatmulInF64EqualsTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Tensor a = integers_cpu({3, 7, 33}, 1).to(DType::F64);
  const Tensor b = integers_cpu({33, 129}, 2).to(DType::F64);
  const Tensor expected = ops::matmul(a, b);
  const Tensor actual = ops::matmul(a.to(kCuda), b.to(kCuda));
  EXPECT_EQ(actual.dtype(), DType::F64);
  EXPECT_TRUE(all_close(actual.to(kCpu), expected, kExact, "f64 matmul"));
}

TEST(CudaGemm, MatmulOfRandomValuesIsWithinTheF32SumBound_CUDA) {
  SKIP_WITHOUT_CUDA();
  // Values in [-1, 1]: partial sums of K products stay below K in magnitude.
  for (int64_t k : {int64_t(7), int64_t(33), int64_t(129)}) {
    const Tensor a = uniform_cpu({2, 33, k}, 10 + k), b = uniform_cpu({k, 17}, 20 + k);
    const Tensor g = uniform_cpu({2, 33, 17}, 30 + k);
    // Gradients: dA sums 17 terms (N), dB sums 66 (batch rows), each below 1.
    const int64_t terms = std::max<int64_t>(k, 66);
    const Tolerance tol = f32_sum_tolerance(terms, static_cast<double>(terms));
    expect_cuda_matches_cpu("matmul K=" + std::to_string(k),
                            [](const std::vector<Tensor>& in) { return ops::matmul(in[0], in[1]); },
                            {a, b}, g, {tol, kBf16});
  }
}

TEST(CudaGemm, MatmulWithAnEmptyInnerDimGivesZeros_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Tensor a = Tensor::zeros({7, 0}, DType::F32, kCuda), b = Tensor::zeros({0, 5}, DType::F32, kCuda);
  const Tensor out = ops::matmul(a, b);
  EXPECT_TRUE(all_close(out.to(kCpu), Tensor::zeros({7, 5}), kExact, "K = 0 product"));
}

TEST(CudaGemm, LinearWithAndWithoutBiasEqualsTheCpuExactly_CUDA) {
  SKIP_WITHOUT_CUDA();
  for (bool bias : {true, false}) {
    for (const Shape& x_shape : {Shape{2, 7, 33}, Shape{33}, Shape{1, 33}, Shape{129, 33}}) {
      const Tensor x = integers_cpu(x_shape, 41), w = integers_cpu({129, 33}, 42);
      const Tensor b = integers_cpu({129}, 43);
      Shape out_shape = x_shape;
      out_shape.back() = 129;
      const Tensor g = integers_cpu(out_shape, 44);
      std::vector<Tensor> inputs = {x, w};
      if (bias) inputs.push_back(b);
      expect_cuda_matches_cpu(
          std::string("linear ") + shape_str(x_shape) + (bias ? " with bias" : ""),
          [bias](const std::vector<Tensor>& in) {
            return ops::linear(in[0], in[1], bias ? in[2] : Tensor());
          },
          inputs, g, {kExact, kBf16});
    }
  }
}

}  // namespace
}  // namespace autotp
