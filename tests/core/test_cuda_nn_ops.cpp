// CUDA against the CPU reference for the GEMM ops (matmul, linear) and the neural-network ops
// (softmax, cross entropy, embedding, norms, rotary, causal mask, index_select, attention),
// forward and gradients, f32 and bf16, on odd shapes. Each test skips, saying why, without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd/engine.h"
#include "core/autograd/node.h"
#include "core/ops.h"
#include "kernels/stored_score_pieces.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using autotp::testing::all_close;
using autotp::testing::kCudaF64Tolerance;
using autotp::testing::Tolerance;
using autotp::testing::tolerance_for;

const Device kCpu = Device::cpu();
const Device kCuda = Device::cuda(0);

#define SKIP_WITHOUT_CUDA() \
  if (!cuda_available())    \
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
  for (double& x : v)
    x = lo + std::floor(x * (hi - lo + 1));
  return Tensor::from_vector(v, shape);
}

// The f32 values a bf16 tensor holds: the inputs of the bf16 reference.
Tensor round_to_bf16(const Tensor& x) {
  return x.to(DType::BF16).to(DType::F32);
}

// f32 CPU copy of a tensor from any device and dtype.
Tensor host_f32(const Tensor& t) {
  return t.detach().to(kCpu).to(DType::F32);
}

// ---- tolerances ----------------------------------------------------------------

constexpr double kF32Unit = 0x1p-24;  // unit roundoff of f32
constexpr double kBf16Unit = 0x1p-9;  // unit roundoff of bf16

// Exact equality: integer-valued GEMMs, gathers, sums in the CPU's order.
constexpr Tolerance kExact{0.0, 0.0};

// f32 results whose rounding error is at most `units` unit roundoffs times max(1, |value|),
// with `units` derived per op from the length and magnitude of its sums (first-order bounds:
// a sum of n terms whose partial sums stay below P errs by at most n * u * P). The CPU
// reference accumulates in f64, so CUDA's f32 result is within that of it; never tighter
// than the table's f32 tolerance.
Tolerance f32_within(double units) {
  const Tolerance table = tolerance_for(DType::F32);
  const double bound = units * kF32Unit;
  return {std::max(table.atol, bound), std::max(table.rtol, bound)};
}

// bf16 results computed in f32 from bf16 inputs and rounded once: the f32 error plus one
// bf16 rounding (within the table's bf16 rtol).
Tolerance bf16_after(const Tolerance& f32) {
  const Tolerance table = tolerance_for(DType::BF16);
  return {std::max(table.atol, f32.atol), table.rtol + f32.rtol};
}

// ---- running one graph on a device --------------------------------------------

struct Outcome {
  Tensor out;                 // f32, CPU
  std::vector<Tensor> grads;  // per input, f32, CPU
};

using GraphFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Builds leaves from `inputs` (CPU f32 values) in `dtype` on `device`, runs fn, backpropagates
// `grad_out` (CPU f32 values, converted to the output's dtype) and returns the output and the
// leaf gradients.
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
    outcome.grads.push_back(leaf.grad().defined() ? host_f32(leaf.grad())
                                                  : Tensor::zeros(leaf.shape()));
  }
  return outcome;
}

struct Tolerances {
  Tolerance f32;                       // CUDA f32 against CPU f32: output and gradients
  std::optional<Tolerance> bf16_out;   // CUDA bf16 output against CPU f32 on rounded inputs
  std::optional<Tolerance> bf16_grad;  // the same for the gradients (unset: not compared)
  // Added to the bf16 atol, in units of the largest magnitude of the tensor's reference: for
  // kernels that round intermediate terms to bf16 (tensor-core attention).
  double bf16_atol_of_largest = 0.0;
  // When set, the f32 forward output / the f32 gradients use these instead of `f32`: bounds
  // relative to each element for ops whose values are far below 1 (probabilities), where an
  // absolute bound sized for the largest value would pass a kernel that wrote zeros.
  std::optional<Tolerance> f32_out = std::nullopt;
  std::optional<Tolerance> f32_grad = std::nullopt;
};

// A bound relative to each element (atol only against exact zeros): `units` unit roundoffs.
Tolerance f32_relative(double units) {
  return {1e-12, std::max(tolerance_for(DType::F32).rtol, units * kF32Unit)};
}

double largest_magnitude(const Tensor& t) {
  double largest = 0.0;
  for (double v : t.to_vector())
    largest = std::max(largest, std::fabs(v));
  return largest;
}

Tolerance widened(Tolerance tol, double atol_of_largest, const Tensor& reference) {
  tol.atol += atol_of_largest * largest_magnitude(reference);
  return tol;
}

// Refuses a vacuous comparison: the reference must hold a nonzero value.
::testing::AssertionResult has_nonzero(const Tensor& t, const std::string& what) {
  for (double v : t.to_vector()) {
    if (v != 0.0) return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << what << " is all zeros";
}

// Runs the graph on the CPU and on CUDA and compares output and gradients:
//  - f64 on both with kCudaF64Tolerance (both accumulate in f64: this checks every
//    index and formula of the CUDA kernels tightly);
//  - f32 on both with tol.f32 (CUDA accumulates in f32);
//  - with tol.bf16_out, bf16 on CUDA against the CPU f32 run on the bf16-rounded inputs and
//    bf16-rounded output gradient.
void expect_cuda_matches_cpu(const std::string& what, const GraphFn& fn,
                             const std::vector<Tensor>& inputs, const Tensor& grad_out,
                             const Tolerances& tol) {
  SCOPED_TRACE(what);
  const Outcome cpu64 = run_graph(fn, inputs, grad_out, DType::F64, kCpu);
  ASSERT_TRUE(has_nonzero(cpu64.out, what + " reference output"));
  // Some gradients vanish exactly (dq and dk of attention over one key); not all of them may.
  bool any_grad = false;
  for (const Tensor& grad : cpu64.grads)
    any_grad = any_grad || has_nonzero(grad, "grad");
  ASSERT_TRUE(any_grad) << what << ": every reference gradient is all zeros";
  const Outcome gpu64 = run_graph(fn, inputs, grad_out, DType::F64, kCuda);
  const Tolerance f64 = kCudaF64Tolerance;
  EXPECT_TRUE(all_close(gpu64.out, cpu64.out, f64, what + " forward f64"));
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_TRUE(all_close(gpu64.grads[i], cpu64.grads[i], f64,
                          what + " grad of input " + std::to_string(i) + " f64"));
  }
  const Outcome cpu = run_graph(fn, inputs, grad_out, DType::F32, kCpu);
  const Outcome gpu = run_graph(fn, inputs, grad_out, DType::F32, kCuda);
  EXPECT_TRUE(all_close(gpu.out, cpu.out, tol.f32_out.value_or(tol.f32), what + " forward f32"));
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_TRUE(all_close(gpu.grads[i], cpu.grads[i], tol.f32_grad.value_or(tol.f32),
                          what + " grad of input " + std::to_string(i) + " f32"));
  }
  if (!tol.bf16_out) return;
  std::vector<Tensor> rounded;
  for (const Tensor& in : inputs)
    rounded.push_back(round_to_bf16(in));
  const Outcome reference = run_graph(fn, rounded, round_to_bf16(grad_out), DType::F32, kCpu);
  const Outcome gpu16 = run_graph(fn, inputs, grad_out, DType::BF16, kCuda);
  EXPECT_TRUE(all_close(gpu16.out, reference.out,
                        widened(*tol.bf16_out, tol.bf16_atol_of_largest, reference.out),
                        what + " forward bf16"));
  if (!tol.bf16_grad) return;
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_TRUE(all_close(gpu16.grads[i], reference.grads[i],
                          widened(*tol.bf16_grad, tol.bf16_atol_of_largest, reference.grads[i]),
                          what + " grad of input " + std::to_string(i) + " bf16"));
  }
}

const Tolerance kBf16 = tolerance_for(DType::BF16);

// ---- GEMM: matmul and linear ----------------------------------------------------

using ViewFn = std::function<Tensor(const Tensor&)>;

struct MatmulCase {
  Shape a, b;
  ViewFn view_a, view_b;  // applied to the leaves before the matmul (transposes, narrows, ...)
  const char* name;
};

