// ops::swiglu (fused silu(gate) * up): values and gradients against the unfused
// ops::mul(ops::silu(gate), up) in f64 and f32, finite-difference gradient checks on odd shapes
// and strided views, stability for large |gate| against the naive f64 formula, and shape errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_f64;
using testing::tolerance_for;

Tensor unfused(const Tensor& gate, const Tensor& up) {
  return ops::mul(ops::silu(gate), up);
}

struct Outcome {
  Tensor out, d_gate, d_up;
};

// Runs `fn` on leaves made from gate and up (in `dtype`) and backpropagates `dy`.
Outcome run(const std::function<Tensor(const Tensor&, const Tensor&)>& fn, const Tensor& gate,
            const Tensor& up, const Tensor& dy, DType dtype) {
  Tensor g = gate.to(dtype).detach().set_requires_grad();
  Tensor u = up.to(dtype).detach().set_requires_grad();
  const Tensor out = fn(g, u);
  EXPECT_EQ(out.dtype(), dtype);
  out.backward(dy.to(dtype));
  return {out.detach(), g.grad(), u.grad()};
}

// Both values and gradients of the fused op against the unfused ops, within `dtype`'s
// tolerance (the two differ only in the rounding of a few scalar operations per element).
void expect_fused_matches_unfused(const Shape& shape, uint64_t seed, DType dtype) {
  // gate spans both branches of the stable sigmoid; dy is non-uniform.
  const Tensor gate = random_f64(shape, seed, false, -6.0, 6.0);
  const Tensor up = random_f64(shape, seed + 1, false, -2.0, 2.0);
  const Tensor dy = random_f64(shape, seed + 2, false, -1.0, 1.0);
  const Outcome fused = run(ops::swiglu, gate, up, dy, dtype);
  const Outcome reference = run(unfused, gate, up, dy, dtype);
  const std::string what = shape_str(shape) + " " + std::string(dtype_name(dtype));
  const testing::Tolerance tol = tolerance_for(dtype);
  EXPECT_TRUE(testing::all_close(fused.out, reference.out, tol, "swiglu " + what));
  EXPECT_TRUE(testing::all_close(fused.d_gate, reference.d_gate, tol, "d_gate " + what));
  EXPECT_TRUE(testing::all_close(fused.d_up, reference.d_up, tol, "d_up " + what));
}

TEST(Swiglu, ValuesAndGradientsMatchTheUnfusedOpsInF64AndF32) {
  uint64_t seed = 10;
  for (const Shape& shape : {Shape{3, 5}, Shape{2, 3, 7}, Shape{11}, Shape{}}) {
    for (DType dtype : {DType::F64, DType::F32}) {
      expect_fused_matches_unfused(shape, seed, dtype);
      seed += 3;
    }
  }
}

