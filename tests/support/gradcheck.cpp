// Full-Jacobian gradient checks by central differences.
#include "tests/support/gradcheck.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/random.h"

namespace autotp::testing {

Tensor random_f64(const Shape& shape, uint64_t seed, bool requires_grad, double lo, double hi) {
  Tensor t = Tensor::empty(shape, DType::F64);
  fill_uniform(t, seed, 0, lo, hi);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

::testing::AssertionResult gradcheck(const TensorFn& fn, const std::vector<Tensor>& inputs,
                                     double eps, Tolerance tol) {
  for (const Tensor& in : inputs) {
    if (in.requires_grad() && in.dtype() != DType::F64) {
      return ::testing::AssertionFailure() << "gradcheck needs f64 inputs";
    }
  }
  // Analytic Jacobian rows: one backward per output element.
  std::vector<Tensor> leaves;
  for (const Tensor& in : inputs) {
    Tensor leaf = in.detach().clone();
    if (in.requires_grad()) leaf.set_requires_grad(true);
    leaves.push_back(leaf);
  }
  const Tensor out0 = fn(leaves);
  const int64_t n_out = out0.numel();
  std::vector<std::vector<std::vector<double>>> analytic(inputs.size());  // [input][out][elem]
  for (int64_t j = 0; j < n_out; ++j) {
    for (Tensor& leaf : leaves)
      leaf.zero_grad();
    Tensor out = fn(leaves);
    std::vector<double> onehot(n_out, 0.0);
    onehot[j] = 1.0;
    out.backward(Tensor::from_vector(onehot, out.shape(), out.dtype()));
    for (size_t k = 0; k < leaves.size(); ++k) {
      if (!leaves[k].requires_grad()) continue;
      const Tensor g = leaves[k].grad();
      analytic[k].push_back(g.defined() ? g.to_vector()
                                        : std::vector<double>(leaves[k].numel(), 0.0));
    }
  }
  // Numerical Jacobian columns.
  NoGradGuard no_grad;
  bool any_nonzero = false;
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].requires_grad()) continue;
    std::vector<Tensor> probe;
    for (const Tensor& in : inputs)
      probe.push_back(in.detach().clone());
    double* x = probe[k].data<double>();
    for (int64_t i = 0; i < probe[k].numel(); ++i) {
      const double saved = x[i];
      x[i] = saved + eps;
      const std::vector<double> plus = fn(probe).to_vector();
      x[i] = saved - eps;
      const std::vector<double> minus = fn(probe).to_vector();
      x[i] = saved;
      for (int64_t j = 0; j < n_out; ++j) {
        const double numeric = (plus[j] - minus[j]) / (2 * eps);
        const double got = analytic[k][j][i];
        if (numeric != 0.0) any_nonzero = true;
        if (!std::isfinite(numeric)) {
          return ::testing::AssertionFailure() << "numerical gradient not finite for input " << k;
        }
        if (!(std::fabs(got - numeric) <= tol.atol + tol.rtol * std::fabs(numeric))) {
          return ::testing::AssertionFailure()
                 << "gradient mismatch for input " << k << ", element " << i << ", output " << j
                 << ": autograd " << got << ", finite difference " << numeric << " (atol "
                 << tol.atol << ", rtol " << tol.rtol << ")";
        }
      }
    }
  }
  if (!any_nonzero) {
    return ::testing::AssertionFailure() << "the reference Jacobian is all zeros (vacuous check)";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace autotp::testing
