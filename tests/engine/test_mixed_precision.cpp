// Mixed precision on the CPU: f32 masters behind f32 and bf16 (storage-only) model parameters
// against plain AdamW, f32 gradient accumulation, clipping, the DeepSpeed loss scaler's state
// machine traced by hand from its update rule, and skipped steps on injected infs/NaNs.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/ops.h"
#include "engine/clip.h"
#include "engine/mixed_precision.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using autotp::testing::all_close;
using autotp::testing::random_tensor;
using autotp::testing::Tolerance;

constexpr Tolerance kExact{0.0, 0.0};

// Odd shapes; a bias and a norm weight so that decay exclusion is exercised.
struct ParamSpec {
  const char* name;
  Shape shape;
};
const std::vector<ParamSpec> kSpecs = {
    {"layer.weight", {3, 5}}, {"layer.bias", {7}}, {"norm.weight", {5}}, {"head.weight", {2, 9}}};

// Leaves with fixed random values in `dtype` (values rounded to it).
NamedTensors make_params(DType dtype, uint64_t seed = 11) {
  NamedTensors params;
  for (size_t i = 0; i < kSpecs.size(); ++i) {
    Tensor t = random_tensor(kSpecs[i].shape, seed + i, DType::F32).to(dtype);
    t.set_requires_grad(true);
    params.emplace_back(kSpecs[i].name, t);
  }
  return params;
}

// The gradient of parameter i at step t as f32 host values (fixed, independent of the
// weights so that two runs can be fed identical gradients); `times` scales it (a loss scale).
Tensor grad_for(size_t i, int t, DType dtype, double times = 1.0) {
  std::vector<double> g =
      random_tensor(kSpecs[i].shape, 1000 + 37 * t + i, DType::F32, -2.0, 2.0).to_vector();
  for (double& x : g)
    x *= times;
  return Tensor::from_vector(g, kSpecs[i].shape, DType::F32).to(dtype);
}

// Parameter "head.weight" gets no gradient at step 2 (its step count must not advance).
bool skipped(size_t i, int t) {
  return i == 3 && t == 2;
}

void set_grads(const NamedTensors& params, int t, double times = 1.0) {
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i].second;
    if (skipped(i, t)) {
      p.zero_grad();
    } else {
      p.set_grad(grad_for(i, t, p.dtype(), times));
    }
  }
}

AdamWOptions test_options() {
  AdamWOptions o;
  o.lr = 0.01;
  o.weight_decay = 0.1;
  o.no_weight_decay = exclude_bias_and_norm;
  return o;
}

TEST(MixedPrecision, MastersAreF32CopiesOfTheModelParametersThatDoNotAliasThem) {
  const NamedTensors model = make_params(DType::BF16);
  MixedPrecisionOptimizer opt(model, test_options());
  ASSERT_EQ(opt.master_params().size(), model.size());
  for (size_t i = 0; i < model.size(); ++i) {
    const auto& [name, master] = opt.master_params()[i];
    EXPECT_EQ(name, model[i].first);
    EXPECT_EQ(master.dtype(), DType::F32);
    EXPECT_TRUE(master.requires_grad());
    EXPECT_FALSE(master.shares_storage(model[i].second));
    EXPECT_TRUE(all_close(master, model[i].second.to(DType::F32), kExact, name));
  }
}

