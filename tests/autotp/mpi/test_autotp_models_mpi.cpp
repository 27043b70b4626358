// The central AutoTP test under mpirun: Llama, Qwen2 and Qwen3 toys sharded over every rank
// (TP = 2, 3 with uneven KV-head shards, 4) give the logits, loss, gathered gradients and
// AdamW trajectory of the unsharded model (f64, within the f64 tolerance), with and without
// tp_overlap_comm; Qwen3's q_norm/k_norm stay identical on every rank; the collectives of one
// step are pinned.
#include <gtest/gtest.h>

#include "engine/optimizer.h"
#include "layers/parallel/column_parallel_linear.h"
#include "layers/parallel/row_parallel_linear.h"
#include "tests/autotp/mpi/autotp_mpi_helpers.h"

namespace autotp {
namespace {

using testing::build_model;
using testing::kTpTolerance;
using testing::shard;
using testing::test_world;
using testing::token_batch;

struct ModelCase {
  std::string type;
  bool tied;
};

std::string case_name(const ::testing::TestParamInfo<ModelCase>& info) {
  return info.param.type + (info.param.tied ? "_tied" : "");
}

class AutoTPModel : public ::testing::TestWithParam<ModelCase> {
 protected:
  ModelConfig config() const { return testing::toy_config(GetParam().type, GetParam().tied); }
};

TEST_P(AutoTPModel, ReplacesEveryAttentionAndMlpLinearKeepingHfNames) {
  auto tp = test_world();
  const ModelConfig cfg = config();
  auto model = build_model(cfg);
  const auto ref = build_model(cfg);
  const AutoTPResult r = shard(*model, tp);
  EXPECT_EQ(r.replaced_layers, 7 * cfg.num_hidden_layers);
  EXPECT_EQ(r.plan.selection.description,
            fmt::format("preset '{}' (detected from model_type '{}')",
                        cfg.model_type == "qwen3" ? "llama" : cfg.model_type, cfg.model_type));
  EXPECT_EQ(model->get_submodule("model.layers.1.self_attn.q_proj")->type_name(),
            "ColumnParallelLinear");
  EXPECT_EQ(model->get_submodule("model.layers.1.mlp.down_proj")->type_name(), "RowParallelLinear");
  EXPECT_EQ(model->get_submodule("model.embed_tokens")->type_name(), "Embedding");
  if (!cfg.tie_word_embeddings) {
    EXPECT_EQ(model->get_submodule("lm_head")->type_name(), "Linear");
  }
  // The same HF names in the same order; every rank holds its planned shard.
  const auto names = model->named_parameters(), ref_names = ref->named_parameters();
  ASSERT_EQ(names.size(), ref_names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(names[i].first, ref_names[i].first);
    EXPECT_EQ(names[i].second.shape(),
              r.plan.param(names[i].first)->rank_shapes[static_cast<size_t>(tp->rank())])
        << names[i].first;
  }
  EXPECT_EQ(model->num_parameters(), r.plan.rank_parameters[static_cast<size_t>(tp->rank())]);
  EXPECT_EQ(r.grad_allreduce != nullptr, cfg.model_type == "qwen3");
}

TEST_P(AutoTPModel, LogitsLossAndGatheredGradientsEqualTheUnshardedModel) {
  auto tp = test_world();
  const ModelConfig cfg = config();
  auto model = build_model(cfg);
  const auto ref = build_model(cfg);
  const AutoTPResult r = shard(*model, tp);
  const Tensor ids = token_batch(cfg.vocab_size, 0);
  const Tensor logits_ref = ref->forward(ids), logits = model->forward(ids);
  EXPECT_ALL_CLOSE(logits, logits_ref, kTpTolerance);
  const Tensor loss_ref = causal_lm_loss(logits_ref, ids), loss = causal_lm_loss(logits, ids);
  EXPECT_ALL_CLOSE(loss, loss_ref, kTpTolerance);
  loss_ref.backward();
  loss.backward();
  if (r.grad_allreduce) r.grad_allreduce->all_reduce_grads();
  testing::expect_same_parameters(*model, *ref, /*grads=*/true);
}

class AutoTPTraining : public ::testing::TestWithParam<std::tuple<ModelCase, bool>> {};

TEST_P(AutoTPTraining, AdamWStepsFollowTheUnshardedTrajectory) {
  auto tp = test_world();
  const auto [mc, overlap] = GetParam();
  const ModelConfig cfg = testing::toy_config(mc.type, mc.tied);
  auto model = build_model(cfg);
  const auto ref = build_model(cfg);
  AutoTPConfig c;
  c.tp_overlap_comm = overlap;
  const AutoTPResult r = shard(*model, tp, c);
  AdamWOptions opts;
  opts.lr = 1e-2;
  opts.weight_decay = 0.01;
  AdamW opt_ref(ref->named_parameters(), opts), opt(model->named_parameters(), opts);
  constexpr int kSteps = 20;  // the issue's 20-step comparison
  std::vector<double> losses_ref, losses;
  for (int step = 0; step < kSteps; ++step) {
    const Tensor ids = token_batch(cfg.vocab_size, step);
    const Tensor loss_ref = ref->forward_loss(ids, ids), loss = model->forward_loss(ids, ids);
    losses_ref.push_back(loss_ref.to_vector()[0]);
    losses.push_back(loss.to_vector()[0]);
    loss_ref.backward();
    loss.backward();
    if (r.grad_allreduce) r.grad_allreduce->all_reduce_grads();
    opt_ref.step();
    opt.step();
    opt_ref.zero_grad();
    opt.zero_grad();
  }
  ASSERT_NE(losses_ref.front(), losses_ref.back()) << "the model did not train";
  EXPECT_ALL_CLOSE(Tensor::from_vector(losses, {kSteps}, DType::F64),
                   Tensor::from_vector(losses_ref, {kSteps}, DType::F64), kTpTolerance);
  testing::expect_same_parameters(*model, *ref, /*grads=*/false);
  if (cfg.model_type == "qwen3") {
    ASSERT_NE(r.grad_allreduce, nullptr);
    EXPECT_EQ(r.grad_allreduce->names().size(), 4u);
    for (const std::string& name : r.grad_allreduce->names()) {
      const Tensor w = model->get_submodule(name.substr(0, name.rfind('.')))->parameter("weight");
      EXPECT_TRUE(testing::identical_on_every_rank(*tp, w)) << name << " drifted between ranks";
      EXPECT_NE(w.to_vector(), std::vector<double>(w.numel(), 1.0)) << name << " never trained";
    }
  }
}

TEST_P(AutoTPModel, OneStepIssuesTwoAllReducesPerLayerForwardAndFiveBackward) {
  auto tp = test_world();
  const ModelConfig cfg = config();
  auto model = build_model(cfg);
  const AutoTPResult r = shard(*model, tp);
  const Tensor ids = token_batch(cfg.vocab_size, 0);
  const int64_t layers = cfg.num_hidden_layers, tokens = ids.numel();
  tp->enable_recording();
  CollectiveRecorder& rec = *tp->recorder();
  rec.begin_step();
  const Tensor loss = model->forward_loss(ids, ids);
  rec.begin_step();
  loss.backward();
  rec.begin_step();
  if (r.grad_allreduce) r.grad_allreduce->all_reduce_grads();
  rec.begin_step();
  ASSERT_EQ(rec.history().size(), 4u);
  // Forward: the all-reduce of o_proj's and down_proj's partial outputs [B, S, hidden].
  const CollectiveCounts& forward = rec.history()[1];
  EXPECT_EQ(forward[CollectiveKind::AllReduce].calls, 2 * layers);
  EXPECT_EQ(forward[CollectiveKind::AllReduce].bytes, 2 * layers * tokens * cfg.hidden_size * 8);
  EXPECT_EQ(forward.total_calls(), 2 * layers);
  // Backward: the input-gradient all-reduce of each column layer (q, k, v, gate, up).
  const CollectiveCounts& backward = rec.history()[2];
  EXPECT_EQ(backward[CollectiveKind::AllReduce].calls, 5 * layers);
  EXPECT_EQ(backward[CollectiveKind::AllReduce].bytes, 5 * layers * tokens * cfg.hidden_size * 8);
  EXPECT_EQ(backward.total_calls(), 5 * layers);
  // Qwen3: one gradient all-reduce per per-head norm weight [head_dim].
  const CollectiveCounts& sync = rec.history()[3];
  const int64_t norms = cfg.model_type == "qwen3" ? 2 * layers : 0;
  EXPECT_EQ(sync[CollectiveKind::AllReduce].calls, norms);
  EXPECT_EQ(sync[CollectiveKind::AllReduce].bytes, norms * cfg.head_dim * 8);
  EXPECT_EQ(sync.total_calls(), norms);
  tp->check_sequence();
  tp->disable_recording();
}

const std::vector<ModelCase> kCases = {{"llama", false}, {"qwen2", false}, {"qwen3", true}};

INSTANTIATE_TEST_SUITE_P(Toys, AutoTPModel, ::testing::ValuesIn(kCases), case_name);
INSTANTIATE_TEST_SUITE_P(Toys, AutoTPTraining,
                         ::testing::Combine(::testing::ValuesIn(kCases), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<std::tuple<ModelCase, bool>>& info) {
                           const ModelCase& mc = std::get<0>(info.param);
                           return mc.type + (mc.tied ? "_tied" : "") +
                                  (std::get<1>(info.param) ? "_overlap" : "_plain");
                         });

TEST(AutoTPHead, AnUntiedHeadSplitByColumnsWithGatheredLogitsEqualsTheUnshardedModel) {
  auto tp = test_world();
  ModelConfig cfg = testing::toy_config("llama");
  cfg.vocab_size = 48;  // divides over 2, 3 and 4
  auto model = build_model(cfg);
  const auto ref = build_model(cfg);
  AutoTPConfig c;
  c.has_partition_config = true;  // merged with the detected llama preset
  TPLayerSpec head;
  head.patterns = {R"(lm_head\.weight$)"};
  head.gather_output = true;
  head.origin = "head spec";
  head.compile();
  c.layer_specs = {head};
  const AutoTPResult r = shard(*model, tp, c);
  EXPECT_EQ(r.replaced_layers, 7 * cfg.num_hidden_layers + 1);
  EXPECT_EQ(model->get_submodule("lm_head")->type_name(), "ColumnParallelLinear");
  const Tensor ids = token_batch(cfg.vocab_size, 1);
  tp->enable_recording();
  tp->recorder()->begin_step();
  const Tensor logits = model->forward(ids);
  const CollectiveCounts forward = tp->recorder()->current();
  tp->disable_recording();
  EXPECT_EQ(forward[CollectiveKind::AllReduce].calls, 2 * cfg.num_hidden_layers);
  EXPECT_EQ(forward[CollectiveKind::AllGather].calls, 1);
  const Tensor logits_ref = ref->forward(ids);
  EXPECT_ALL_CLOSE(logits, logits_ref, kTpTolerance);
  causal_lm_loss(logits_ref, ids).backward();
  causal_lm_loss(logits, ids).backward();
  testing::expect_same_parameters(*model, *ref, /*grads=*/true);
}

}  // namespace
}  // namespace autotp