TEST(Swiglu, ValuesMatchTheScalarFormulaInF64) {
  const Tensor gate = random_f64({2, 3, 7}, 30, false, -6.0, 6.0);
  const Tensor up = random_f64({2, 3, 7}, 31, false, -2.0, 2.0);
  const std::vector<double> g = gate.to_vector(), u = up.to_vector();
  std::vector<double> expected(g.size());
  for (size_t i = 0; i < g.size(); ++i)
    expected[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  EXPECT_TRUE(testing::all_close(ops::swiglu(gate, up),
                                 Tensor::from_vector(expected, {2, 3, 7}, DType::F64),
                                 tolerance_for(DType::F64), "swiglu f64"));
}

TEST(Swiglu, ReadsTransposedNarrowedAndExpandedViews) {
  // gate: a transpose [5, 3] -> [3, 5]; up: a narrow of the last dim [3, 8] -> [3, 5];
  // the upstream gradient: an expanded row [1, 5] -> [3, 5]. Views are taken after the cast,
  // so the kernels read strided f32 and f64 memory.
  const Tensor gate_base = random_f64({5, 3}, 40, false, -6.0, 6.0);
  const Tensor up_base = random_f64({3, 8}, 41, false, -2.0, 2.0);
  const Tensor dy_row = random_f64({1, 5}, 42, false);
  auto run_on_views = [&](const std::function<Tensor(const Tensor&, const Tensor&)>& fn,
                          DType dtype) {
    Tensor g = gate_base.to(dtype).detach().set_requires_grad();
    Tensor u = up_base.to(dtype).detach().set_requires_grad();
    const Tensor gv = g.transpose(0, 1), uv = u.narrow(1, 2, 5);
    const Tensor dy = dy_row.to(dtype).expand({3, 5});
    EXPECT_FALSE(gv.is_contiguous() || uv.is_contiguous() || dy.is_contiguous());
    const Tensor out = fn(gv, uv);
    out.backward(dy);
    return Outcome{out.detach(), g.grad(), u.grad()};
  };
  for (DType dtype : {DType::F64, DType::F32}) {
    const Outcome fused = run_on_views(ops::swiglu, dtype);
    const Outcome reference = run_on_views(unfused, dtype);
    const testing::Tolerance tol = tolerance_for(dtype);
    const std::string what = std::string(dtype_name(dtype)) + " views";
    EXPECT_TRUE(testing::all_close(fused.out, reference.out, tol, "swiglu " + what));
    EXPECT_TRUE(testing::all_close(fused.d_gate, reference.d_gate, tol, "d_gate " + what));
    EXPECT_TRUE(testing::all_close(fused.d_up, reference.d_up, tol, "d_up " + what));
  }
}

TEST(Swiglu, GradientsMatchFiniteDifferencesOnOddShapesAndViews) {
  auto fused = [](const std::vector<Tensor>& in) { return ops::swiglu(in[0], in[1]); };
  EXPECT_GRADCHECK(fused, (std::vector<Tensor>{random_f64({3, 5}, 50, true, -4.0, 4.0),
                                               random_f64({3, 5}, 51)}));
  EXPECT_GRADCHECK(fused, (std::vector<Tensor>{random_f64({2, 3, 7}, 52, true, -4.0, 4.0),
                                               random_f64({2, 3, 7}, 53)}));
  // Non-contiguous: a transposed gate [5, 3] -> [3, 5] and a permuted up [7, 2, 3] -> [2, 3, 7].
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        return ops::swiglu(in[0].transpose(0, 1), in[1].narrow(1, 1, 5));
      },
      (std::vector<Tensor>{random_f64({5, 3}, 54, true, -4.0, 4.0), random_f64({3, 7}, 55)}));
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        return ops::swiglu(in[0], in[1].permute({1, 2, 0}));
      },
      (std::vector<Tensor>{random_f64({2, 3, 7}, 56, true, -4.0, 4.0), random_f64({7, 2, 3}, 57)}));
  // Only one operand requires a gradient.
  EXPECT_GRADCHECK(fused, (std::vector<Tensor>{random_f64({3, 5}, 58, false, -4.0, 4.0),
                                               random_f64({3, 5}, 59)}));
  EXPECT_GRADCHECK(fused, (std::vector<Tensor>{random_f64({3, 5}, 60, true, -4.0, 4.0),
                                               random_f64({3, 5}, 61, false)}));
}

TEST(Swiglu, AnOperandWithoutGradientGetsNone) {
  Tensor gate = random_f64({3, 5}, 70).detach().set_requires_grad();
  const Tensor up = random_f64({3, 5}, 71, false);
  ops::sum(ops::swiglu(gate, up)).backward();
  EXPECT_TRUE(gate.grad().defined());
  EXPECT_FALSE(up.grad().defined());
}

