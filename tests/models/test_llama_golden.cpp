// Llama-family models against Hugging Face transformers (golden files from
// tools/golden/make_llama_golden.py): parameter names, logits, loss and every gradient in f64
// and f32, with tolerances derived from the models' accumulation depth.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "core/ops.h"
#include "models/llama.h"
#include "models/registry.h"
#include "models/rope.h"
#include "tests/models/golden_reader.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::GoldenModel;
using testing::read_golden;
using testing::Tolerance;

constexpr int64_t kSeq = 9;  // the goldens' input_ids are [2, 9]

// The number of terms along the longest chain of rounded accumulations behind one logit:
// per decoder layer the input RMSNorm mean (hidden), the q/k/v projections (hidden), the
// q_norm/k_norm means (head_dim, qwen3), q.k (head_dim), the softmax sum and P.V (S each),
// o_proj (heads * head_dim), the post-attention RMSNorm (hidden), gate/up (hidden) and
// down_proj (intermediate); then the final norm (hidden) and lm_head (hidden). A sum of n
// terms rounded in unit roundoff u is off by at most about n*u times the sum of |terms|, so
// K*u bounds the chain's relative error to first order (terms of a mixed-sign sum can exceed
// the result, hence the error is measured against the tensor's largest |value|).
int64_t accumulation_depth(const ModelConfig& c) {
  const int64_t attention_width = c.num_attention_heads * c.head_dim;
  const int64_t qk_norm = llama_layout(c).qk_norm ? c.head_dim : 0;
  const int64_t per_layer = c.hidden_size * 2 + qk_norm + c.head_dim + 2 * kSeq + attention_width +
                            c.hidden_size * 2 + c.intermediate_size;
  return c.num_hidden_layers * per_layer + 2 * c.hidden_size;
}

double unit_roundoff(DType dtype) {
  return dtype == DType::F64 ? std::numeric_limits<double>::epsilon() / 2
                             : std::numeric_limits<float>::epsilon() / 2;
}

// |actual - expected| <= K*u * (max|expected| + |expected|) elementwise: forward values use the
// chain depth K, gradients (the backward pass runs the chain again) 2K.
Tolerance derived_tolerance(const Tensor& expected, int64_t depth, DType dtype) {
  double max_abs = 0.0;
  for (double v : expected.to_vector())
    max_abs = std::max(max_abs, std::fabs(v));
  const double bound = static_cast<double>(depth) * unit_roundoff(dtype);
  return {bound * max_abs, bound};
}

// max|actual - expected| / max|expected| (for the printed summary).
double normalized_error(const Tensor& actual, const Tensor& expected) {
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < e.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - e[i]));
    scale = std::max(scale, std::fabs(e[i]));
  }
  return scale > 0.0 ? diff / scale : diff;
}

const std::vector<std::string>& golden_names() {
  static const std::vector<std::string> names = {"llama_gqa",  "llama_tied_bias", "llama3_rope",
                                                 "qwen2_bias", "qwen3_qknorm",    "mistral_window"};
  return names;
}

// The golden's model in `dtype` with the golden weights loaded by name (strict).
std::shared_ptr<CausalLM> load_model(const GoldenModel& g, DType dtype) {
  const ModelConfig config = ModelConfig::from_map(g.config);
  std::shared_ptr<CausalLM> model = create_model_uninitialized(config, dtype);
  StateDict weights;
  for (const auto& [name, t] : g.with_prefix("param"))
    weights.emplace(name, t.to(dtype));
  model->load_state_dict(weights, /*strict=*/true);
  return model;
}

class LlamaGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { golden_ = read_golden(GetParam()); }
  GoldenModel golden_;
};

TEST_P(LlamaGolden, ConfigTxtParsesAndParameterNamesEqualTheCheckpointNames) {
  const ModelConfig config = ModelConfig::from_map(golden_.config);
  std::shared_ptr<CausalLM> model = create_model_uninitialized(config, DType::F64);
  std::set<std::string> ours, theirs;
  for (const auto& [name, t] : model->state_dict())
    ours.insert(name);
  for (const auto& [name, t] : golden_.with_prefix("param"))
    theirs.insert(name);
  EXPECT_EQ(ours, theirs);
  // Every parameter once (the tied embedding too) and with HF's shape.
  const auto named = model->named_parameters();
  EXPECT_EQ(named.size(), theirs.size());
  for (const auto& [name, t] : named) {
    EXPECT_EQ(t.shape(), golden_.at("param/" + name).shape()) << name;
  }
}