TEST(CudaGemm, MatmulOfIntegerMatricesEqualsTheCpuExactly_CUDA) {
  SKIP_WITHOUT_CUDA();
  // Integer inputs in [-3, 3] with K <= 130: every partial sum is an integer below 2^24, so
  // f32 is exact on both devices, and bf16 (f32 accumulation) is one rounding of that (two
  // where a broadcast gradient is summed afterwards).
  const ViewFn transpose = [](const Tensor& t) { return t.transpose(-1, -2); };
  const ViewFn same = [](const Tensor& t) { return t; };
  const std::vector<MatmulCase> cases = {
      {{7, 33}, {33, 129}, same, same, "2-D"},
      {{129, 7}, {7, 33}, same, same, "2-D tall"},
      {{1, 33}, {33, 1}, same, same, "row times column"},
      {{33, 1}, {1, 7}, same, same, "outer product"},
      {{33, 7}, {33, 129}, transpose, same, "a transposed"},
      {{7, 33}, {129, 33}, same, transpose, "b transposed"},
      {{33, 7}, {129, 33}, transpose, transpose, "both transposed"},
      {{3, 7, 33}, {3, 33, 5}, same, same, "batched"},
      {{3, 33, 7}, {3, 5, 33}, transpose, transpose, "batched, both transposed"},
      {{2, 1, 7, 33}, {3, 33, 5}, same, same, "broadcast batch dims"},
      {{4, 7, 33}, {33, 5}, same, same, "shared 2-D b (folded into M)"},
      {{4, 33, 7}, {33, 5}, transpose, same, "shared 2-D b, a transposed"},
      {{7, 33}, {4, 33, 5}, same, same, "shared 2-D a"},
      {{7, 40},
       {40, 129},
       [](const Tensor& t) { return t.narrow(1, 3, 33); },
       [](const Tensor& t) { return t.narrow(0, 2, 33).narrow(1, 1, 127); },
       "narrowed views (leading dims above the row length, odd offsets)"},
      {{1, 33},
       {33, 5},
       [](const Tensor& t) {
         return t.expand({7, 33});
       },
       same,
       "expanded rows (stride 0: copied for cuBLAS)"},
      {{2, 6, 17, 32}, {2, 6, 17, 32}, same, transpose, "attention-like scores q k^T"},
  };
  uint64_t seed = 1000;
  for (const MatmulCase& c : cases) {
    const Tensor a = integers_cpu(c.a, ++seed), b = integers_cpu(c.b, ++seed);
    const GraphFn fn = [&c](const std::vector<Tensor>& in) {
      return ops::matmul(c.view_a(in[0]), c.view_b(in[1]));
    };
    const Tensor g = integers_cpu(fn({a, b}).shape(), ++seed);
    expect_cuda_matches_cpu(std::string("matmul ") + c.name, fn, {a, b}, g, {kExact, kBf16, kBf16});
  }
}

TEST(CudaGemm, F32MatmulIsNotRoundedThroughTf32_CUDA) {
  SKIP_WITHOUT_CUDA();
  // K = 7 products of values in [-1, 1]: partial sums below 7, so f32 errs by at most 49 u
  // (3e-6); TF32's 10-bit inputs would err by about 1e-3.
  const Tensor a = uniform_cpu({33, 7}, 1), b = uniform_cpu({7, 33}, 2);
  const Tensor expected = ops::matmul(a, b);
  const Tensor actual = host_f32(ops::matmul(a.to(kCuda), b.to(kCuda)));
  EXPECT_TRUE(all_close(actual, expected, f32_within(49), "f32 matmul K=7"));
}

TEST(CudaGemm, MatmulOfRandomValuesIsWithinTheF32SumBound_CUDA) {
  SKIP_WITHOUT_CUDA();
  for (int64_t k : {int64_t(7), int64_t(33), int64_t(129)}) {
    const Tensor a = uniform_cpu({2, 33, k}, 10 + k), b = uniform_cpu({k, 17}, 20 + k);
    const Tensor g = uniform_cpu({2, 33, 17}, 30 + k);
    // Values in [-1, 1]. The longest sum is K (forward), 17 (dA) or 66 rows (dB); its
    // partial sums stay below its length n, so each errs by at most n * n * u.
    const double n = static_cast<double>(std::max<int64_t>(k, 66));
    expect_cuda_matches_cpu(
        "matmul K=" + std::to_string(k),
        [](const std::vector<Tensor>& in) { return ops::matmul(in[0], in[1]); }, {a, b}, g,
        {f32_within(n * n), bf16_after(f32_within(n * n)), bf16_after(f32_within(n * n))});
  }
}

TEST(CudaGemm, MatmulWithAnEmptyInnerDimGivesZeros_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Tensor a = Tensor::zeros({7, 0}, DType::F32, kCuda);
  const Tensor b = Tensor::zeros({0, 5}, DType::F32, kCuda);
  EXPECT_TRUE(all_close(host_f32(ops::matmul(a, b)), Tensor::zeros({7, 5}), kExact, "K = 0"));
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
          inputs, g, {kExact, kBf16, kBf16});
    }
  }
}

TEST(CudaGemm, LinearAddTakesTheResidualAsTheGemmsCInputLikeTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  // out = residual + x W^T (+ b): the residual is cuBLASLt's C (beta = 1), a separate buffer
  // from the output. Integer values: exact in f32; bf16 rounds the sum once.
  const Tensor x = integers_cpu({2, 7, 33}, 45), w = integers_cpu({129, 33}, 46);
  const Tensor b = integers_cpu({129}, 47), r = integers_cpu({2, 7, 129}, 48);
  const Tensor g = integers_cpu({2, 7, 129}, 49);
  for (bool bias : {true, false}) {
    std::vector<Tensor> inputs = {x, w, r};
    if (bias) inputs.push_back(b);
    expect_cuda_matches_cpu(std::string("linear_add") + (bias ? " with bias" : ""),
                            [bias](const std::vector<Tensor>& in) {
                              return ops::linear_add(in[0], in[1], bias ? in[3] : Tensor(), in[2]);
                            },
                            inputs, g, {kExact, kBf16, kBf16});
  }
  // A residual one element into its buffer: C is misaligned for the 16-byte kernels, so the
  // GEMM may run on cuBLAS, which reads C in place (it is copied into the output first).
  const Tensor flat = integers_cpu({2 * 7 * 129 + 1}, 50);
  expect_cuda_matches_cpu(
      "linear_add with a misaligned residual",
      [](const std::vector<Tensor>& in) {
        const Tensor residual = in[2].narrow(0, 1, 2 * 7 * 129).view({2, 7, 129});
        return ops::linear_add(in[0], in[1], Tensor(), residual);
      },
      {x, w, flat}, g, {kExact, kBf16, kBf16});
}

// ---- softmax and log_softmax ------------------------------------------------------

struct SoftmaxCase {
  Shape shape;
  int64_t dim;
};

// Rows of 5, 7, 17, 33, 129, 130, 1000 and 9000 elements (every block size of the row
// kernels), over the last, first and a middle dim.
const std::vector<SoftmaxCase> kSoftmaxCases = {
    {{7, 33}, -1},   {{3, 129}, 1},   {{33, 7}, 0},   {{2, 17, 130}, -1},
    {{3, 17, 5}, 1}, {{4, 1000}, -1}, {{2, 9000}, 1},
};

TEST(CudaSoftmax, SoftmaxMatchesTheCpuForwardAndBackward_CUDA) {
  SKIP_WITHOUT_CUDA();
  uint64_t seed = 2000;
  for (const SoftmaxCase& c : kSoftmaxCases) {
    const Tensor x = uniform_cpu(c.shape, ++seed, -3.0, 3.0);
    const Tensor g = uniform_cpu(c.shape, ++seed);
    const double n = static_cast<double>(x.size(c.dim));
    // f32: the row sum of positive terms errs by (n - 1) u relative, so y by (n + 8) u
    // relative; dx = y (dy - sum(dy y)) adds the dot's n u (sum |dy y| <= 1): 3n + 20 units.
    // bf16: y is saved in bf16 (2^-9 relative) and enters dx twice, |dy - dot| <= 2: dx errs
    // by at most 3 * 2^-9 (y <= 1) beyond the f32 error.
    // The forward alone, relative to each probability (they are ~1e-4 at n = 9000, below the
    // absolute bound): y = exp(x - m - log s) errs by the absolute error of its exponent, s's
    // n u plus |x - m| u, one ulp of log s (|log s| <= 10) and the subtraction's |y| u, plus
    // expf's 2 ulp: below (n + 50) u, twice that allowed.
    const Tolerance f32 = f32_within(3 * n + 20);
    const Tolerance bf16_grad{bf16_after(f32).atol + 3 * kBf16Unit, bf16_after(f32).rtol};
    Tolerances tol{f32, bf16_after(f32), bf16_grad};
    tol.f32_out = f32_relative(2 * (n + 64));
    const int64_t dim = c.dim;
    expect_cuda_matches_cpu(
        "softmax " + shape_str(c.shape) + " dim " + std::to_string(dim),
        [dim](const std::vector<Tensor>& in) { return ops::softmax(in[0], dim); }, {x}, g, tol);
  }
}