TEST(MixedPrecision, WithF32ModelParametersMatchesPlainAdamWBitExactly) {
  const NamedTensors plain = make_params(DType::F32);
  const NamedTensors model = make_params(DType::F32);
  AdamW reference(plain, test_options());
  MixedPrecisionOptimizer opt(model, test_options());
  for (int t = 0; t < 5; ++t) {
    set_grads(plain, t);
    set_grads(model, t);
    reference.step();
    EXPECT_TRUE(opt.step());
    reference.zero_grad();
    opt.zero_grad();
    for (size_t i = 0; i < plain.size(); ++i) {
      const std::string what = plain[i].first + " after step " + std::to_string(t);
      EXPECT_TRUE(all_close(model[i].second, plain[i].second, kExact, "model " + what));
      EXPECT_TRUE(
          all_close(opt.master_params()[i].second, plain[i].second, kExact, "master " + what));
      EXPECT_EQ(opt.master_params()[i].second.dtype(), DType::F32);
    }
  }
  // The moments and per-parameter step counts too ("head.weight" skipped one step).
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_EQ(opt.adamw().state(i).step, reference.state(i).step);
    EXPECT_TRUE(all_close(opt.adamw().state(i).exp_avg, reference.state(i).exp_avg, kExact));
    EXPECT_TRUE(all_close(opt.adamw().state(i).exp_avg_sq, reference.state(i).exp_avg_sq, kExact));
  }
  EXPECT_EQ(opt.adamw().state(3).step, 4);
}

// bf16 is a storage type on the CPU (no CPU op computes in it), which is all this needs: the
// gradients are bf16 tensors as a bf16 backward would leave them, the update runs on the f32
// masters, and the model is rewritten from them.
TEST(MixedPrecision, Bf16ModelParametersAreTheF32MastersRoundedAfterEveryStep) {
  const NamedTensors model = make_params(DType::BF16);
  NamedTensors plain;  // f32 reference starting from the same (bf16-valued) weights
  for (const auto& [name, p] : model) {
    Tensor t = p.detach().to(DType::F32);
    t.set_requires_grad(true);
    plain.emplace_back(name, t);
  }
  AdamW reference(plain, test_options());
  MixedPrecisionOptimizer opt(model, test_options());
  for (int t = 0; t < 4; ++t) {
    set_grads(model, t);  // bf16 gradients
    for (size_t i = 0; i < plain.size(); ++i) {
      plain[i].second.zero_grad();
      if (model[i].second.grad().defined())
        plain[i].second.set_grad(model[i].second.grad().to(DType::F32));
    }
    reference.step();
    EXPECT_TRUE(opt.step());
    for (size_t i = 0; i < model.size(); ++i) {
      const std::string what = model[i].first + " after step " + std::to_string(t);
      EXPECT_EQ(model[i].second.dtype(), DType::BF16);
      EXPECT_TRUE(
          all_close(opt.master_params()[i].second, plain[i].second, kExact, "master " + what));
      EXPECT_TRUE(
          all_close(model[i].second, plain[i].second.to(DType::BF16), kExact, "model " + what));
      EXPECT_FALSE(model[i].second.grad().defined()) << "model gradient not dropped: " << what;
    }
  }
  // The masters keep the low bits that the bf16 model weights drop.
  bool master_differs = false;
  for (size_t i = 0; i < model.size(); ++i) {
    const std::vector<double> m = opt.master_params()[i].second.to_vector();
    const std::vector<double> w = model[i].second.to_vector();
    for (size_t k = 0; k < m.size(); ++k)
      master_differs |= m[k] != w[k];
  }
  EXPECT_TRUE(master_differs);
}

TEST(MixedPrecision, GradientsOfMicroStepsAccumulateInF32) {
  Tensor w = Tensor::zeros({2}, DType::BF16);
  w.set_requires_grad(true);
  MixedPrecisionOptimizer opt({{"w", w}}, test_options());
  // 1 + 2^-10 is not a bf16 value (8 significant bits) but is an f32 one.
  w.set_grad(Tensor::from_vector({1.0, -3.0}, {2}, DType::BF16));
  opt.accumulate_grads();
  EXPECT_FALSE(w.grad().defined());
  w.set_grad(Tensor::from_vector({0x1p-10, 0.5}, {2}, DType::BF16));
  opt.accumulate_grads();
  const Tensor master_grad = opt.master_params()[0].second.grad();
  ASSERT_TRUE(master_grad.defined());
  EXPECT_EQ(master_grad.dtype(), DType::F32);
  EXPECT_TRUE(all_close(master_grad, Tensor::from_vector({1.0 + 0x1p-10, -2.5}, {2}), kExact));
}

