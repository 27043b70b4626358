// Every op of core/ops/elementwise.h: values against std:: math (f64 and f32), NumPy
// broadcasting, scalar variants and operators, and gradients including broadcast reductions.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "core/ops.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_f64;
using testing::tolerance_for;

// Applies `f` to every element (row-major logical order) in double.
Tensor map_values(const Tensor& x, const std::function<double(double)>& f) {
  std::vector<double> v = x.to_vector();
  for (double& e : v)
    e = f(e);
  return Tensor::from_vector(v, x.shape(), DType::F64);
}

double sigmoid_ref(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
double gelu_erf_ref(double x) {
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}
double gelu_tanh_ref(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

struct UnaryCase {
  std::string name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo = -2.0, hi = 2.0;  // input range (positive where the op needs it)
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](const Tensor& x) { return ops::neg(x); }, [](double x) { return -x; }},
      {"operator-", [](const Tensor& x) { return -x; }, [](double x) { return -x; }},
      {"exp", [](const Tensor& x) { return ops::exp(x); }, [](double x) { return std::exp(x); }},
      {"log", [](const Tensor& x) { return ops::log(x); }, [](double x) { return std::log(x); },
       0.5, 3.0},
      {"sqrt", [](const Tensor& x) { return ops::sqrt(x); }, [](double x) { return std::sqrt(x); },
       0.5, 3.0},
      {"rsqrt", [](const Tensor& x) { return ops::rsqrt(x); },
       [](double x) { return 1.0 / std::sqrt(x); }, 0.5, 3.0},
      {"pow 3", [](const Tensor& x) { return ops::pow(x, 3.0); },
       [](double x) { return std::pow(x, 3.0); }},
      {"pow 0.5", [](const Tensor& x) { return ops::pow(x, 0.5); },
       [](double x) { return std::pow(x, 0.5); }, 0.5, 3.0},
      {"pow -1.5", [](const Tensor& x) { return ops::pow(x, -1.5); },
       [](double x) { return std::pow(x, -1.5); }, 0.5, 3.0},
      {"tanh", [](const Tensor& x) { return ops::tanh(x); }, [](double x) { return std::tanh(x); }},
      {"sigmoid", [](const Tensor& x) { return ops::sigmoid(x); }, sigmoid_ref},
      {"relu", [](const Tensor& x) { return ops::relu(x); },
       [](double x) { return x > 0 ? x : 0.0; }},
      {"silu", [](const Tensor& x) { return ops::silu(x); },
       [](double x) { return x * sigmoid_ref(x); }},
      {"gelu erf", [](const Tensor& x) { return ops::gelu(x); }, gelu_erf_ref},
      {"gelu tanh", [](const Tensor& x) { return ops::gelu(x, ops::GeluApproximation::Tanh); },
       gelu_tanh_ref},
      {"add scalar", [](const Tensor& x) { return ops::add(x, 2.5); },
       [](double x) { return x + 2.5; }},
      {"sub scalar", [](const Tensor& x) { return ops::sub(x, 1.5); },
       [](double x) { return x - 1.5; }},
      {"mul scalar", [](const Tensor& x) { return ops::mul(x, -3.0); },
       [](double x) { return x * -3.0; }},
      {"div scalar", [](const Tensor& x) { return ops::div(x, 4.0); },
       [](double x) { return x / 4.0; }},
      {"rsub", [](const Tensor& x) { return ops::rsub(2.0, x); }, [](double x) { return 2.0 - x; }},
      {"rdiv", [](const Tensor& x) { return ops::rdiv(3.0, x); }, [](double x) { return 3.0 / x; },
       0.5, 3.0},
      {"scalar operators",
       [](const Tensor& x) { return (2.0 - x) * 3.0 + 1.0 / (x + 4.0) - x / 2.0 + 0.5 * x; },
       [](double x) { return (2.0 - x) * 3.0 + 1.0 / (x + 4.0) - x / 2.0 + 0.5 * x; }, 0.5, 3.0},
  };
}

TEST(Elementwise, UnaryOpsMatchStdMathInF64AndF32) {
  uint64_t seed = 1;
  for (const UnaryCase& c : unary_cases()) {
    const Tensor x = random_f64({5, 7}, seed++, false, c.lo, c.hi);
    EXPECT_TRUE(testing::all_close(c.op(x), map_values(x, c.ref), tolerance_for(DType::F64),
                                   c.name + " f64"));
    const Tensor x32 = x.to(DType::F32);  // reference from the same rounded inputs
    const Tensor y32 = c.op(x32);
    EXPECT_EQ(y32.dtype(), DType::F32);
    EXPECT_TRUE(testing::all_close(y32, map_values(x32, c.ref), tolerance_for(DType::F32),
                                   c.name + " f32"));
  }
}