TEST(CudaSoftmax, LogSoftmaxMatchesTheCpuForwardAndBackward_CUDA) {
  SKIP_WITHOUT_CUDA();
  uint64_t seed = 2100;
  for (const SoftmaxCase& c : kSoftmaxCases) {
    const Tensor x = uniform_cpu(c.shape, ++seed, -3.0, 3.0);
    const Tensor g = uniform_cpu(c.shape, ++seed);
    const double n = static_cast<double>(x.size(c.dim));
    // f32: y = x - max - log(sum) errs by (n + 8) u (times max(1, |y|)); dx = dy - exp(y) S
    // with S = sum(dy): S errs by n * n * u (partial sums below n), exp(y) by (n + 8) u
    // relative and |exp(y) S| <= n: 2n^2 + 8n units. bf16 gradients: the next test (with an
    // arbitrary dy the bf16-saved y's error, up to |y| 2^-9, is multiplied by sum(dy)).
    // The forward alone: the exponent's absolute error as in softmax, (n + 50) u, plus |y| u;
    // twice that allowed (the quadratic bound is the gradient's).
    Tolerances tol{f32_within(2 * n * n + 8 * n), bf16_after(f32_within(n + 8)), std::nullopt};
    tol.f32_out = f32_within(2 * (n + 64));
    const int64_t dim = c.dim;
    expect_cuda_matches_cpu(
        "log_softmax " + shape_str(c.shape) + " dim " + std::to_string(dim),
        [dim](const std::vector<Tensor>& in) { return ops::log_softmax(in[0], dim); }, {x}, g, tol);
  }
}

TEST(CudaSoftmax, LogSoftmaxBf16GradientOfANegativeLogLikelihood_CUDA) {
  SKIP_WITHOUT_CUDA();
  // dy = -1 at one class per row (the NLL loss), so S = sum(dy) = -1 and dx = dy + exp(y):
  // the bf16-saved y errs by |y| 2^-9 absolute, so exp(y) by |y| 2^-9 relative, below
  // max|y| 2^-9 absolute (exp(y) <= 1).
  const Tensor x = uniform_cpu({33, 129}, 2201, -3.0, 3.0);
  std::vector<double> g(33 * 129, 0.0);
  for (int64_t r = 0; r < 33; ++r)
    g[r * 129 + (r * 37) % 129] = -1.0;
  const Tensor dy = Tensor::from_vector(g, {33, 129});
  double max_y = 0.0;
  for (double y : ops::log_softmax(round_to_bf16(x), -1).to_vector())
    max_y = std::max(max_y, std::fabs(y));
  const Tolerance f32 = f32_within(2 * 129 + 8);
  const Tolerance bf16_grad{bf16_after(f32).atol + 2 * max_y * kBf16Unit, bf16_after(f32).rtol};
  expect_cuda_matches_cpu("log_softmax NLL gradient",
                          [](const std::vector<Tensor>& in) { return ops::log_softmax(in[0], -1); },
                          {x}, dy, {f32, bf16_after(f32), bf16_grad});
}

TEST(CudaSoftmax, SingleElementRowsGiveOneAndZeroGradients_CUDA) {
  SKIP_WITHOUT_CUDA();
  Tensor x = uniform_cpu({5, 1}, 2301).to(kCuda).detach();
  x.set_requires_grad(true);
  const Tensor y = ops::softmax(x, -1), log_y = ops::log_softmax(x, -1);
  EXPECT_TRUE(all_close(host_f32(y), Tensor::ones({5, 1}), kExact, "softmax of one element"));
  EXPECT_TRUE(all_close(host_f32(log_y), Tensor::zeros({5, 1}), kExact, "log_softmax"));
  ops::sum(y * 3.0 + log_y * 2.0).backward();
  EXPECT_TRUE(all_close(host_f32(x.grad()), Tensor::zeros({5, 1}), kExact, "gradient"));
}

TEST(CudaSoftmax, AllNegativeInfinityRowGivesNaNLikeTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Tensor x = Tensor::from_vector({-INFINITY, -INFINITY, 0.5, 1.0}, {2, 2});
  for (const Tensor& y : {ops::softmax(x.to(kCuda), -1), ops::log_softmax(x.to(kCuda), -1)}) {
    const std::vector<double> v = host_f32(y).to_vector();
    EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[1]));
    EXPECT_TRUE(std::isfinite(v[2]) && std::isfinite(v[3]));
  }
}

// ---- cross entropy -------------------------------------------------------------------

struct CrossEntropyCase {
  int64_t rows, classes;
  int64_t ignore_index;
  DType target_dtype;
};

// Targets in [0, classes) with every fourth row set to ignore_index (never all rows).
Tensor targets_cpu(int64_t rows, int64_t classes, int64_t ignore_index, DType dtype,
                   uint64_t seed) {
  std::vector<double> u = uniform_cpu({rows}, seed, 0.0, 1.0).to_vector();
  std::vector<int64_t> t(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    t[r] = r % 4 == 3 ? ignore_index : static_cast<int64_t>(u[r] * static_cast<double>(classes));
  }
  return Tensor::from_vector_i64(t, {rows}, dtype);
}

TEST(CudaCrossEntropy, LossAndLogitGradientsMatchTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  const std::vector<CrossEntropyCase> cases = {
      {33, 129, -100, DType::I64},
      {7, 1000, -100, DType::I32},
      {1, 7, -100, DType::I64},
      {17, 9000, 3, DType::I64},  // ignore_index 3 is also a class: rows targeting 3 are ignored
  };
  uint64_t seed = 3000;
  for (const CrossEntropyCase& c : cases) {
    const Tensor logits = uniform_cpu({c.rows, c.classes}, ++seed, -3.0, 3.0);
    const Tensor targets = targets_cpu(c.rows, c.classes, c.ignore_index, c.target_dtype, ++seed);
    const int64_t ignore = c.ignore_index;
    const double n = static_cast<double>(c.classes);
    // f32: each row's logsumexp errs by (C + 8) u times |lse| <= 3 + log C <= 10 (positive
    // sum, then log); the mean is taken in f64. dlogits = (p - onehot) / count with p's
    // relative error that of x - lse: 10 (C + 16) units cover both. bf16 logits give an f32
    // loss computed in f32 (the f32 tolerance) and bf16 dlogits rounded once.
    // The gradient relative to each element (p / count is ~1e-5 at 9000 classes, below the
    // absolute bound; ignored rows are exact zeros), with twice the bound above.
    const Tolerance f32 = f32_within(10 * (n + 16));
    Tolerances tol{f32, f32, bf16_after(f32)};
    tol.f32_grad = f32_relative(20 * (n + 16));
    expect_cuda_matches_cpu(
        "cross_entropy " + std::to_string(c.rows) + "x" + std::to_string(c.classes) + " ignore " +
            std::to_string(ignore) + " targets " + std::string(dtype_name(c.target_dtype)),
        [targets, ignore](const std::vector<Tensor>& in) {
          return ops::cross_entropy(in[0], targets.to(in[0].device()), ignore);
        },
        {logits}, Tensor::full({}, 0.75), tol);
  }
}

TEST(CudaCrossEntropy, LogitsGradientTakesTheLogitsMemoryOnTheirLastUse_CUDA) {
  SKIP_WITHOUT_CUDA();
  // Logits from a GEMM the caller does not keep, as a model's lm_head output: the backward on
  // the graph's last use (the engine's plain backward) writes dlogits over them, and its values
  // are bitwise those written into fresh memory. 8 and 4104 classes take the 16-byte path (one
  // and several packs per thread), 7 and 4099 the element path.
  for (const int64_t classes : {int64_t(8), int64_t(7), int64_t(4104), int64_t(4099)}) {
    for (const DType dtype : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
      const Tensor x = uniform_cpu({9, 16}, 3500).to(dtype).to(kCuda);
      Tensor w = uniform_cpu({16, classes}, 3501).to(dtype).to(kCuda).detach();
      w.set_requires_grad(true);
      Tensor logits = ops::matmul(x, w);
      const void* logits_memory = logits.raw_data();
      const Tensor loss =
          ops::cross_entropy(logits, targets_cpu(9, classes, -100, DType::I64, 3502).to(kCuda));
      logits = Tensor();
      const std::shared_ptr<Node> node = loss.autograd_meta()->grad_fn;
      const Tensor seed = Tensor::full({}, 0.75).to(loss.dtype()).to(kCuda);
      PendingGradients none(1);
      const std::string what =
          std::to_string(classes) + " classes " + std::string(dtype_name(dtype));
      const std::vector<Tensor> fresh = node->apply_folding(seed, none, /*last_use=*/false);
      EXPECT_NE(fresh[0].raw_data(), logits_memory) << what;
      const std::vector<Tensor> reused = node->apply_folding(seed, none, /*last_use=*/true);
      EXPECT_EQ(reused[0].raw_data(), logits_memory) << what;
      EXPECT_EQ(reused[0].to(kCpu).to(DType::F64).to_vector(),
                fresh[0].to(kCpu).to(DType::F64).to_vector())
          << what;
    }
  }
}

