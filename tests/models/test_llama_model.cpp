// Llama-family module tree: per-type parameter names, the tied lm_head, attention sharded by
// heads (as the AutoTP pass will do) summing to the full attention, input and sliding-window
// errors, HF-style initialization from a seed, and the shifted causal-LM loss.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "core/autograd/engine.h"
#include "core/ops.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "models/llama.h"
#include "models/registry.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_tensor;
using testing::tolerance_for;

ModelConfig tiny(const std::string& model_type, int64_t heads = 4, int64_t kv_heads = 2) {
  ModelConfigMap m;
  m.scalars = {{"model_type", model_type},
               {"vocab_size", "11"},
               {"hidden_size", "16"},
               {"intermediate_size", "12"},
               {"num_hidden_layers", "1"},
               {"num_attention_heads", std::to_string(heads)},
               {"num_key_value_heads", std::to_string(kv_heads)},
               {"attention_bias", "true"},
               {"mlp_bias", "true"}};
  return ModelConfig::from_map(m);
}

std::set<std::string> names_of(const Module& m) {
  std::set<std::string> out;
  for (const auto& [name, t] : m.state_dict())
    out.insert(name);
  return out;
}

bool has(const std::set<std::string>& names, const std::string& name) {
  return names.count(name) > 0;
}

TEST(LlamaModel, EachTypeRegistersExactlyHfsBiasesAndNorms) {
  const std::string attn = "model.layers.0.self_attn.";
  const std::string mlp = "model.layers.0.mlp.";
  // llama: attention_bias on q/k/v/o and mlp_bias on the MLP.
  const auto llama = names_of(*create_model_uninitialized(tiny("llama")));
  EXPECT_TRUE(has(llama, attn + "q_proj.bias") && has(llama, attn + "o_proj.bias"));
  EXPECT_TRUE(has(llama, mlp + "down_proj.bias"));
  EXPECT_EQ(llama.size(), 1 + (4 * 2 + 3 * 2 + 2) + 1 + 1u);  // embed, layer, norm, lm_head
  // qwen2: q/k/v bias whatever attention_bias says, none on o_proj or the MLP.
  const auto qwen2 = names_of(*create_model_uninitialized(tiny("qwen2")));
  EXPECT_TRUE(has(qwen2, attn + "q_proj.bias") && has(qwen2, attn + "k_proj.bias") &&
              has(qwen2, attn + "v_proj.bias"));
  EXPECT_FALSE(has(qwen2, attn + "o_proj.bias") || has(qwen2, mlp + "gate_proj.bias"));
  // qwen3: attention_bias on q/k/v/o, and per-head q_norm/k_norm [head_dim].
  auto qwen3_model = create_model_uninitialized(tiny("qwen3"));
  const auto qwen3 = names_of(*qwen3_model);
  EXPECT_TRUE(has(qwen3, attn + "o_proj.bias") && !has(qwen3, mlp + "up_proj.bias"));
  EXPECT_EQ(qwen3_model->state_dict().at(attn + "q_norm.weight").shape(), (Shape{4}));
  EXPECT_EQ(qwen3_model->state_dict().at(attn + "k_norm.weight").shape(), (Shape{4}));
  // mistral: no biases at all.
  for (const std::string& name : names_of(*create_model_uninitialized(tiny("mistral")))) {
    EXPECT_EQ(name.find("bias"), std::string::npos) << name;
  }
}

TEST(LlamaModel, TiedEmbeddingsHaveNoLmHeadAndShareTheEmbeddingGradient) {
  ModelConfig config = tiny("llama");
  config.tie_word_embeddings = true;
  auto model = create_model(config, /*seed=*/3, DType::F64);
  EXPECT_FALSE(model->has_child("lm_head"));
  EXPECT_FALSE(has(names_of(*model), "lm_head.weight"));
  // d loss / d embedding gets the lm_head use too: only-output-side rows (ids never fed in)
  // receive a nonzero gradient.
  const Tensor ids = Tensor::from_vector_i64({1, 2, 3, 1, 2, 3}, {2, 3});
  model->forward_loss(ids, ids).backward();
  Tensor grad;
  for (const auto& [name, p] : model->named_parameters()) {
    if (name == "model.embed_tokens.weight") grad = p.grad();
  }
  ASSERT_TRUE(grad.defined());
  const Tensor row = Tensor::zeros({16}, DType::F64);
  EXPECT_FALSE(testing::all_close(grad.select(0, 7), row, {0.0, 0.0}));  // id 7 is never input
}