TEST(Elementwise, UnaryOpsReadNonContiguousInputs) {
  const Tensor x = random_f64({7, 5}, 40, false, 0.5, 3.0).transpose(0, 1);
  for (const UnaryCase& c : unary_cases()) {
    EXPECT_TRUE(testing::all_close(c.op(x), map_values(x, c.ref), tolerance_for(DType::F64),
                                   c.name + " transposed"));
  }
}

TEST(Elementwise, UnaryGradientsMatchFiniteDifferences) {
  uint64_t seed = 50;
  for (const UnaryCase& c : unary_cases()) {
    auto fn = [&](const std::vector<Tensor>& in) { return c.op(in[0]); };
    EXPECT_TRUE(testing::gradcheck(fn, {random_f64({3, 5}, seed++, true, c.lo, c.hi)})) << c.name;
  }
}

TEST(Elementwise, GeluVariantsDifferSlightlyAsExpected) {
  // The tanh form approximates the erf form to within about 1e-3 on [-3, 3], but is not it.
  const Tensor x = Tensor::from_vector({-3, -1, -0.5, 0.5, 1, 3}, {6}, DType::F64);
  const std::vector<double> e = ops::gelu(x).to_vector();
  const std::vector<double> t = ops::gelu(x, ops::GeluApproximation::Tanh).to_vector();
  double max_diff = 0.0;
  for (size_t i = 0; i < e.size(); ++i)
    max_diff = std::max(max_diff, std::fabs(e[i] - t[i]));
  EXPECT_GT(max_diff, 1e-6);
  EXPECT_LT(max_diff, 1e-3);
  EXPECT_NEAR(e[4], 0.8413447460685429, 1e-15);  // gelu(1) = Phi(1)
}

TEST(Elementwise, PowZeroIsOneWithZeroGradient) {
  Tensor x = random_f64({3}, 60);
  Tensor y = ops::pow(x, 0.0);
  EXPECT_EQ(y.to_vector(), std::vector<double>(3, 1.0));
  ops::sum(y).backward();
  EXPECT_EQ(x.grad().to_vector(), std::vector<double>(3, 0.0));
}

struct BinaryCase {
  std::string name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
  std::function<double(double, double)> ref;
};

std::vector<BinaryCase> binary_cases() {
  return {
      {"add", [](const Tensor& a, const Tensor& b) { return ops::add(a, b); },
       [](double a, double b) { return a + b; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return ops::sub(a, b); },
       [](double a, double b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return ops::mul(a, b); },
       [](double a, double b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return ops::div(a, b); },
       [](double a, double b) { return a / b; }},
      {"operators", [](const Tensor& a, const Tensor& b) { return a * b + a / b - (b - a); },
       [](double a, double b) { return a * b + a / b - (b - a); }},
  };
}

// a op b with NumPy broadcasting, resolved by index arithmetic on the logical values.
Tensor naive_binary(const Tensor& a, const Tensor& b,
                    const std::function<double(double, double)>& f) {
  const std::vector<double> av = a.to_vector(), bv = b.to_vector();
  const size_t nd = std::max(a.shape().size(), b.shape().size());
  auto size_at = [nd](const Shape& s, size_t i) {
    return i < nd - s.size() ? int64_t{1} : s[i - (nd - s.size())];
  };
  Shape out_shape(nd);
  for (size_t i = 0; i < nd; ++i)
    out_shape[i] = std::max(size_at(a.shape(), i), size_at(b.shape(), i));
  std::vector<double> out(static_cast<size_t>(shape_numel(out_shape)));
  for (int64_t flat = 0; flat < static_cast<int64_t>(out.size()); ++flat) {
    int64_t rem = flat, ia = 0, ib = 0, sa = 1, sb = 1;
    for (size_t i = nd; i-- > 0;) {
      const int64_t idx = rem % out_shape[i];
      rem /= out_shape[i];
      const int64_t da = size_at(a.shape(), i), db = size_at(b.shape(), i);
      ia += (da == 1 ? 0 : idx) * sa;
      ib += (db == 1 ? 0 : idx) * sb;
      sa *= da;
      sb *= db;
    }
    out[flat] = f(av[ia], bv[ib]);
  }
  return Tensor::from_vector(out, out_shape, DType::F64);
}