// Logits of `rows` x `classes` with -inf entries (a -inf logit adds exp(-inf) = 0 to the
// logsumexp): rows r % 3 == 0 at column 0 only (the first element of the block's thread 0);
// rows r % 3 == 1 at columns [0, 16) (the whole of the first threads' elements on both
// paths: every 16-byte vector of them), up to all but two columns; rows r % 3 == 2 at every
// column c with (c + r) % 3 == 0 (many threads' first elements). Targets are finite columns,
// so the loss and every gradient are finite.
struct MaskedLogits {
  Tensor logits;   // [rows, classes] f32
  Tensor targets;  // [rows] i64
};

MaskedLogits logits_with_negative_infinity(int64_t rows, int64_t classes, uint64_t seed) {
  std::vector<double> x = uniform_cpu({rows, classes}, seed, -3.0, 3.0).to_vector();
  std::vector<int64_t> t(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double* row = x.data() + r * classes;
    for (int64_t c = 0; c < classes; ++c) {
      const bool masked = r % 3 == 0   ? c == 0
                          : r % 3 == 1 ? c < std::min<int64_t>(16, classes - 2)
                                       : (c + r) % 3 == 0;
      if (masked) row[c] = -INFINITY;
    }
    int64_t target = (r * 37 + 5) % classes;
    while (std::isinf(row[target]))
      target = (target + 1) % classes;
    t[r] = target;
  }
  return {Tensor::from_vector(x, {rows, classes}), Tensor::from_vector_i64(t, {rows})};
}

TEST(CudaCrossEntropy, NegativeInfinityLogitsAddNothingLikeTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  // Class counts that are multiples of 8 take the 16-byte path in every dtype (several vectors
  // per thread at 4096), the odd ones the element path. Before the fix a thread whose first
  // element was -inf added exp(-inf - -inf) = NaN: the row's loss and gradients were NaN.
  uint64_t seed = 3300;
  for (const auto& [rows, classes] : std::vector<std::pair<int64_t, int64_t>>{
           {9, 64}, {6, 1000}, {5, 4096}, {9, 129}, {6, 7}, {4, 2049}}) {
    const MaskedLogits in = logits_with_negative_infinity(rows, classes, ++seed);
    const Tensor targets = in.targets;
    // The tolerances of LossAndLogitGradientsMatchTheCpu: the -inf terms add exactly 0.
    const Tolerance f32 = f32_within(10 * (static_cast<double>(classes) + 16));
    expect_cuda_matches_cpu(
        "cross_entropy with -inf logits " + std::to_string(rows) + "x" + std::to_string(classes),
        [targets](const std::vector<Tensor>& x) {
          return ops::cross_entropy(x[0], targets.to(x[0].device()));
        },
        {in.logits}, Tensor::full({}, 0.75), {f32, f32, bf16_after(f32)});
  }
}

TEST(CudaCrossEntropy, AllNegativeInfinityOrNaNRowGivesANaNLossLikeTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  // Row 0 is all -inf (the CPU's lse is NaN; CUDA's is -inf, and -inf - -inf is NaN), row 1
  // holds one NaN, row 2 is finite; each row is its own batch, with 8 classes (16-byte path)
  // and 7 (element path), in f32 and bf16. The NaN rows give a NaN loss and NaN gradients on
  // both devices; the finite row finite ones.
  for (const int64_t classes : {int64_t(8), int64_t(7)}) {
    for (const DType dtype : {DType::F32, DType::BF16}) {
      for (int64_t r = 0; r < 3; ++r) {
        std::vector<double> x = uniform_cpu({1, classes}, 3400 + r, -3.0, 3.0).to_vector();
        if (r == 0) std::fill(x.begin(), x.end(), -INFINITY);
        if (r == 1) x[3] = NAN;
        const Tensor targets = Tensor::from_vector_i64({1}, {1});
        const std::string what = "row " + std::to_string(r) + " of " + std::to_string(classes) +
                                 " classes " + std::string(dtype_name(dtype));
        Tensor cpu = Tensor::from_vector(x, {1, classes}).detach();
        cpu.set_requires_grad(true);
        const Tensor cpu_loss = ops::cross_entropy(cpu, targets);
        cpu_loss.backward();
        Tensor gpu = Tensor::from_vector(x, {1, classes}).to(dtype).to(kCuda).detach();
        gpu.set_requires_grad(true);
        const Tensor gpu_loss = ops::cross_entropy(gpu, targets.to(kCuda));
        gpu_loss.backward();
        const bool nan_row = r < 2;
        EXPECT_EQ(std::isnan(cpu_loss.item()), nan_row) << what << ": CPU loss " << cpu_loss.item();
        EXPECT_EQ(std::isnan(host_f32(gpu_loss).item()), nan_row)
            << what << ": CUDA loss " << host_f32(gpu_loss).item();
        const std::vector<double> cpu_grad = host_f32(cpu.grad()).to_vector();
        const std::vector<double> gpu_grad = host_f32(gpu.grad()).to_vector();
        for (int64_t c = 0; c < classes; ++c) {
          EXPECT_EQ(std::isnan(cpu_grad[c]), nan_row) << what << ": CPU dlogits[" << c << "]";
          EXPECT_EQ(std::isnan(gpu_grad[c]), nan_row)
              << what << ": CUDA dlogits[" << c << "] " << gpu_grad[c];
        }
      }
    }
  }
}

TEST(CudaCrossEntropy, Bf16LogitsGiveAnF32Loss_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Tensor logits = uniform_cpu({5, 7}, 3101).to(DType::BF16).to(kCuda);
  const Tensor targets = Tensor::from_vector_i64({0, 6, 3, 3, 1}, {5}, DType::I64, kCuda);
  const Tensor loss = ops::cross_entropy(logits, targets);
  EXPECT_EQ(loss.dtype(), DType::F32);
  EXPECT_EQ(ops::cross_entropy(logits.to(DType::F32), targets).dtype(), DType::F32);
}

TEST(CudaCrossEntropy, AllRowsIgnoredGiveZeroLossAndGradient_CUDA) {
  SKIP_WITHOUT_CUDA();
  Tensor logits = uniform_cpu({4, 9}, 3201).to(kCuda).detach();
  logits.set_requires_grad(true);
  const Tensor targets = Tensor::full({4}, -100.0, DType::I64, kCuda);
  const Tensor loss = ops::cross_entropy(logits, targets);
  EXPECT_EQ(loss.item(), 0.0);
  loss.backward();
  EXPECT_TRUE(all_close(host_f32(logits.grad()), Tensor::zeros({4, 9}), kExact, "dlogits"));
}

TEST(CudaCrossEntropy, TargetOutsideTheClassesIsAnErrorNamingTheRow_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Tensor logits = Tensor::zeros({3, 5}, DType::F32, kCuda);
  const Tensor targets = Tensor::from_vector_i64({0, 5, 1}, {3}, DType::I64, kCuda);
  try {
    ops::cross_entropy(logits, targets);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
  }
}

// ---- embedding and index_select ------------------------------------------------------

// Ids in [0, vocab) from a seed, as `dtype`.
Tensor ids_cpu(const Shape& shape, int64_t vocab, uint64_t seed, DType dtype = DType::I64) {
  std::vector<double> u = uniform_cpu(shape, seed, 0.0, 1.0).to_vector();
  std::vector<int64_t> ids;
  for (double x : u)
    ids.push_back(static_cast<int64_t>(x * static_cast<double>(vocab)));
  return Tensor::from_vector_i64(ids, shape, dtype);
}

TEST(CudaEmbedding, GatherAndScatterAddEqualTheCpuExactly_CUDA) {
  SKIP_WITHOUT_CUDA();
  // The gather copies; the gradient rows are summed in id-position order from 0 like the
  // CPU's sequential scatter-add, so f32 is bit-identical; bf16 rounds the f32 sum once.
  struct Case {
    int64_t vocab, dim;
    Shape ids;
    DType id_dtype;
  };
  const std::vector<Case> cases = {{33, 129, {7, 17}, DType::I64},
                                   {7, 64, {130}, DType::I32},  // every id repeated
                                   {129, 33, {1}, DType::I64}};
  uint64_t seed = 4000;
  for (const Case& c : cases) {
    const Tensor weight = uniform_cpu({c.vocab, c.dim}, ++seed);
    const Tensor ids = ids_cpu(c.ids, c.vocab, ++seed, c.id_dtype);
    Shape out_shape = c.ids;
    out_shape.push_back(c.dim);
    const Tensor g = uniform_cpu(out_shape, ++seed);
    expect_cuda_matches_cpu("embedding V=" + std::to_string(c.vocab) + " ids " + shape_str(c.ids),
                            [ids](const std::vector<Tensor>& in) {
                              return ops::embedding(in[0], ids.to(in[0].device()));
                            },
                            {weight}, g, {kExact, kExact, bf16_after(kExact)});
  }
}