TEST(LlamaModel, EveryGradientSumOfADecoderLayerIsFoldedIntoAKernel) {
  // Per layer, five gradients meet: q, k and v's dx (two sums, in the GEMMs), gate and up's dx
  // (one), and each residual's skip path with its norm's dx (two, in the RMSNorm backward).
  // None of them may cost a separate add. The tied embedding's two uses are summed by the
  // engine on the CPU (on CUDA the scatter-add folds it: tests/core/test_cuda_nn_ops.cpp).
  for (const bool tied : {false, true}) {
    ModelConfig config = tiny("llama");
    config.num_hidden_layers = 3;
    config.tie_word_embeddings = tied;
    auto model = create_model(config, /*seed=*/5, DType::F64);
    const Tensor ids = Tensor::from_vector_i64({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4});
    const BackwardSummary summary =
        run_backward(model->forward_loss(ids, ids), Tensor(), /*retain_graph=*/false);
    EXPECT_EQ(summary.folded_sums, 5 * 3) << "tied " << tied;
    EXPECT_EQ(summary.engine_sums, tied ? 1 : 0) << "tied " << tied;
  }
}

TEST(LlamaModel, AttentionKernelVariantsReachEveryLayerAndNeedAHeadDimOfAtMost64) {
  ModelConfig config = tiny("llama");
  config.num_hidden_layers = 2;
  auto model = create_model(config, /*seed=*/3, DType::F64);
  const Tensor ids = Tensor::from_vector_i64({1, 2, 3, 4, 5, 6}, {2, 3});
  const std::vector<double> before = model->forward(ids).to_vector();
  ops::AttentionKernels variant;
  variant.row_tiles_per_warp = 2;
  variant.dkdv_kv_in_registers = true;
  EXPECT_EQ(set_attention_kernels(*model, variant), 2);
  for (const auto& [name, module] : model->named_modules()) {
    if (const auto* attention = dynamic_cast<const LlamaAttention*>(module.get())) {
      EXPECT_EQ(attention->attention_kernels().row_tiles_per_warp, 2) << name;
      EXPECT_TRUE(attention->attention_kernels().dkdv_kv_in_registers) << name;
    }
  }
  // The CPU kernels have no variants: the same logits.
  EXPECT_EQ(model->forward(ids).to_vector(), before);
  // head_dim 128: the default is fine, a variant is an error naming the module.
  ModelConfig wide = tiny("llama", /*heads=*/2, /*kv_heads=*/1);
  wide.hidden_size = 256;
  wide.head_dim = 128;
  auto wide_model = create_model_uninitialized(wide);
  EXPECT_EQ(set_attention_kernels(*wide_model, ops::AttentionKernels{}), 1);
  EXPECT_ERROR_CONTAINS(set_attention_kernels(*wide_model, variant),
                        "need head_dim <= 64; this model's head_dim is 128");
}