// silu(g) * u and both gradients by the textbook formula in f64: sig = 1 / (1 + exp(-g)).
struct NaiveSwiglu {
  std::vector<double> out, d_gate, d_up;
};
NaiveSwiglu naive_f64(const std::vector<double>& g, const std::vector<double>& u,
                      const std::vector<double>& dy) {
  NaiveSwiglu r;
  for (size_t i = 0; i < g.size(); ++i) {
    const double sig = 1.0 / (1.0 + std::exp(-g[i]));
    r.out.push_back(g[i] * sig * u[i]);
    r.d_gate.push_back(dy[i] * u[i] * sig * (1.0 + g[i] * (1.0 - sig)));
    r.d_up.push_back(dy[i] * g[i] * sig);
  }
  return r;
}

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector()) {
    if (!std::isfinite(v)) return false;
  }
  return true;
}

TEST(Swiglu, LargeGatesGiveFiniteValuesEqualToTheNaiveF64Formula) {
  // Every value is exact in f32, so f32 and f64 see the same inputs. At g = -80 the results are
  // about 1e-33, so the comparison is relative only (atol 0): the f32 rtol of the tolerance
  // table covers expf's ulp and the five roundings after it; exp(-g) overflows f32 for g < -89.
  const std::vector<double> g = {80, -80, 1000, -1000, 20, -20, 3, -3, 0.5, -0.5, 0};
  const std::vector<double> u = {0.75, -1.5, 2, -0.25, 1.25, -3, 0.5, 1, -2, 4, 1.5};
  const std::vector<double> dy = {-1.5, 2, 0.5, -1.25, 1, 0.75, -2, 1.5, -0.5, 3, 2.5};
  const Shape shape{static_cast<int64_t>(g.size())};
  const NaiveSwiglu ref = naive_f64(g, u, dy);
  const Tensor gate = Tensor::from_vector(g, shape, DType::F64);
  const Tensor up = Tensor::from_vector(u, shape, DType::F64);
  const Tensor grad = Tensor::from_vector(dy, shape, DType::F64);
  for (DType dtype : {DType::F32, DType::F64}) {
    const Outcome fused = run(ops::swiglu, gate, up, grad, dtype);
    const testing::Tolerance tol{0.0, tolerance_for(dtype).rtol};
    const std::string what = std::string(dtype_name(dtype)) + " at large |gate|";
    EXPECT_TRUE(all_finite(fused.out) && all_finite(fused.d_gate) && all_finite(fused.d_up))
        << what;
    EXPECT_TRUE(testing::all_close(fused.out, Tensor::from_vector(ref.out, shape, DType::F64), tol,
                                   "swiglu " + what));
    EXPECT_TRUE(testing::all_close(fused.d_gate, Tensor::from_vector(ref.d_gate, shape, DType::F64),
                                   tol, "d_gate " + what));
    EXPECT_TRUE(testing::all_close(fused.d_up, Tensor::from_vector(ref.d_up, shape, DType::F64),
                                   tol, "d_up " + what));
  }
  // The references themselves are not degenerate: -80 gives tiny non-zero values, +80 gives
  // silu(g) = g, and -1000 an exact zero.
  EXPECT_NE(ref.out[1], 0.0);
  EXPECT_LT(std::fabs(ref.out[1]), 1e-30);
  EXPECT_EQ(ref.out[0], 80 * 0.75);
  EXPECT_EQ(ref.d_gate[0], -1.5 * 0.75);
  EXPECT_EQ(ref.out[3], 0.0);
}

TEST(Swiglu, RejectsMismatchedShapesNamingBoth) {
  const Tensor a = Tensor::ones({3, 5}), b = Tensor::ones({5, 3});
  try {
    ops::swiglu(a, b);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("swiglu"), std::string::npos) << msg;
    EXPECT_NE(msg.find("gate [3, 5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("up [5, 3]"), std::string::npos) << msg;
  }
  // No broadcasting, even where NumPy rules would allow it.
  EXPECT_THROW(ops::swiglu(Tensor::ones({3, 5}), Tensor::ones({5})), Error);
  EXPECT_THROW(ops::swiglu(Tensor::ones({3}), Tensor::ones({3}, DType::F64)), Error);
  EXPECT_THROW(ops::swiglu(Tensor::arange(3), Tensor::arange(3)), Error);  // integer dtype
}

}  // namespace
}  // namespace autotp