TEST(MixedPrecision, ClippingActsOnTheUnscaledF32MasterGradients) {
  Tensor w = Tensor::zeros({2});
  w.set_requires_grad(true);
  LossScalerOptions scaling;
  scaling.initial_scale = 1024.0;
  MixedPrecisionOptimizer opt({{"w", w}}, test_options(), scaling);
  w.set_grad(Tensor::from_vector({3.0 * 1024.0, 4.0 * 1024.0}, {2}));  // scaled by the loss
  const double norm = opt.clip_grad_norm(1.0);
  EXPECT_DOUBLE_EQ(norm, 5.0);  // |(3, 4)|
  const double coef = 1.0 / (5.0 + 1e-6);
  EXPECT_TRUE(all_close(opt.master_params()[0].second.grad(),
                        Tensor::from_vector({3.0 * coef, 4.0 * coef}, {2}),
                        autotp::testing::tolerance_for(DType::F32)));
}

// One backward per step without a loss scaler: the norm, the clipping coefficient and the
// update come from the bf16 model gradients (no f32 master gradient is ever written), and
// every value equals the path through the master gradients bit for bit.
TEST(MixedPrecision, ClippedStepsFromTheModelGradientsEqualTheMasterGradientPathBitExactly) {
  const NamedTensors direct_model = make_params(DType::BF16);
  const NamedTensors master_model = make_params(DType::BF16);
  MixedPrecisionOptimizer direct(direct_model, test_options());
  MixedPrecisionOptimizer through_masters(master_model, test_options());
  for (int t = 0; t < 4; ++t) {
    const std::string when = "step " + std::to_string(t);
    set_grads(direct_model, t);
    set_grads(master_model, t);
    through_masters.accumulate_grads();  // the f32 master gradients exist: the old path
    // max_norm 1 clips every step (the gradients are uniform in [-2, 2]); step 3 is unclipped.
    const double max_norm = t == 3 ? 1e6 : 1.0;
    const double norm = direct.clip_grad_norm(max_norm);
    EXPECT_EQ(norm, through_masters.clip_grad_norm(max_norm)) << when;
    EXPECT_GT(norm, 1.0) << when;
    for (const auto& [name, master] : direct.master_params())
      EXPECT_FALSE(master.grad().defined()) << name << " got an f32 gradient at " << when;
    EXPECT_TRUE(direct.step());
    EXPECT_TRUE(through_masters.step());
    for (size_t i = 0; i < kSpecs.size(); ++i) {
      const std::string what = direct_model[i].first + " after " + when;
      EXPECT_TRUE(all_close(direct.master_params()[i].second,
                            through_masters.master_params()[i].second, kExact, "master " + what));
      EXPECT_TRUE(all_close(direct_model[i].second, master_model[i].second, kExact, what));
      EXPECT_TRUE(all_close(direct.adamw().state(i).exp_avg_sq,
                            through_masters.adamw().state(i).exp_avg_sq, kExact, "v " + what));
      EXPECT_FALSE(direct_model[i].second.grad().defined()) << what;
    }
  }
  // The unclipped norm without clipping, and a coefficient computed but then accumulated
  // (a second micro-batch arriving after clipping) applies to the gradients it was taken from.
  set_grads(direct_model, 7);
  set_grads(master_model, 7);
  through_masters.accumulate_grads();
  EXPECT_EQ(direct.grad_norm(), through_masters.grad_norm());
  direct.clip_grad_norm(0.5);
  through_masters.clip_grad_norm(0.5);
  direct.accumulate_grads();
  EXPECT_TRUE(all_close(direct.master_params()[0].second.grad(),
                        through_masters.master_params()[0].second.grad(), kExact));
}

TEST(MixedPrecision, ScaleLossMultipliesByTheCurrentScaleOnlyWithLossScaling) {
  Tensor w = Tensor::zeros({1});
  w.set_requires_grad(true);
  const Tensor loss = Tensor::from_vector({1.5}, {});
  MixedPrecisionOptimizer plain({{"w", w}}, test_options());
  EXPECT_EQ(plain.loss_scale(), 1.0);
  EXPECT_EQ(plain.scale_loss(loss).item(), 1.5);
  MixedPrecisionOptimizer scaled({{"w", w}}, test_options(), LossScalerOptions{});
  EXPECT_EQ(scaled.loss_scale(), 65536.0);
  EXPECT_EQ(scaled.scale_loss(loss).item(), 1.5 * 65536.0);
}