TEST(LlamaModel, AttentionShardedByHeadsSumsToTheFullAttention) {
  // What the AutoTP pass does with 2 ranks: q/k/v keep half of the heads' rows (column
  // parallel), o_proj the matching input columns (row parallel, bias added once after the sum).
  // Head counts come from the replaced projections' widths, so the same module runs.
  const ModelConfig config = tiny("llama", /*heads=*/4, /*kv_heads=*/2);
  const int64_t d = config.head_dim, hidden = config.hidden_size;
  Generator gen(7);
  LlamaAttention full(config, DType::F64, Device::cpu());
  for (const auto& [name, p] : full.named_parameters())
    init::normal_(p, 0.3, gen);
  const Tensor x = random_tensor({2, 5, hidden}, 11);  // [B, S, hidden]
  const auto [cos, sin] = ops::rotary_tables(5, d, config.rope_theta, DType::F64);
  const Tensor expected = full.forward(x, cos, sin);

  auto linear_of = [](const Module& m, const char* name) -> Linear& {
    return m.child_as<Linear>(name);
  };
  Tensor sum = Tensor::zeros(expected.shape(), DType::F64);
  for (int64_t shard = 0; shard < 2; ++shard) {
    LlamaAttention part(config, DType::F64, Device::cpu());
    for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
      const Linear& src = linear_of(full, proj);
      const int64_t rows = src.out_features() / 2;
      part.replace_module(proj, std::make_shared<Linear>(hidden, rows, true, DType::F64));
      linear_of(part, proj).weight().copy_(src.weight().narrow(0, shard * rows, rows));
      linear_of(part, proj).bias().copy_(src.bias().narrow(0, shard * rows, rows));
    }
    const Linear& o = linear_of(full, "o_proj");
    const int64_t cols = o.in_features() / 2;
    part.replace_module("o_proj", std::make_shared<Linear>(cols, hidden, false, DType::F64));
    linear_of(part, "o_proj").weight().copy_(o.weight().narrow(1, shard * cols, cols));
    sum = ops::add(sum, part.forward(x, cos, sin));
  }
  sum = ops::add(sum, linear_of(full, "o_proj").bias());
  EXPECT_ALL_CLOSE(sum, expected, tolerance_for(DType::F64));

  // A projection whose width is not whole heads is named in the error.
  LlamaAttention broken(config, DType::F64, Device::cpu());
  broken.replace_module("q_proj", std::make_shared<Linear>(hidden, 6, true, DType::F64));
  EXPECT_ERROR_CONTAINS(
      broken.forward(x, cos, sin),
      "q_proj produced width 6, which is not a whole number of heads of head_dim 4");
}

TEST(LlamaModel, RejectsBadInputIdsAndSequencesLongerThanTheSlidingWindow) {
  auto model = create_model(tiny("llama"), 1);
  EXPECT_ERROR_CONTAINS(model->forward(Tensor::zeros({2, 3})), "input_ids must be i64 or i32");
  EXPECT_ERROR_CONTAINS(model->forward(Tensor::from_vector_i64({1, 2, 3}, {3})),
                        "input_ids must be [batch, seq], got shape [3]");
  ModelConfig windowed = tiny("mistral");
  windowed.sliding_window = 4;
  auto mistral = create_model(windowed, 1);
  const Tensor ids = Tensor::from_vector_i64({1, 2, 3, 4, 5}, {1, 5});
  EXPECT_ERROR_CONTAINS(mistral->forward(ids),
                        "sequence length 5 exceeds the sliding window 4; sliding-window attention "
                        "is not implemented");
  EXPECT_EQ(mistral->forward(ids.narrow(1, 0, 4)).shape(), (Shape{1, 4, 11}));
}

TEST(LlamaModel, RotaryTablesFollowTheSequenceLengthFromForwardToForward) {
  // The model keeps the last forward's cos/sin tables: a forward at another length must give
  // exactly what a fresh model (no tables yet) gives.
  const ModelConfig config = tiny("llama");
  auto reused = create_model(config, 3, DType::F64);
  const Tensor long_ids = Tensor::from_vector_i64({1, 2, 3, 4, 5, 6, 7, 1, 9, 10}, {2, 5});
  const Tensor short_ids = long_ids.narrow(1, 0, 3);
  auto fresh_logits = [&](const Tensor& ids) {
    auto model = create_model(config, 3, DType::F64);
    return model->forward(ids).to_vector();
  };
  for (const Tensor& ids : {long_ids, short_ids, long_ids}) {
    EXPECT_EQ(reused->forward(ids).to_vector(), fresh_logits(ids)) << "seq " << ids.size(1);
  }
}

