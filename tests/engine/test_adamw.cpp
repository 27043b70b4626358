// AdamW/Adam: trajectories against PyTorch goldens (tests/engine/adamw_golden.h, written by
// tools/golden/make_adamw_golden.py), state dict, resume, skipped parameters, decay exclusion.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/optimizer.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/engine/adamw_golden.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

namespace g = golden::adamw;

struct GoldenParam {
  const char* name;
  Shape shape;
  const double* init;
  const double* target;
  const double* offsets;  // [kSteps][numel]
  bool skipped_at(int step) const { return std::string(name) == "s" && (step == 2 || step == 5); }
};

std::vector<GoldenParam> golden_params() {
  return {{"w", {3, 5}, g::k_w_init, g::k_w_target, &g::k_w_offset[0][0]},
          {"b", {7}, g::k_b_init, g::k_b_target, &g::k_b_offset[0][0]},
          {"s", {2}, g::k_s_init, g::k_s_target, &g::k_s_offset[0][0]}};
}

std::vector<double> span(const double* p, int64_t n) {
  return std::vector<double>(p, p + n);
}

NamedTensors make_params(DType dtype) {
  NamedTensors params;
  for (const GoldenParam& gp : golden_params()) {
    Tensor t = Tensor::from_vector(span(gp.init, shape_numel(gp.shape)), gp.shape, dtype);
    t.set_requires_grad(true);
    params.emplace_back(gp.name, t);
  }
  return params;
}

// Sets each parameter's gradient for step t: g = 2 (p - target) + offset[t], computed in
// double from the current parameter (as the generator does), or none where it is skipped.
void set_golden_grads(const NamedTensors& params, int t) {
  const std::vector<GoldenParam> gps = golden_params();
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor& p = params[k].second;
    const GoldenParam& gp = gps[k];
    if (gp.skipped_at(t)) {
      p.zero_grad();
      continue;
    }
    const std::vector<double> pv = p.to_vector();
    std::vector<double> grad(pv.size());
    for (size_t i = 0; i < pv.size(); ++i) {
      grad[i] = 2.0 * (pv[i] - gp.target[i]) + gp.offsets[t * static_cast<int64_t>(pv.size()) + i];
    }
    p.set_grad(Tensor::from_vector(grad, p.shape(), p.dtype()));
  }
}

AdamWOptions options_of(double beta1, double beta2, double eps, double wd, bool decoupled) {
  AdamWOptions o;
  o.lr = g::kLr[0];
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.eps = eps;
  o.weight_decay = wd;
  o.decoupled_weight_decay = decoupled;
  return o;
}

// Runs the golden schedule and compares every parameter after every step.
void expect_trajectory(DType dtype, const AdamWOptions& options,
                       const std::map<std::string, const double*>& expected) {
  NamedTensors params = make_params(dtype);
  AdamW opt(params, options);
  for (int t = 0; t < g::kSteps; ++t) {
    set_golden_grads(params, t);
    opt.set_lr(g::kLr[t]);
    opt.step();
    for (const auto& [name, p] : params) {
      const double* row = expected.at(name) + t * p.numel();
      const Tensor want = Tensor::from_vector(span(row, p.numel()), p.shape(), DType::F64);
      EXPECT_ALL_CLOSE(p.to(DType::F64), want, testing::tolerance_for(dtype))
          << "parameter " << name << " after step " << t;
    }
  }
}

TEST(AdamW, DefaultAdamWMatchesPyTorchInF64AndF32) {
  namespace c = g::adamw_default;
  const AdamWOptions o = options_of(c::kBeta1, c::kBeta2, c::kEps, c::kWeightDecay, c::kDecoupled);
  expect_trajectory(DType::F64, o,
                    {{"w", &c::k_w_f64[0][0]}, {"b", &c::k_b_f64[0][0]}, {"s", &c::k_s_f64[0][0]}});
  expect_trajectory(DType::F32, o,
                    {{"w", &c::k_w_f32[0][0]}, {"b", &c::k_b_f32[0][0]}, {"s", &c::k_s_f32[0][0]}});
}