// ---- AdamW's model copies and gradient checks (what the class above builds on) -------------

TEST(AdamWModelCopies, ReceiveEachUpdatedParameterConvertedToTheirDtype) {
  const NamedTensors params = make_params(DType::F32);
  std::vector<Tensor> copies;
  for (const auto& [name, p] : params)
    copies.push_back(Tensor::zeros(p.shape(), DType::BF16));
  copies[1] = Tensor();  // no copy for this one
  AdamW opt(params, test_options());
  opt.set_model_copies(copies);
  set_grads(params, 2);  // "head.weight" has no gradient at step 2
  opt.step();
  EXPECT_TRUE(all_close(copies[0], params[0].second.to(DType::BF16), kExact));
  EXPECT_TRUE(all_close(copies[2], params[2].second.to(DType::BF16), kExact));
  EXPECT_TRUE(all_close(copies[3], Tensor::zeros({2, 9}, DType::BF16), kExact))
      << "a parameter without a gradient must leave its copy alone";
}

TEST(AdamWModelCopies, RejectsCopiesOfAnotherCountShapeOrTheParameterItself) {
  const NamedTensors params = make_params(DType::F32);
  AdamW opt(params, test_options());
  EXPECT_ERROR_CONTAINS(opt.set_model_copies({Tensor::zeros({3, 5})}), "4 parameters");
  std::vector<Tensor> copies(params.size());
  copies[2] = Tensor::zeros({4});
  EXPECT_ERROR_CONTAINS(opt.set_model_copies(copies), "norm.weight");
  copies[2] = params[2].second;
  EXPECT_ERROR_CONTAINS(opt.set_model_copies(copies), "aliases");
}

TEST(AdamW, ABadGradientIsReportedBeforeAnyParameterChanges) {
  const NamedTensors params = make_params(DType::F32);
  const Tensor before = params[0].second.detach().clone();
  AdamW opt(params, test_options());
  set_grads(params, 0);
  params[3].second.set_grad(Tensor::zeros({2, 9}, DType::F64));  // wrong dtype, last parameter
  EXPECT_ERROR_CONTAINS(opt.step(), "head.weight");
  EXPECT_TRUE(all_close(params[0].second, before, kExact));
  EXPECT_EQ(opt.state(0).step, 0);
}

TEST(AdamW, StepWithGradsConvertsAndScalesTheCallersGradientsAsTensorOpsWould) {
  const NamedTensors given = make_params(DType::F32);
  const NamedTensors own = make_params(DType::F32);
  AdamW with_grads(given, test_options());
  AdamW reference(own, test_options());
  const double scale = 0.3;  // not a power of two: the multiply rounds
  std::vector<Tensor> grads(kSpecs.size());
  for (size_t i = 0; i < kSpecs.size(); ++i) {
    if (skipped(i, 2)) continue;  // undefined: that parameter is skipped
    grads[i] = grad_for(i, 2, DType::F64, 1.7);
    own[i].second.set_grad(ops::mul(grads[i].to(DType::F32), scale));
  }
  with_grads.step_with_grads(grads, scale);
  reference.step();
  for (size_t i = 0; i < kSpecs.size(); ++i) {
    EXPECT_TRUE(all_close(given[i].second, own[i].second, kExact, given[i].first));
    EXPECT_EQ(with_grads.state(i).step, reference.state(i).step) << given[i].first;
  }
  EXPECT_EQ(with_grads.state(3).step, 0);
  EXPECT_ERROR_CONTAINS(with_grads.step_with_grads({grads[0]}, 1.0), "1 gradients given for 4");
  EXPECT_ERROR_CONTAINS(with_grads.step_with_grads(grads, 0.0), "positive and finite");
  grads[1] = Tensor::zeros({7}, DType::I64);
  EXPECT_ERROR_CONTAINS(with_grads.step_with_grads(grads, 1.0), "layer.bias");
}