TEST(CudaEmbedding, GradientIsBitwiseRepeatableWithManyRepeatedIds_CUDA) {
  SKIP_WITHOUT_CUDA();
  // 4096 ids over 7 values of a 1000-row table: long segments, 993 untouched rows.
  const Tensor ids = ids_cpu({4096}, 7, 4101);
  const Tensor g = uniform_cpu({4096, 64}, 4102);
  auto dweight = [&](Device device) {
    Tensor w = Tensor::zeros({1000, 64}, DType::F32, device);
    w.set_requires_grad(true);
    ops::embedding(w, ids.to(device)).backward(g.to(device));
    return host_f32(w.grad());
  };
  const Tensor first = dweight(kCuda), second = dweight(kCuda);
  EXPECT_TRUE(all_close(first, second, kExact, "two CUDA runs"));
  EXPECT_TRUE(all_close(first, dweight(kCpu), kExact, "CUDA against the CPU"));
}

TEST(CudaIndexSelect, ForwardAndBackwardEqualTheCpuExactly_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Tensor x = uniform_cpu({5, 33, 7}, 4201);
  uint64_t seed = 4210;
  for (int64_t dim : {0, 1, 2, -1}) {
    for (DType index_dtype : {DType::I64, DType::I32}) {
      const int64_t n = x.size(dim);
      const Tensor index = ids_cpu({9}, n, ++seed, index_dtype);  // repeats when n < 9
      Shape out_shape = x.shape();
      out_shape[dim < 0 ? dim + 3 : dim] = 9;
      const Tensor g = uniform_cpu(out_shape, ++seed);
      expect_cuda_matches_cpu(
          "index_select dim " + std::to_string(dim) + " " + std::string(dtype_name(index_dtype)),
          [index, dim](const std::vector<Tensor>& in) {
            return ops::index_select(in[0], dim, index.to(in[0].device()));
          },
          {x}, g, {kExact, kExact, bf16_after(kExact)});
    }
  }
}

// ---- RMSNorm and LayerNorm -------------------------------------------------------------

// Widths 64, 1000, 32, 256, 2048, 4096 and 8192 take the 16-byte kernels (the 300 rows of 256
// over several chunks of the backward; the RMSNorm forward's warp per row holds 1 to 16 vectors
// per lane across the dtypes, and f32/f64 rows of 4096 take its block-per-row kernel; bf16 rows
// of 8192 are 1024 vectors, the fused RMSNorm backward's widest block of 1024 threads, which
// once needed more registers than a block has); 33 and 129 the scalar ones.
const std::vector<Shape> kNormShapes = {{7, 33},    {3, 5, 129}, {2, 64},   {1, 1000}, {130, 32},
                                        {300, 256}, {5, 2048},   {3, 4096}, {2, 8192}};

// f32 units of the norms: the row's sum of squares (positive terms) errs by n u relative, so
// rstd and y by (n + 8) u; dx adds mean(g xhat) with sum |g xhat| <= 4n (|dy| <= 1, weight
// <= 1.5, |xhat| <= 2.5 for these rows) scaled by rstd |xhat|; dweight/dbias sum R rows of
// terms below 4: 10 (n + 8) + 4 R (R + n + 8) units.
double norm_units(const Shape& shape) {
  const double n = static_cast<double>(shape.back());
  const double rows = static_cast<double>(shape_numel(shape)) / n;
  return 10 * (n + 8) + 4 * rows * (rows + n + 8);
}

// The norms' tolerances: norm_units for the gradients (the dweight sums over rows dominate), and
// for the forward output only its own 10 (n + 16) units (RMSNorm: the positive sum of squares
// errs by n u relative, y by ~(n / 2 + 3) u; LayerNorm: the mean's sum of mixed signs by up to
// 2 n u absolute, y by ~4.5 n u): the gradients' bound would pass a forward off by percents.
Tolerances norm_tolerances(const Shape& shape) {
  const Tolerance f32 = f32_within(norm_units(shape));
  Tolerances tol{f32, bf16_after(f32), bf16_after(f32)};
  tol.f32_out = f32_within(10 * (static_cast<double>(shape.back()) + 16));
  return tol;
}

TEST(CudaNorms, RmsNormMatchesTheCpuForwardAndBackward_CUDA) {
  SKIP_WITHOUT_CUDA();
  // bf16: HF rounds the normalized x before the weight multiplies it: two roundings of the
  // output, within the bf16 rtol; the gradients are computed in f32 and rounded once.
  uint64_t seed = 5000;
  for (const Shape& shape : kNormShapes) {
    const Tensor x = uniform_cpu(shape, ++seed, -2.0, 2.0);
    const Tensor w = uniform_cpu({shape.back()}, ++seed, 0.5, 1.5);
    const Tensor g = uniform_cpu(shape, ++seed);
    expect_cuda_matches_cpu(
        "rms_norm " + shape_str(shape),
        [](const std::vector<Tensor>& in) { return ops::rms_norm(in[0], in[1], 1e-5); }, {x, w}, g,
        norm_tolerances(shape));
    expect_cuda_matches_cpu(
        "rms_norm without weight " + shape_str(shape),
        [](const std::vector<Tensor>& in) { return ops::rms_norm(in[0], Tensor(), 1e-5); }, {x}, g,
        norm_tolerances(shape));
  }
}

TEST(CudaNorms, RmsNormRunsInF16UpToRowsOf1024Vectors_CUDA) {
  SKIP_WITHOUT_CUDA();
  // f16 takes the 16-byte paths of bf16 (8 values a vector): rows of 8192 launch the fused
  // backward with 1024 threads. Against the CPU f32 run on f16-rounded inputs: the output is
  // rounded twice (HF rounds the normalized x before the weight multiplies it), dx and dweight
  // once, each within the f16 rtol (2.05 units of 2^-11) plus the f32 error.
  uint64_t seed = 5200;
  for (const Shape& shape : {Shape{300, 256}, Shape{3, 4096}, Shape{2, 8192}}) {
    auto f16_values = [&](const Shape& s, double lo, double hi) {
      return uniform_cpu(s, ++seed, lo, hi).to(DType::F16).to(DType::F32);
    };
    const Tensor x = f16_values(shape, -2.0, 2.0);
    const Tensor w = f16_values({shape.back()}, 0.5, 1.5);
    const Tensor g = f16_values(shape, -1.0, 1.0);
    const GraphFn fn = [](const std::vector<Tensor>& in) {
      return ops::rms_norm(in[0], in[1], 1e-5);
    };
    const Outcome reference = run_graph(fn, {x, w}, g, DType::F32, kCpu);
    ASSERT_TRUE(has_nonzero(reference.out, "rms_norm f16 reference"));
    const Outcome gpu = run_graph(fn, {x, w}, g, DType::F16, kCuda);
    const Tolerance f32 = f32_within(norm_units(shape));
    const Tolerance table = tolerance_for(DType::F16);
    const Tolerance tol{std::max(table.atol, f32.atol), table.rtol + f32.rtol};
    const std::string what = "rms_norm f16 " + shape_str(shape);
    EXPECT_TRUE(all_close(gpu.out, reference.out, tol, what + " forward"));
    EXPECT_TRUE(all_close(gpu.grads[0], reference.grads[0], tol, what + " dx"));
    EXPECT_TRUE(all_close(gpu.grads[1], reference.grads[1], tol, what + " dweight"));
  }
}

TEST(CudaNorms, LayerNormMatchesTheCpuForwardAndBackward_CUDA) {
  SKIP_WITHOUT_CUDA();
  uint64_t seed = 5100;
  for (const Shape& shape : kNormShapes) {
    const Tensor x = uniform_cpu(shape, ++seed, -2.0, 2.0);
    const Tensor w = uniform_cpu({shape.back()}, ++seed, 0.5, 1.5);
    const Tensor b = uniform_cpu({shape.back()}, ++seed);
    const Tensor g = uniform_cpu(shape, ++seed);
    expect_cuda_matches_cpu(
        "layer_norm " + shape_str(shape),
        [](const std::vector<Tensor>& in) { return ops::layer_norm(in[0], in[1], in[2], 1e-5); },
        {x, w, b}, g, norm_tolerances(shape));
    expect_cuda_matches_cpu(
        "layer_norm without affine " + shape_str(shape),
        [](const std::vector<Tensor>& in) {
          return ops::layer_norm(in[0], Tensor(), Tensor(), 1e-5);
        },
        {x}, g, norm_tolerances(shape));
  }
}