TEST(AdamW, OtherBetasWithoutDecayMatchPyTorch) {
  namespace c = g::adamw_betas_095_no_decay;
  expect_trajectory(DType::F64,
                    options_of(c::kBeta1, c::kBeta2, c::kEps, c::kWeightDecay, c::kDecoupled),
                    {{"w", &c::k_w_f64[0][0]}, {"b", &c::k_b_f64[0][0]}, {"s", &c::k_s_f64[0][0]}});
}

TEST(AdamW, CoupledDecayMatchesTorchAdam) {
  namespace c = g::adam_coupled_decay;
  const AdamWOptions o = options_of(c::kBeta1, c::kBeta2, c::kEps, c::kWeightDecay, c::kDecoupled);
  expect_trajectory(DType::F64, o,
                    {{"w", &c::k_w_f64[0][0]}, {"b", &c::k_b_f64[0][0]}, {"s", &c::k_s_f64[0][0]}});
  expect_trajectory(DType::F32, o,
                    {{"w", &c::k_w_f32[0][0]}, {"b", &c::k_b_f32[0][0]}, {"s", &c::k_s_f32[0][0]}});
}

TEST(AdamW, Beta1BelowOneHalfTakesTheOtherLerpBranchAndMatchesPyTorch) {
  namespace c = g::adamw_large_lerp_weight;
  expect_trajectory(DType::F64,
                    options_of(c::kBeta1, c::kBeta2, c::kEps, c::kWeightDecay, c::kDecoupled),
                    {{"w", &c::k_w_f64[0][0]}, {"b", &c::k_b_f64[0][0]}, {"s", &c::k_s_f64[0][0]}});
}

TEST(AdamW, StateDictHoldsTheMomentsAndPerParameterStepCounts) {
  namespace c = g::adamw_default;
  NamedTensors params = make_params(DType::F64);
  AdamW opt(params, options_of(c::kBeta1, c::kBeta2, c::kEps, c::kWeightDecay, c::kDecoupled));
  for (int t = 0; t < g::kSteps; ++t) {
    set_golden_grads(params, t);
    opt.set_lr(g::kLr[t]);
    opt.step();
  }
  std::map<std::string, Tensor> state;
  for (const auto& [k, v] : opt.state_dict())
    state[k] = v;
  EXPECT_EQ(state.size(), 9u);
  const auto expect_state = [&](const std::string& name, const double* m, const double* v,
                                int64_t step, const Shape& shape) {
    const int64_t n = shape_numel(shape);
    EXPECT_ALL_CLOSE(state.at(name + ".exp_avg"),
                     Tensor::from_vector(span(m, n), shape, DType::F64),
                     testing::tolerance_for(DType::F64));
    EXPECT_ALL_CLOSE(state.at(name + ".exp_avg_sq"),
                     Tensor::from_vector(span(v, n), shape, DType::F64),
                     testing::tolerance_for(DType::F64));
    EXPECT_EQ(state.at(name + ".step").to_vector_i64(), std::vector<int64_t>{step});
  };
  expect_state("w", c::k_w_exp_avg_f64, c::k_w_exp_avg_sq_f64, c::k_w_step, {3, 5});
  expect_state("b", c::k_b_exp_avg_f64, c::k_b_exp_avg_sq_f64, c::k_b_step, {7});
  // "s" had no gradient at two of the ten steps: its own step count is 8, as in PyTorch.
  expect_state("s", c::k_s_exp_avg_f64, c::k_s_exp_avg_sq_f64, c::k_s_step, {2});
  EXPECT_EQ(c::k_s_step, 8);
}