// ---- loss scaler ---------------------------------------------------------------------------

struct ScalerStep {
  bool overflow;
  double scale_after;
  int64_t hysteresis_after;
};

// Feeds the outcomes and checks the scale and remaining hysteresis after each.
void expect_trace(DynamicLossScaler& scaler, const std::vector<ScalerStep>& trace) {
  for (size_t k = 0; k < trace.size(); ++k) {
    scaler.update(trace[k].overflow);
    EXPECT_EQ(scaler.scale(), trace[k].scale_after) << "after iteration " << k;
    EXPECT_EQ(scaler.state().cur_hysteresis, trace[k].hysteresis_after) << "after iteration " << k;
  }
}

// Traced by hand through DeepSpeed's DynamicLossScaler.update_scale (scale factor 2): the
// scale doubles when (iteration - last overflow) is a multiple of the window (the last
// overflow starts at -1), an overflow spends hysteresis before it halves the scale, and a
// doubling refills the hysteresis.
TEST(DynamicLossScaler, FollowsDeepSpeedsUpdateRuleIterationByIteration) {
  LossScalerOptions o;
  o.initial_scale = 16.0;
  o.scale_window = 3;
  o.hysteresis = 2;
  DynamicLossScaler scaler(o);
  EXPECT_EQ(scaler.scale(), 16.0);
  expect_trace(scaler, {{false, 16, 2},    // 0: (0 - -1) % 3 = 1
                        {false, 16, 2},    // 1: 2
                        {false, 32, 2},    // 2: 3 -> double
                        {false, 32, 2},    // 3
                        {false, 32, 2},    // 4
                        {false, 64, 2},    // 5: 6 -> double
                        {true, 64, 1},     // 6: overflow spends hysteresis, last = 6
                        {true, 32, 1},     // 7: hysteresis 1 -> halve, last = 7
                        {false, 32, 1},    // 8: 1
                        {false, 32, 1},    // 9: 2
                        {false, 64, 2},    // 10: 3 -> double, hysteresis refilled
                        {true, 64, 1},     // 11: last = 11
                        {false, 64, 1},    // 12: no refill without consecutive_hysteresis
                        {true, 32, 1},     // 13: halve, last = 13
                        {false, 32, 1},    // 14
                        {false, 32, 1},    // 15
                        {false, 64, 2}});  // 16: 3 -> double
  EXPECT_EQ(scaler.state().cur_iter, 17);
  EXPECT_EQ(scaler.state().last_overflow_iter, 13);
}

TEST(DynamicLossScaler, ConsecutiveHysteresisRefillsAfterEveryCleanIteration) {
  LossScalerOptions o;
  o.initial_scale = 16.0;
  o.scale_window = 3;
  o.hysteresis = 2;
  o.consecutive_hysteresis = true;
  DynamicLossScaler scaler(o);
  expect_trace(scaler, {{true, 16, 1},     // 0: last = 0
                        {false, 16, 2},    // 1: refilled; (1 - 0) % 3 = 1
                        {true, 16, 1},     // 2: last = 2
                        {true, 8, 1},      // 3: halve, last = 3
                        {false, 8, 2},     // 4
                        {false, 8, 2},     // 5
                        {false, 16, 2}});  // 6: 3 -> double
}

TEST(DynamicLossScaler, DefaultSectionStartsAt2To16AndDoublesAfter1000CleanIterations) {
  const LossScalerOptions o = LossScalerOptions::from_config(Fp16Config{});
  EXPECT_TRUE(o.dynamic);
  EXPECT_EQ(o.initial_scale, 65536.0);
  EXPECT_EQ(o.scale_window, 1000);
  EXPECT_EQ(o.hysteresis, 2);
  EXPECT_EQ(o.min_scale, 1.0);
  DynamicLossScaler scaler(o);
  for (int k = 0; k < 999; ++k)
    scaler.update(false);
  EXPECT_EQ(scaler.scale(), 65536.0);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 131072.0);
}