const std::vector<std::pair<Shape, Shape>> kBroadcastPairs{
    {{3, 1, 5}, {4, 1}}, {{5}, {3, 5}}, {{3, 5}, {}},    {{}, {3}},
    {{2, 3}, {2, 3}},    {{1}, {3, 1}}, {{3, 1}, {1, 4}}};

TEST(Elementwise, BinaryOpsBroadcastLikeNumPy) {
  uint64_t seed = 100;
  for (const BinaryCase& c : binary_cases()) {
    for (const auto& [sa, sb] : kBroadcastPairs) {
      const Tensor a = random_f64(sa, seed++, false);
      const Tensor b = random_f64(sb, seed++, false, 0.5, 2.0);  // away from 0 for div
      const std::string what = c.name + " " + shape_str(sa) + " " + shape_str(sb);
      EXPECT_TRUE(testing::all_close(c.op(a, b), naive_binary(a, b, c.ref),
                                     tolerance_for(DType::F64), what));
      const Tensor a32 = a.to(DType::F32), b32 = b.to(DType::F32);
      EXPECT_TRUE(testing::all_close(c.op(a32, b32), naive_binary(a32, b32, c.ref),
                                     tolerance_for(DType::F32), what + " f32"));
    }
  }
  EXPECT_EQ(ops::add(Tensor::ones({3, 1, 5}), Tensor::ones({4, 1})).shape(), (Shape{3, 4, 5}));
}

TEST(Elementwise, BinaryOpsReadStridedAndExpandedViews) {
  const Tensor a = random_f64({5, 3}, 140, false).transpose(0, 1);  // [3, 5]
  const Tensor b = random_f64({1, 5}, 141, false, 0.5, 2.0).expand({3, 5});
  for (const BinaryCase& c : binary_cases()) {
    EXPECT_TRUE(testing::all_close(c.op(a, b), naive_binary(a, b, c.ref), tolerance_for(DType::F64),
                                   c.name + " views"));
  }
}

TEST(Elementwise, BinaryGradientsSumOverBroadcastDims) {
  uint64_t seed = 200;
  for (const BinaryCase& c : binary_cases()) {
    for (const auto& [sa, sb] : kBroadcastPairs) {
      auto fn = [&](const std::vector<Tensor>& in) { return c.op(in[0], in[1]); };
      EXPECT_TRUE(
          testing::gradcheck(fn, {random_f64(sa, seed++), random_f64(sb, seed++, true, 0.5, 2.0)}))
          << c.name << " " << shape_str(sa) << " " << shape_str(sb);
    }
    // one operand without a gradient
    auto fn = [&](const std::vector<Tensor>& in) { return c.op(in[0], in[1]); };
    EXPECT_TRUE(testing::gradcheck(
        fn, {random_f64({3, 1, 5}, seed++, false), random_f64({4, 1}, seed++, true, 0.5, 2.0)}))
        << c.name << " b only";
  }
}

TEST(Elementwise, BroadcastGradientIsTheSumOfTheUpstreamGradient) {
  Tensor a = Tensor::zeros({3, 1, 5}, DType::F64).set_requires_grad();
  Tensor b = Tensor::zeros({4, 1}, DType::F64).set_requires_grad();
  ops::sum(ops::add(a, b)).backward();
  EXPECT_EQ(a.grad().shape(), (Shape{3, 1, 5}));
  EXPECT_EQ(a.grad().to_vector(), std::vector<double>(15, 4.0));  // each used by 4 rows
  EXPECT_EQ(b.grad().to_vector(), std::vector<double>(4, 15.0));  // each used 3 * 5 times
}

TEST(Elementwise, RejectsIncompatibleShapesAndMixedDTypes) {
  try {
    ops::add(Tensor::ones({3, 4}), Tensor::ones({5}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[3, 4]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[5]"), std::string::npos) << msg;
  }
  EXPECT_THROW(ops::mul(Tensor::ones({3}), Tensor::ones({3}, DType::F64)), Error);
  EXPECT_THROW(ops::exp(Tensor::arange(3)), Error);  // integer dtype
  EXPECT_THROW(ops::add(Tensor::arange(3), Tensor::arange(3)), Error);
}

}  // namespace
}  // namespace autotp