TEST(AdamW, ResumingFromTheStateDictContinuesBitExactly) {
  const AdamWOptions o = options_of(0.9, 0.999, 1e-8, 0.1, true);
  NamedTensors straight = make_params(DType::F32);
  AdamW straight_opt(straight, o);
  NamedTensors first = make_params(DType::F32);
  AdamW first_opt(first, o);
  for (int t = 0; t < g::kSteps; ++t) {
    set_golden_grads(straight, t);
    straight_opt.set_lr(g::kLr[t]);
    straight_opt.step();
  }
  for (int t = 0; t < 5; ++t) {
    set_golden_grads(first, t);
    first_opt.set_lr(g::kLr[t]);
    first_opt.step();
  }
  // A "checkpoint": copies of the weights and the optimizer state, loaded into fresh objects.
  NamedTensors saved_state;
  for (const auto& [k, v] : first_opt.state_dict())
    saved_state.emplace_back(k, v.clone());
  NamedTensors resumed;
  for (const auto& [k, v] : first) {
    Tensor copy = v.detach().clone();
    copy.set_requires_grad(true);
    resumed.emplace_back(k, copy);
  }
  AdamW resumed_opt(resumed, o);
  resumed_opt.load_state_dict(saved_state);
  for (int t = 5; t < g::kSteps; ++t) {
    set_golden_grads(resumed, t);
    resumed_opt.set_lr(g::kLr[t]);
    resumed_opt.step();
  }
  for (size_t k = 0; k < straight.size(); ++k) {
    EXPECT_EQ(resumed[k].second.to_vector(), straight[k].second.to_vector())
        << "parameter " << straight[k].first;
  }
}

TEST(AdamW, ParametersWithoutAGradientAreUntouchedAndHaveNoState) {
  Tensor a = Tensor::from_vector({1, 2, 3}, {3}).set_requires_grad(true);
  Tensor b = Tensor::from_vector({4, 5}, {2}).set_requires_grad(true);
  AdamW opt({{"a", a}, {"b", b}}, AdamWOptions{});
  a.set_grad(Tensor::ones({3}));
  opt.step();
  EXPECT_EQ(b.to_vector(), (std::vector<double>{4, 5}));
  EXPECT_NE(a.to_vector(), (std::vector<double>{1, 2, 3}));
  const NamedTensors state = opt.state_dict();
  ASSERT_EQ(state.size(), 3u);
  EXPECT_EQ(state[0].first, "a.exp_avg");
  EXPECT_EQ(opt.state(1).step, 0);
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
}

TEST(AdamW, FirstStepMovesEachCoordinateByLrTimesTheGradientSign) {
  // With m = (1-b1) g and v = (1-b2) g^2, bias correction gives m_hat / sqrt(v_hat) = sign(g):
  // p1 = p0 - lr * g / (|g| + eps). Hand-computed with eps = 0 and no decay.
  AdamWOptions o;
  o.lr = 0.25;
  o.eps = 0.0;
  o.weight_decay = 0.0;
  Tensor p = Tensor::from_vector({1.0, -2.0, 0.5}, {3}, DType::F64).set_requires_grad(true);
  AdamW opt({{"p", p}}, o);
  p.set_grad(Tensor::from_vector({3.0, -0.5, 7.0}, {3}, DType::F64));
  opt.step();
  EXPECT_ALL_CLOSE(p, Tensor::from_vector({0.75, -1.75, 0.25}, {3}, DType::F64),
                   testing::tolerance_for(DType::F64));
}

TEST(AdamW, WeightDecayExclusionSkipsBiasesAndNorms) {
  // Zero gradients leave only the decoupled decay: p *= 1 - lr * wd = 0.99.
  AdamWOptions o;
  o.lr = 0.1;
  o.weight_decay = 0.1;
  const auto run = [&](bool exclude) {
    NamedTensors params;
    for (const char* name : {"layer.weight", "layer.bias", "model.norm.weight"}) {
      Tensor t = Tensor::full({2}, 2.0).set_requires_grad(true);
      t.set_grad(Tensor::zeros({2}));
      params.emplace_back(name, t);
    }
    AdamWOptions options = o;
    if (exclude) options.no_weight_decay = exclude_bias_and_norm;
    AdamW opt(params, options);
    opt.step();
    std::vector<double> firsts;
    for (const auto& [n, t] : params)
      firsts.push_back(t.to_vector()[0]);
    return firsts;
  };
  const double decayed = static_cast<double>(2.0f * static_cast<float>(1.0 - 0.1 * 0.1));
  EXPECT_EQ(run(false), (std::vector<double>{decayed, decayed, decayed}));
  EXPECT_EQ(run(true), (std::vector<double>{decayed, 2.0, 2.0}));
}