TEST(DynamicLossScaler, NeverGoesBelowMinScaleAndFailsWhenItOverflowsThere) {
  LossScalerOptions o;
  o.initial_scale = 3.0;
  o.hysteresis = 1;
  o.min_scale = 2.0;
  DynamicLossScaler scaler(o);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 2.0);  // max(3 / 2, 2)
  EXPECT_ERROR_CONTAINS(scaler.update(true), "min_loss_scale");

  o.raise_error_at_min_scale = false;
  DynamicLossScaler lenient(o);
  lenient.update(true);
  lenient.update(true);
  EXPECT_EQ(lenient.scale(), 2.0);
  EXPECT_EQ(lenient.state().last_overflow_iter, 1);
}

TEST(DynamicLossScaler, AStaticLossScaleNeverChanges) {
  Fp16Config fp16;
  fp16.loss_scale = 128.0;
  const LossScalerOptions o = LossScalerOptions::from_config(fp16);
  EXPECT_FALSE(o.dynamic);
  DynamicLossScaler scaler(o);
  for (bool overflow : {true, true, false, true})
    scaler.update(overflow);
  EXPECT_EQ(scaler.scale(), 128.0);
}

TEST(DynamicLossScaler, RejectsBadOptionsAndInconsistentStates) {
  LossScalerOptions o;
  o.scale_window = 0;
  EXPECT_ERROR_CONTAINS(DynamicLossScaler{o}, "loss_scale_window");
  DynamicLossScaler scaler;
  LossScalerState s;
  s.cur_scale = 8.0;
  s.cur_iter = 3;
  s.last_overflow_iter = 3;
  s.cur_hysteresis = 1;
  EXPECT_ERROR_CONTAINS(scaler.set_state(s), "inconsistent");
  s.last_overflow_iter = 2;
  scaler.set_state(s);
  EXPECT_EQ(scaler.scale(), 8.0);
}

// ---- overflow: skipped steps ---------------------------------------------------------------

TEST(MixedPrecision, GradsHaveInfOrNanFindsEitherAndIgnoresMissingGradients) {
  NamedTensors params = make_params(DType::F32);
  EXPECT_FALSE(grads_have_inf_or_nan(params));  // no gradients at all
  set_grads(params, 0);
  EXPECT_FALSE(grads_have_inf_or_nan(params));
  std::vector<double> g = params[1].second.grad().to_vector();
  g[4] = std::numeric_limits<double>::infinity();
  params[1].second.set_grad(Tensor::from_vector(g, {7}));
  EXPECT_TRUE(grads_have_inf_or_nan(params));
  g[4] = std::nan("");
  params[1].second.set_grad(Tensor::from_vector(g, {7}));
  EXPECT_TRUE(grads_have_inf_or_nan(params));
}