// ---- rotary and causal mask ---------------------------------------------------------

TEST(CudaRotary, ApplyRotaryMatchesTheCpuForwardAndBackward_CUDA) {
  SKIP_WITHOUT_CUDA();
  // Tables rounded to bf16 values up front, so the bf16 run and its f32 reference use the
  // same cos/sin. Each output is x c -/+ x' s with |x| <= 1: a few roundings (8 units).
  struct Case {
    Shape x;
    bool broadcast_batch;  // cos/sin [B, 1, S, D] instead of [S, D]
  };
  const std::vector<Case> cases = {{{2, 6, 17, 64}, false},
                                   {{1, 2, 130, 32}, false},
                                   {{2, 3, 1, 64}, false},
                                   {{2, 3, 17, 32}, true},
                                   {{2, 4, 9, 12}, false}};  // half of 12: the scalar kernel
  uint64_t seed = 6000;
  for (const Case& c : cases) {
    const int64_t seq = c.x[2], dim = c.x[3];
    auto [cos, sin] = ops::rotary_tables(seq, dim, 10000.0);
    cos = round_to_bf16(cos);
    sin = round_to_bf16(sin);
    if (c.broadcast_batch) {
      cos = cos.unsqueeze(0).unsqueeze(0).expand({c.x[0], 1, seq, dim}).contiguous();
      sin = sin.unsqueeze(0).unsqueeze(0).expand({c.x[0], 1, seq, dim}).contiguous();
    }
    const Tensor x = uniform_cpu(c.x, ++seed);
    const Tensor g = uniform_cpu(c.x, ++seed);
    const Tolerance f32 = f32_within(8);
    expect_cuda_matches_cpu(
        "apply_rotary " + shape_str(c.x) + (c.broadcast_batch ? " [B,1,S,D] tables" : ""),
        [cos, sin](const std::vector<Tensor>& in) {
          const Tensor& x = in[0];
          return ops::apply_rotary(x, cos.to(x.dtype()).to(x.device()),
                                   sin.to(x.dtype()).to(x.device()));
        },
        {x}, g, {f32, bf16_after(f32), bf16_after(f32)});
  }
}

TEST(CudaCausalMask, MaskMatchesTheCpuExactly_CUDA) {
  SKIP_WITHOUT_CUDA();
  uint64_t seed = 6100;
  for (const Shape& shape : {Shape{2, 3, 17, 17}, Shape{2, 7, 33}, Shape{5, 9}, Shape{1, 1}}) {
    const Tensor x = uniform_cpu(shape, ++seed);
    const Tensor g = uniform_cpu(shape, ++seed);
    expect_cuda_matches_cpu(
        "causal_mask " + shape_str(shape),
        [](const std::vector<Tensor>& in) { return ops::causal_mask(in[0], -5.0); }, {x}, g,
        {kExact, kExact, kExact});
  }
}

TEST(CudaCausalMask, MaskedSoftmaxMatchesTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  // The -inf fill, then softmax over the keys (Sq <= Sk, so no row is fully masked).
  const Tensor x = uniform_cpu({2, 3, 17, 33}, 6201, -3.0, 3.0);
  const Tensor g = uniform_cpu({2, 3, 17, 33}, 6202);
  const Tolerance f32 = f32_within(3 * 33 + 20);
  expect_cuda_matches_cpu(
      "softmax(causal_mask)",
      [](const std::vector<Tensor>& in) { return ops::softmax(ops::causal_mask(in[0]), -1); }, {x},
      g, {f32, bf16_after(f32), std::nullopt});
}

// ---- scaled-dot-product attention -----------------------------------------------------

struct AttentionCase {
  int64_t batch, hq, hkv, seq, dim;
};

// f32 units of attention with q, k, v, dout in [-1, 1]: a score sums D products (partial sums
// below D, scaled by 1/sqrt(D)), dp = dout . v sums D, delta and the dq/dk/dv sums run over
// S terms below 2D: 4 (D^2 + S D) units.
double attention_units(const AttentionCase& c) {
  const double d = static_cast<double>(c.dim), s = static_cast<double>(c.seq);
  return 4 * (d * d + s * d);
}

// bf16 with head dim 32/64/96/128 runs on the tensor-core kernels, which round each
// probability and each dS to bf16 before its second product (as FlashAttention does): a result
// then errs by about a bf16 unit of its largest terms. In the CPU emulation of those kernels
// (tests/kernels/test_tensor_core_attention_emulated.cpp) the worst error was 0.5 % of the
// tensor's largest reference magnitude; 6 units of 2^-9 (1.2 %) is the allowance.
constexpr double kTensorCoreAttentionAtol = 6 * kBf16Unit;

TEST(CudaAttention, GroupedQueryAttentionMatchesTheCpuForwardAndBackward_CUDA) {
  SKIP_WITHOUT_CUDA();
  const std::vector<AttentionCase> cases = {
      {2, 6, 2, 1, 64},  {2, 6, 2, 17, 64},  {1, 6, 2, 130, 64},
      {2, 6, 2, 17, 32}, {1, 6, 2, 130, 32}, {2, 3, 3, 17, 32},
      {1, 4, 1, 33, 64}, {1, 2, 1, 9, 1},    {1, 2, 2, 5, 256},
  };
  uint64_t seed = 7000;
  for (const AttentionCase& c : cases) {
    for (bool causal : {true, false}) {
      const Tensor q = uniform_cpu({c.batch, c.hq, c.seq, c.dim}, ++seed);
      const Tensor k = uniform_cpu({c.batch, c.hkv, c.seq, c.dim}, ++seed);
      const Tensor v = uniform_cpu({c.batch, c.hkv, c.seq, c.dim}, ++seed);
      const Tensor g = uniform_cpu({c.batch, c.hq, c.seq, c.dim}, ++seed);
      const Tolerance f32 = f32_within(attention_units(c));
      expect_cuda_matches_cpu(
          "attention B=" + std::to_string(c.batch) + " Hq=" + std::to_string(c.hq) +
              " Hkv=" + std::to_string(c.hkv) + " S=" + std::to_string(c.seq) +
              " D=" + std::to_string(c.dim) + (causal ? " causal" : ""),
          [causal](const std::vector<Tensor>& in) {
            return ops::scaled_dot_product_attention(in[0], in[1], in[2], causal);
          },
          {q, k, v}, g, {f32, bf16_after(f32), bf16_after(f32), kTensorCoreAttentionAtol});
    }
  }
}

TEST(CudaAttention, ExplicitScaleAndStridedInputsMatchTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  // q, k, v as [B, S, H, D] projections viewed as [B, H, S, D] (non-contiguous).
  const AttentionCase c{2, 6, 2, 17, 32};
  const Tensor q = uniform_cpu({2, 17, 6, 32}, 7101), k = uniform_cpu({2, 17, 2, 32}, 7102);
  const Tensor v = uniform_cpu({2, 17, 2, 32}, 7103), g = uniform_cpu({2, 6, 17, 32}, 7104);
  const Tolerance f32 = f32_within(attention_units(c));
  expect_cuda_matches_cpu(
      "attention of transposed views, scale 0.3",
      [](const std::vector<Tensor>& in) {
        return ops::scaled_dot_product_attention(in[0].transpose(1, 2), in[1].transpose(1, 2),
                                                 in[2].transpose(1, 2), true, 0.3);
      },
      {q, k, v}, g, {f32, bf16_after(f32), bf16_after(f32), kTensorCoreAttentionAtol});
}

TEST(CudaAttention, ContiguousViewsOffA16ByteBoundaryMatchTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  // Each input is a contiguous view one element into a larger buffer: the tensor-core path
  // (bf16, D = 64) must not load 16 bytes from a misaligned address.
  const AttentionCase c{1, 4, 2, 37, 64};
  auto offset_view = [](const Tensor& t) {
    return ops::cat({Tensor::zeros({1}, t.dtype(), t.device()), t.reshape({t.numel()})}, 0)
        .narrow(0, 1, t.numel())
        .reshape(t.shape());
  };
  const Tensor q = uniform_cpu({1, 4, 37, 64}, 7201), k = uniform_cpu({1, 2, 37, 64}, 7202);
  const Tensor v = uniform_cpu({1, 2, 37, 64}, 7203), g = uniform_cpu({1, 4, 37, 64}, 7204);
  const Tolerance f32 = f32_within(attention_units(c));
  expect_cuda_matches_cpu("attention of views one element into their buffers",
                          [&](const std::vector<Tensor>& in) {
                            return ops::scaled_dot_product_attention(
                                offset_view(in[0]), offset_view(in[1]), offset_view(in[2]), true);
                          },
                          {q, k, v}, g,
                          {f32, bf16_after(f32), bf16_after(f32), kTensorCoreAttentionAtol});
}