TEST(AdamW, ExcludeBiasAndNormRecognizesHuggingFaceNames) {
  EXPECT_TRUE(exclude_bias_and_norm("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_TRUE(exclude_bias_and_norm("model.layers.3.input_layernorm.weight"));
  EXPECT_TRUE(exclude_bias_and_norm("model.layers.3.post_attention_layernorm.weight"));
  EXPECT_TRUE(exclude_bias_and_norm("model.norm.weight"));
  EXPECT_TRUE(exclude_bias_and_norm("model.layers.0.self_attn.q_norm.weight"));
  EXPECT_FALSE(exclude_bias_and_norm("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_FALSE(exclude_bias_and_norm("model.embed_tokens.weight"));
  EXPECT_FALSE(exclude_bias_and_norm("lm_head.weight"));
}

TEST(AdamW, TensorOpUpdateMatchesTheFusedKernel) {
  for (const bool decoupled : {true, false}) {
    for (const double beta1 : {0.9, 0.3}) {
      AdamWOptions o = options_of(beta1, 0.99, 1e-8, 0.05, decoupled);
      o.lr = 0.01;
      const Tensor p0 = testing::random_tensor({5, 7}, 11, DType::F64);
      Tensor fused = p0.clone().set_requires_grad(true);
      AdamW opt({{"p", fused}}, o);
      Tensor by_ops = p0.clone();
      Tensor m = Tensor::zeros({5, 7}, DType::F64), v = Tensor::zeros({5, 7}, DType::F64);
      for (int t = 1; t <= 3; ++t) {
        const Tensor grad = testing::random_tensor({5, 7}, 100 + t, DType::F64);
        fused.set_grad(grad);
        opt.step();
        adamw_update_with_ops(by_ops, m, v, grad, t, o, /*apply_weight_decay=*/true);
      }
      EXPECT_ALL_CLOSE(by_ops, fused, testing::tolerance_for(DType::F64))
          << "decoupled " << decoupled << " beta1 " << beta1;
      EXPECT_ALL_CLOSE(m, opt.state(0).exp_avg, testing::tolerance_for(DType::F64));
      EXPECT_ALL_CLOSE(v, opt.state(0).exp_avg_sq, testing::tolerance_for(DType::F64));
    }
  }
}

TEST(AdamW, RejectsDuplicateNamesBadShapesAndUnknownStateKeys) {
  Tensor a = Tensor::zeros({2}).set_requires_grad(true);
  EXPECT_ERROR_CONTAINS(AdamW({{"a", a}, {"a", a}}, AdamWOptions{}), "'a' appears twice");
  AdamWOptions bad;
  bad.beta1 = 1.0;
  EXPECT_ERROR_CONTAINS(AdamW({{"a", a}}, bad), "beta1");
  AdamW opt({{"a", a}}, AdamWOptions{});
  a.set_grad(Tensor::zeros({2}));
  EXPECT_NO_THROW(opt.step());
  EXPECT_ERROR_CONTAINS(opt.load_state_dict({{"b.exp_avg", Tensor::zeros({2})}}),
                        "'b.exp_avg' names no parameter");
  EXPECT_ERROR_CONTAINS(opt.load_state_dict({{"a.exp_avg", Tensor::zeros({3})}}),
                        "has shape [3], expected [2]");
  EXPECT_ERROR_CONTAINS(opt.load_state_dict({{"a.exp_avg", Tensor::zeros({2})}}),
                        "needs exp_avg, exp_avg_sq and step together");
}

}  // namespace
}  // namespace autotp