TEST(MixedPrecision, AnOverflowSkipsTheUpdateAndLowersTheScaleThenTrainingContinuesExactly) {
  const NamedTensors plain = make_params(DType::F32);
  const NamedTensors model = make_params(DType::F32);
  AdamW reference(plain, test_options());
  LossScalerOptions scaling;
  scaling.initial_scale = 256.0;
  scaling.hysteresis = 1;
  MixedPrecisionOptimizer opt(model, test_options(), scaling);
  const std::vector<Tensor> before = [&] {
    std::vector<Tensor> v;
    for (const auto& [name, p] : model)
      v.push_back(p.detach().clone());
    return v;
  }();

  // Step 0 overflows: an inf in one gradient, a NaN in another.
  set_grads(model, 0, opt.loss_scale());
  std::vector<double> g = model[0].second.grad().to_vector();
  g[2] = std::numeric_limits<double>::infinity();
  model[0].second.set_grad(Tensor::from_vector(g, {3, 5}));
  g = model[2].second.grad().to_vector();
  g[0] = std::nan("");
  model[2].second.set_grad(Tensor::from_vector(g, {5}));
  EXPECT_FALSE(opt.step());
  EXPECT_EQ(opt.loss_scale(), 128.0);
  for (size_t i = 0; i < model.size(); ++i) {
    EXPECT_TRUE(all_close(model[i].second, before[i], kExact, model[i].first + " after skip"));
    EXPECT_TRUE(all_close(opt.master_params()[i].second, before[i], kExact));
    EXPECT_EQ(opt.adamw().state(i).step, 0) << model[i].first;
    EXPECT_FALSE(opt.master_params()[i].second.grad().defined());
    EXPECT_FALSE(model[i].second.grad().defined());
  }

  // Then clean steps with gradients scaled by the (power-of-two) scale equal unscaled AdamW.
  for (int t = 1; t < 4; ++t) {
    set_grads(plain, t);
    set_grads(model, t, opt.loss_scale());
    reference.step();
    EXPECT_TRUE(opt.step());
    reference.zero_grad();
    for (size_t i = 0; i < plain.size(); ++i) {
      EXPECT_TRUE(all_close(model[i].second, plain[i].second, kExact,
                            plain[i].first + " after step " + std::to_string(t)));
    }
  }
  EXPECT_EQ(opt.loss_scale(), 128.0);
  EXPECT_EQ(opt.loss_scaler()->state().last_overflow_iter, 0);
}

// ---- state --------------------------------------------------------------------------------

TEST(MixedPrecision, StateDictRoundTripResumesBitExactlyWithMastersAndScaler) {
  LossScalerOptions scaling;
  scaling.initial_scale = 64.0;
  scaling.scale_window = 2;
  const NamedTensors model_a = make_params(DType::BF16);
  MixedPrecisionOptimizer a(model_a, test_options(), scaling);
  for (int t = 0; t < 3; ++t) {
    set_grads(model_a, t, a.loss_scale());
    ASSERT_TRUE(a.step());
  }
  // A second optimizer over other weights takes the state (its model gets the masters).
  const NamedTensors model_b = make_params(DType::BF16, /*seed=*/99);
  MixedPrecisionOptimizer b(model_b, test_options(), scaling);
  NamedTensors saved;
  for (const auto& [key, value] : a.state_dict())
    saved.emplace_back(key, value.clone());
  b.load_state_dict(saved);
  EXPECT_EQ(b.loss_scale(), a.loss_scale());
  EXPECT_EQ(b.loss_scale(), 128.0);  // doubled once, at iteration 1
  for (size_t i = 0; i < model_a.size(); ++i) {
    EXPECT_TRUE(all_close(model_b[i].second, model_a[i].second, kExact, model_a[i].first));
  }
  for (int t = 3; t < 5; ++t) {
    set_grads(model_a, t, a.loss_scale());
    set_grads(model_b, t, b.loss_scale());
    ASSERT_TRUE(a.step());
    ASSERT_TRUE(b.step());
  }
  for (size_t i = 0; i < model_a.size(); ++i) {
    EXPECT_TRUE(all_close(b.master_params()[i].second, a.master_params()[i].second, kExact,
                          model_a[i].first + " master"));
    EXPECT_TRUE(all_close(model_b[i].second, model_a[i].second, kExact, model_a[i].first));
  }
  EXPECT_EQ(b.loss_scaler()->state().cur_iter, 5);
}

TEST(MixedPrecision, SetMasterWeightsNeedsEveryNameAndWritesTheModel) {
  const NamedTensors model = make_params(DType::BF16);
  MixedPrecisionOptimizer opt(model, test_options());
  NamedTensors exact = make_params(DType::F32, /*seed=*/5);
  opt.set_master_weights(exact);
  for (size_t i = 0; i < model.size(); ++i) {
    EXPECT_TRUE(all_close(opt.master_params()[i].second, exact[i].second, kExact));
    EXPECT_TRUE(all_close(model[i].second, exact[i].second.to(DType::BF16), kExact));
  }
  exact.pop_back();
  EXPECT_ERROR_CONTAINS(opt.set_master_weights(exact), "head.weight");
}

}  // namespace
}  // namespace autotp