TEST(ModelRegistry, CreateModelInitializesLikeHfFromTheSeed) {
  const ModelConfig config = tiny("llama");
  auto a = create_model(config, 5, DType::F64);
  auto b = create_model(config, 5, DType::F64);
  auto c = create_model(config, 6, DType::F64);
  const StateDict sa = a->state_dict(), sb = b->state_dict(), sc = c->state_dict();
  for (const auto& [name, t] : sa) {
    const std::vector<double> v = t.to_vector();
    EXPECT_EQ(v, sb.at(name).to_vector()) << name << " differs for the same seed";
    if (name.find("norm") != std::string::npos) {
      for (double x : v)
        ASSERT_EQ(x, 1.0) << name;
    } else if (name.find("bias") != std::string::npos) {
      for (double x : v)
        ASSERT_EQ(x, 0.0) << name;
    } else {
      EXPECT_NE(v, sc.at(name).to_vector()) << name << " is the same for another seed";
    }
  }
  // All weights together ~ N(0, 0.02): sample mean and std within 5 standard errors.
  std::vector<double> w;
  for (const auto& [name, t] : sa) {
    if (name.find("norm") == std::string::npos && name.find("bias") == std::string::npos) {
      for (double x : t.to_vector())
        w.push_back(x);
    }
  }
  double mean = 0.0, sq = 0.0;
  for (double x : w)
    mean += x;
  mean /= static_cast<double>(w.size());
  for (double x : w)
    sq += (x - mean) * (x - mean);
  const double std = std::sqrt(sq / static_cast<double>(w.size()));
  const double n = static_cast<double>(w.size());
  EXPECT_NEAR(mean, 0.0, 5 * 0.02 / std::sqrt(n));
  EXPECT_NEAR(std, 0.02, 5 * 0.02 / std::sqrt(2 * n));
}

TEST(CausalLmLoss, ShiftsLabelsInsideAndIgnoresMinus100LikeHf) {
  // logits [1, 3, 2]: position t predicts labels[t + 1]; the last position predicts nothing.
  const Tensor logits =
      Tensor::from_vector({0.5, -1.0, 2.0, 0.0, -3.0, 1.0}, {1, 3, 2}, DType::F64);
  auto nll = [](double a, double b, int target) {  // -log softmax([a, b])[target]
    const double lse = std::log(std::exp(a) + std::exp(b));
    return lse - (target == 0 ? a : b);
  };
  const Tensor labels = Tensor::from_vector_i64({1, 1, 0}, {1, 3});
  const double expected = (nll(0.5, -1.0, 1) + nll(2.0, 0.0, 0)) / 2;
  EXPECT_NEAR(causal_lm_loss(logits, labels).item(), expected, 1e-15);
  // An ignored label drops its position from the sum and the mean.
  const Tensor masked = Tensor::from_vector_i64({1, -100, 0}, {1, 3});
  EXPECT_NEAR(causal_lm_loss(logits, masked).item(), nll(2.0, 0.0, 0), 1e-15);
  EXPECT_ERROR_CONTAINS(causal_lm_loss(logits, Tensor::from_vector_i64({1, 1}, {1, 2})),
                        "labels of shape [1, 2] do not match logits of shape [1, 3, 2]");
}

TEST(CausalLmLoss, LabelsOfEitherIndexDtypeOrStridedGiveOneLossAndGradient) {
  // Labels are shifted on the host from whatever layout they come in; i32 and a transposed
  // view must give the loss and gradient of contiguous i64 labels.
  const std::vector<int64_t> values{3, 1, -100, 0, 2, 4, 1, 1};
  const Tensor reference_labels = Tensor::from_vector_i64(values, {2, 4});
  std::vector<int64_t> transposed(values.size());
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t t = 0; t < 4; ++t)
      transposed[t * 2 + b] = values[b * 4 + t];
  }
  const Tensor strided = Tensor::from_vector_i64(transposed, {4, 2}).transpose(0, 1);
  ASSERT_FALSE(strided.is_contiguous());
  const Tensor int32 = Tensor::from_vector_i64(values, {2, 4}, DType::I32);
  Tensor reference_logits = random_tensor({2, 4, 5}, 81, DType::F64);
  reference_logits.set_requires_grad(true);
  const Tensor reference = causal_lm_loss(reference_logits, reference_labels);
  reference.backward();
  for (const Tensor& labels : {strided, int32}) {
    Tensor logits = reference_logits.detach().clone().detach();
    logits.set_requires_grad(true);
    const Tensor loss = causal_lm_loss(logits, labels);
    loss.backward();
    EXPECT_EQ(loss.item(), reference.item());
    EXPECT_EQ(logits.grad().to_vector(), reference_logits.grad().to_vector());
  }
  EXPECT_ERROR_CONTAINS(
      causal_lm_loss(reference_logits, Tensor::from_vector_i64({0, 5, 1, 1, 1, 1, 1, 1}, {2, 4})),
      "target 5 at row 0");
}

}  // namespace
}  // namespace autotp