TEST_P(LlamaGolden, RopeInverseFrequenciesMatchTransformers) {
  const ModelConfig config = ModelConfig::from_map(golden_.config);
  const std::vector<double> inv_freq = rope_inv_freq(config);
  const Tensor ours =
      Tensor::from_vector(inv_freq, {static_cast<int64_t>(inv_freq.size())}, DType::F64);
  // Same formula in double as the script's float64 version: a few ulps.
  EXPECT_ALL_CLOSE(ours, golden_.at("inv_freq"), (Tolerance{0.0, 8 * unit_roundoff(DType::F64)}));
  // transformers' own float32 computation (inv_freq rounded to f32 in a few f32 operations).
  EXPECT_ALL_CLOSE(ours.to(DType::F32), golden_.at("inv_freq_hf"),
                   (Tolerance{0.0, 8 * unit_roundoff(DType::F32)}));
}

// Runs forward + loss + backward in `dtype` and compares with the f64 golden within the
// derived tolerance. Prints the observed normalized errors.
void check_against_golden(const GoldenModel& g, DType dtype) {
  std::shared_ptr<CausalLM> model = load_model(g, dtype);
  const int64_t depth = accumulation_depth(model->config());
  const Tensor& ids = g.at("input_ids");  // [2, 9] i64

  const Tensor logits = model->forward(ids);  // [2, 9, V]
  const Tensor& want_logits = g.at("logits");
  EXPECT_ALL_CLOSE(logits, want_logits, derived_tolerance(want_logits, depth, dtype));

  const Tensor loss = causal_lm_loss(logits, ids);
  EXPECT_ALL_CLOSE(loss, g.at("loss"), derived_tolerance(g.at("loss"), depth, dtype));
  {
    NoGradGuard no_grad;
    const Tensor masked = model->forward_loss(ids, g.at("labels_masked"));
    EXPECT_ALL_CLOSE(masked, g.at("loss_masked"),
                     derived_tolerance(g.at("loss_masked"), depth, dtype));
    // The masked labels remove terms: a different loss (the comparison is not vacuous).
    EXPECT_GT(std::fabs(masked.item() - loss.item()), 1e-3);
  }

  loss.backward();
  double worst_grad = 0.0;
  std::string worst_name;
  const auto grads = g.with_prefix("grad");
  ASSERT_EQ(model->named_parameters().size(), grads.size());
  for (const auto& [name, param] : model->named_parameters()) {
    const Tensor& want = grads.at(name);
    ASSERT_TRUE(param.grad().defined()) << name << " got no gradient";
    EXPECT_TRUE(testing::all_close(param.grad(), want, derived_tolerance(want, 2 * depth, dtype),
                                   "grad of " + name));
    const double err = normalized_error(param.grad(), want);
    if (err >= worst_grad) {
      worst_grad = err;
      worst_name = name;
    }
  }
  std::printf(
      "[ %s %s ] K=%lld u*K=%.2e | max err/max|ref|: logits %.2e, loss %.2e, grads %.2e "
      "(%s)\n",
      g.name.c_str(), std::string(dtype_name(dtype)).c_str(), static_cast<long long>(depth),
      depth * unit_roundoff(dtype), normalized_error(logits, want_logits),
      normalized_error(loss, g.at("loss")), worst_grad, worst_name.c_str());
}

TEST_P(LlamaGolden, F64LogitsLossAndEveryGradientMatchTransformers) {
  check_against_golden(golden_, DType::F64);
}

TEST_P(LlamaGolden, F32LogitsLossAndEveryGradientMatchTheF64GoldenWithinF32Rounding) {
  check_against_golden(golden_, DType::F32);
}

INSTANTIATE_TEST_SUITE_P(Transformers, LlamaGolden, ::testing::ValuesIn(golden_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace autotp