// The tensor-core kernels read q, k, v at their own strides (here per-head views of one fused
// [B, S, (Hq + 2 Hkv) D] projection, as a fused qkv layer leaves them), write the output in
// [B, S, Hq, D] order and each gradient in its input's order. The kernels' arithmetic does not
// depend on the layout (the CPU emulation checks the bits), so output and gradients must equal
// those of contiguous copies bit for bit. A row stride that is not a multiple of 8 elements
// falls back to copies, with the same results.
TEST(CudaAttention, StridedOperandsAreReadInPlaceAndGiveTheContiguousResultsExactly_CUDA) {
  SKIP_WITHOUT_CUDA();
  const int64_t b = 2, s = 100, hq = 8, hkv = 2, d = 64;
  for (int64_t extra : {0, 4}) {  // columns beyond the projections: row stride % 8 == extra
    SCOPED_TRACE("extra columns " + std::to_string(extra));
    const int64_t width = (hq + 2 * hkv) * d + extra;
    const Tensor fused = uniform_cpu({b, s, width}, 7301).to(DType::BF16).to(kCuda);
    const Tensor g = uniform_cpu({b, hq, s, d}, 7302).to(DType::BF16).to(kCuda);
    auto heads = [&](const Tensor& t, int64_t first, int64_t count) {
      return t.narrow(2, first * d, count * d).reshape({b, s, count, d}).transpose(1, 2);
    };
    // Leaves: the fused projection, and contiguous copies of the three views.
    Tensor fused_leaf = fused.detach();
    fused_leaf.set_requires_grad(true);
    std::vector<Tensor> copies = {heads(fused, 0, hq).contiguous(),
                                  heads(fused, hq, hkv).contiguous(),
                                  heads(fused, hq + hkv, hkv).contiguous()};
    for (Tensor& c : copies)
      c.set_requires_grad(true);
    const Tensor strided_out =
        ops::scaled_dot_product_attention(heads(fused_leaf, 0, hq), heads(fused_leaf, hq, hkv),
                                          heads(fused_leaf, hq + hkv, hkv), true);
    const Tensor copied_out =
        ops::scaled_dot_product_attention(copies[0], copies[1], copies[2], true);
    EXPECT_TRUE(strided_out.transpose(1, 2).is_contiguous()) << "output not in [B, S, H, D]";
    EXPECT_TRUE(all_close(host_f32(strided_out), host_f32(copied_out), kExact, "output"));
    strided_out.backward(g);
    copied_out.backward(g);
    const Tensor fused_grad = fused_leaf.grad();
    for (int i = 0; i < 3; ++i) {
      const int64_t first = i == 0 ? 0 : (i == 1 ? hq : hq + hkv), count = i == 0 ? hq : hkv;
      EXPECT_TRUE(all_close(host_f32(heads(fused_grad, first, count)), host_f32(copies[i].grad()),
                            kExact, "gradient of operand " + std::to_string(i)));
    }
  }
}

// dq from the dS the dk/dv kernel stores (ops::AttentionKernels::dq_from_stored_scores) against
// the recomputing backward: the same bits for every gradient, with q, k, v read in place from a
// fused projection, partial tiles, causal and not, both 16-bit formats and head dims 64 and 128;
// and with buffer limits that split the problem into pieces (one batch entry each, one kv head
// each).
TEST(CudaAttention, StoredScoreBackwardGivesTheRecomputingGradientsExactly_CUDA) {
  SKIP_WITHOUT_CUDA();
  const int64_t b = 2, s = 100, hq = 8, hkv = 2;
  for (const DType dtype : {DType::BF16, DType::F16}) {
    for (const int64_t d : {64, 128}) {
      for (const bool causal : {true, false}) {
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " D=" + std::to_string(d) + " causal " +
                     std::to_string(causal));
        const Tensor fused = uniform_cpu({b, s, (hq + 2 * hkv) * d}, 7401).to(dtype).to(kCuda);
        const Tensor g = uniform_cpu({b, hq, s, d}, 7402).to(dtype).to(kCuda);
        auto gradient = [&](const ops::AttentionKernels& variant) {
          Tensor leaf = fused.detach();
          leaf.set_requires_grad(true);
          auto heads = [&](int64_t first, int64_t count) {
            return leaf.narrow(2, first * d, count * d).reshape({b, s, count, d}).transpose(1, 2);
          };
          ops::scaled_dot_product_attention(heads(0, hq), heads(hq, hkv), heads(hq + hkv, hkv),
                                            causal, 0.0, variant)
              .backward(g);
          return host_f32(leaf.grad());
        };
        ops::AttentionKernels stored;
        stored.dq_from_stored_scores = true;
        const int64_t per_kv_head =
            kernels::stored_scores_per_kv_head(hq, hkv, s, causal) * 2;  // bytes
        ops::AttentionKernels by_batch_entry = stored, by_kv_head = stored;
        by_batch_entry.stored_scores_max_bytes = hkv * per_kv_head;
        by_kv_head.stored_scores_max_bytes = 1;
        const Tensor recomputed = gradient({});
        const Tensor flat = recomputed.contiguous();
        const float* values = flat.data<float>();
        ASSERT_TRUE(std::any_of(values, values + flat.numel(), [](float x) { return x != 0.0f; }));
        EXPECT_TRUE(all_close(gradient(stored), recomputed, kExact, "q, k, v gradients"));
        EXPECT_TRUE(all_close(gradient(by_batch_entry), recomputed, kExact,
                              "q, k, v gradients, one batch entry per piece"));
        EXPECT_TRUE(all_close(gradient(by_kv_head), recomputed, kExact,
                              "q, k, v gradients, one kv head per piece"));
      }
    }
  }
}

TEST(CudaAttention, HeadDimAboveTheKernelLimitIsAnError_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Tensor q = Tensor::zeros({1, 1, 3, 320}, DType::F32, kCuda);
  try {
    ops::scaled_dot_product_attention(q, q, q);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("320"), std::string::npos) << e.what();
  }
}

// ---- a toy decoder block: embedding, attention, SwiGLU MLP, loss ----------------------

constexpr int64_t kToyBatch = 2, kToySeq = 17, kToyHeads = 6, kToyKvHeads = 2, kToyHeadDim = 32;
constexpr int64_t kToyHidden = kToyHeads * kToyHeadDim;  // 192
constexpr int64_t kToyKv = kToyKvHeads * kToyHeadDim;    // 64
constexpr int64_t kToyFfn = 255, kToyVocab = 129;

// Parameters (CPU f32): embed [V, H], attn_norm [H], q [H, H], k [KV, H], v [KV, H],
// o [H, H], mlp_norm [H], gate [F, H], up [F, H], down [H, F], final_norm [H], lm_head [V, H].
std::vector<Tensor> toy_parameters() {
  auto linear_weight = [](int64_t out, int64_t in, uint64_t seed) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    return uniform_cpu({out, in}, seed, -bound, bound);
  };
  auto norm_weight = [](uint64_t seed) { return uniform_cpu({kToyHidden}, seed, 0.8, 1.2); };
  return {uniform_cpu({kToyVocab, kToyHidden}, 8001),
          norm_weight(8002),
          linear_weight(kToyHidden, kToyHidden, 8003),
          linear_weight(kToyKv, kToyHidden, 8004),
          linear_weight(kToyKv, kToyHidden, 8005),
          linear_weight(kToyHidden, kToyHidden, 8006),
          norm_weight(8007),
          linear_weight(kToyFfn, kToyHidden, 8008),
          linear_weight(kToyFfn, kToyHidden, 8009),
          linear_weight(kToyHidden, kToyFfn, 8010),
          norm_weight(8011),
          linear_weight(kToyVocab, kToyHidden, 8012)};
}

// The block's mean cross-entropy loss on fixed ids and targets (a few targets ignored).
GraphFn toy_block() {
  const Tensor ids = ids_cpu({kToyBatch, kToySeq}, kToyVocab, 8101);
  const Tensor targets = targets_cpu(kToyBatch * kToySeq, kToyVocab, -100, DType::I64, 8102);
  auto [cos, sin] = ops::rotary_tables(kToySeq, kToyHeadDim, 10000.0);
  cos = round_to_bf16(cos);
  sin = round_to_bf16(sin);
  return [ids, targets, cos, sin](const std::vector<Tensor>& p) {
    const Device device = p[0].device();
    const DType dtype = p[0].dtype();
    auto heads = [](const Tensor& t, int64_t n) {  // [B, S, n * D] -> [B, n, S, D]
      return t.reshape({kToyBatch, kToySeq, n, kToyHeadDim}).transpose(1, 2);
    };
    const Tensor c = cos.to(dtype).to(device), s = sin.to(dtype).to(device);
    Tensor x = ops::embedding(p[0], ids.to(device));  // [B, S, H]
    Tensor h = ops::rms_norm(x, p[1], 1e-5);
    const Tensor q = ops::apply_rotary(heads(ops::linear(h, p[2]), kToyHeads), c, s);
    const Tensor k = ops::apply_rotary(heads(ops::linear(h, p[3]), kToyKvHeads), c, s);
    const Tensor v = heads(ops::linear(h, p[4]), kToyKvHeads);
    const Tensor attn = ops::scaled_dot_product_attention(q, k, v, true)
                            .transpose(1, 2)
                            .reshape({kToyBatch, kToySeq, kToyHidden});
    x = x + ops::linear(attn, p[5]);
    h = ops::rms_norm(x, p[6], 1e-5);
    x = x + ops::linear(ops::silu(ops::linear(h, p[7])) * ops::linear(h, p[8]), p[9]);
    const Tensor logits =
        ops::linear(ops::rms_norm(x, p[10], 1e-5), p[11]).reshape({kToyBatch * kToySeq, kToyVocab});
    return ops::cross_entropy(logits, targets.to(device));
  };
}

// Relative to the tensor's scale: |actual - expected| <= units * u * max|expected|.
Tolerance scaled_f32(const Tensor& expected, double units) {
  double scale = 0.0;
  for (double v : expected.to_vector())
    scale = std::max(scale, std::fabs(v));
  return {std::max(tolerance_for(DType::F32).atol, units * kF32Unit * scale),
          tolerance_for(DType::F32).rtol};
}

TEST(CudaToyBlock, DecoderBlockLossAndGradientsMatchTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  const std::vector<Tensor> params = toy_parameters();
  const GraphFn block = toy_block();
  const Tensor one = Tensor::ones({});
  // f64: both devices accumulate in f64, so every gradient agrees to the f64 table.
  const Outcome cpu64 = run_graph(block, params, one, DType::F64, kCpu);
  const Outcome gpu64 = run_graph(block, params, one, DType::F64, kCuda);
  EXPECT_TRUE(all_close(gpu64.out, cpu64.out, kCudaF64Tolerance, "loss f64"));
  for (size_t i = 0; i < params.size(); ++i) {
    ASSERT_TRUE(has_nonzero(cpu64.grads[i], "reference grad " + std::to_string(i)));
    EXPECT_TRUE(all_close(gpu64.grads[i], cpu64.grads[i], kCudaF64Tolerance,
                          "grad of parameter " + std::to_string(i) + " f64"));
  }
  // f32: each op errs by at most its units (attention's 4 (D^2 + S D) = 6272 is the largest;
  // the GEMMs' K^2 with K <= 255 are below it after the 1/sqrt(K) weight scale), relative to
  // its output's scale; a chain of 16 ops adds them up: 16 * 6272 units of each tensor's
  // largest value.
  const double units = 16 * 6272;
  const Outcome cpu = run_graph(block, params, one, DType::F32, kCpu);
  const Outcome gpu = run_graph(block, params, one, DType::F32, kCuda);
  EXPECT_TRUE(all_close(gpu.out, cpu.out, scaled_f32(cpu.out, units), "loss f32"));
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(all_close(gpu.grads[i], cpu.grads[i], scaled_f32(cpu.grads[i], units),
                          "grad of parameter " + std::to_string(i) + " f32"));
  }
  // bf16: every op's output is rounded to bf16 (2^-9 relative) along 16 ops before the f32
  // loss; the loss, an average of log-probabilities near log(V), moves by at most that
  // relative error of the logits' scale. bf16 gradients of the whole chain are not compared
  // (each op's bf16 gradient is, above).
  std::vector<Tensor> rounded;
  for (const Tensor& p : params)
    rounded.push_back(round_to_bf16(p));
  const Outcome reference = run_graph(block, rounded, one, DType::F32, kCpu);
  const Outcome gpu16 = run_graph(block, params, one, DType::BF16, kCuda);
  EXPECT_TRUE(all_close(gpu16.out, reference.out, Tolerance{0.0, 16 * kBf16Unit}, "loss bf16"));
}

// ---- gradient sums folded into the kernels (PendingGradients) ------------------------------

// The engine's summary of one f32 backward of `fn` on `device` (which sums were folded).
BackwardSummary summary_of(const GraphFn& fn, const std::vector<Tensor>& inputs,
                           const Tensor& grad_out, Device device) {
  std::vector<Tensor> leaves;
  for (const Tensor& in : inputs) {
    Tensor leaf = in.to(device).detach();
    leaf.set_requires_grad(true);
    leaves.push_back(leaf);
  }
  const Tensor out = fn(leaves);
  return run_backward(out, grad_out.to(device), false);
}

TEST(CudaGradientFolding, ProjectionsOfOneInputAccumulateInTheGemmLikeTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  // q, k and v (or gate and up) reading one input: the second and third dx accumulate in the
  // GEMM (beta = 1). Integer values: exact in f32; bf16 rounds each folded sum once.
  const Tensor x = integers_cpu({2, 7, 33}, 8101);
  const Tensor wq = integers_cpu({40, 33}, 8102), wk = integers_cpu({40, 33}, 8103);
  const Tensor wv = integers_cpu({40, 33}, 8104), g = integers_cpu({2, 7, 40}, 8105);
  const GraphFn fn = [](const std::vector<Tensor>& in) {
    return ops::add(ops::add(ops::linear(in[0], in[1]), ops::linear(in[0], in[2])),
                    ops::linear(in[0], in[3]));
  };
  expect_cuda_matches_cpu("three projections of one input", fn, {x, wq, wk, wv}, g,
                          {kExact, kBf16, kBf16});
  const BackwardSummary summary = summary_of(fn, {x, wq, wk, wv}, g, kCuda);
  EXPECT_EQ(summary.folded_sums, 2);
  EXPECT_EQ(summary.engine_sums, 0);
}

TEST(CudaGradientFolding, AResidualGradientIsAddedInTheRmsNormBackwardLikeTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  // h = x + 0.5 rms_norm(x): the skip path's gradient is pending for x, owned by the engine,
  // and the norm's dx pass adds it in place. h = x + rms_norm(x): the pending buffer is also
  // the norm's dy, so it is read as the addend and dx goes elsewhere. Both kernel paths
  // (16-byte rows and scalar rows) by the norm shapes.
  uint64_t seed = 8200;
  for (const Shape& shape : kNormShapes) {
    const Tensor x = uniform_cpu(shape, ++seed, -2.0, 2.0);
    const Tensor w = uniform_cpu({shape.back()}, ++seed, 0.5, 1.5);
    const Tensor g = uniform_cpu(shape, ++seed);
    const Tolerance f32 = f32_within(norm_units(shape) + 2);
    for (const bool scaled : {true, false}) {
      const GraphFn fn = [scaled](const std::vector<Tensor>& in) {
        const Tensor branch = ops::rms_norm(in[0], in[1], 1e-5);
        return ops::add(in[0], scaled ? ops::mul(branch, 0.5) : branch);
      };
      expect_cuda_matches_cpu(
          std::string("residual rms_norm ") + (scaled ? "scaled " : "") + shape_str(shape), fn,
          {x, w}, g, {f32, bf16_after(f32), bf16_after(f32)});
      const BackwardSummary summary = summary_of(fn, {x, w}, g, kCuda);
      EXPECT_EQ(summary.folded_sums, 1);
      EXPECT_EQ(summary.engine_sums, 0);
    }
  }
}

TEST(CudaGradientFolding, TiedEmbeddingGradientIsScatteredOntoTheLmHeadsLikeTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  // logits = embedding(E, ids) E^T: the lm_head's dE is pending when the embedding's backward
  // runs, which scatters onto it in place on CUDA (the CPU adds). Integer values: exact in f32.
  const Tensor table = integers_cpu({33, 40}, 8301);
  const Tensor ids = ids_cpu({3, 9}, 33, 8302);
  const Tensor g = integers_cpu({3, 9, 33}, 8303);
  const GraphFn fn = [ids](const std::vector<Tensor>& in) {
    return ops::linear(ops::embedding(in[0], ids.to(in[0].device())), in[0]);
  };
  expect_cuda_matches_cpu("tied embedding", fn, {table}, g, {kExact, kBf16, kBf16});
  const BackwardSummary summary = summary_of(fn, {table}, g, kCuda);
  EXPECT_EQ(summary.folded_sums, 1);
  EXPECT_EQ(summary.engine_sums, 0);
}

}  // namespace
}  // namespace autotp
