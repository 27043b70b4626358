// The plan's checks: even shards in training (with the fix), uneven ones when allowed, more
// ranks than KV heads, output heads and tied weights, non-Linear targets, column/row
// consistency, per-head norms, fused shapes, and per-rank parameter counts.
#include <gtest/gtest.h>

#include "models/module_shapes.h"
#include "tests/autotp/autotp_test_helpers.h"

namespace autotp {
namespace {

using testing::all_text;
using testing::rank_shapes;
using testing::same_on;
using testing::tp_config;

TPLayerSpec spec(const std::string& pattern, SpecType type, bool gather = false) {
  TPLayerSpec s;
  s.patterns = {pattern};
  s.type = type;
  s.gather_output = gather;
  s.origin = "test spec";
  s.compile();
  return s;
}

AutoTPConfig with_specs(int64_t tp, std::vector<TPLayerSpec> specs,
                        const std::string& preset = "llama") {
  AutoTPConfig c = tp_config(tp, preset);
  c.has_partition_config = true;
  c.layer_specs = std::move(specs);
  return c;
}

TEST(Planner, UnevenShardsInTrainingAreErrorsThatNameTheFix) {
  const ModelConfig cfg = testing::toy_config("llama");  // 4 KV heads, intermediate 48
  const TPPlan plan = make_plan(module_shapes(cfg), tp_config(3, "llama"), model_dims(cfg));
  ASSERT_FALSE(plan.valid());
  const std::string text = all_text(plan.errors);
  EXPECT_NE(text.find("model.layers.*.self_attn.q_proj (in 2 layers): its out_features 32 does "
                      "not split evenly over autotp_size 3 (sizes 16, 8, 8, by whole KV heads). "
                      "Training needs even shards: use an autotp_size that divides "
                      "num_key_value_heads 4 (1, 2, 4), or allow uneven shards"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("model.layers.*.self_attn.o_proj (in 2 layers): its in_features 32"),
            std::string::npos);
  EXPECT_EQ(text.find("mlp"), std::string::npos) << "48 splits evenly over 3";
  EXPECT_ERROR_CONTAINS(throw_if_invalid(plan),
                        "the tensor-parallel plan for autotp_size 3 (preset 'llama') is not valid");
}

TEST(Planner, UnevenShardsFollowWholeKvHeadsWhenAllowed) {
  const ModelConfig cfg = testing::toy_config("llama");
  AutoTPConfig c = tp_config(3, "llama");
  c.allow_uneven = true;
  const TPPlan plan = make_plan(module_shapes(cfg), c, model_dims(cfg));
  ASSERT_TRUE(plan.valid()) << all_text(plan.errors);
  // 4 KV heads over 3 ranks: 2, 1, 1 groups of 2 query heads of dim 4.
  const std::string a = "model.layers.0.self_attn.";
  EXPECT_EQ(rank_shapes(plan, a + "q_proj.weight"),
            (std::vector<Shape>{{16, 32}, {8, 32}, {8, 32}}));
  EXPECT_EQ(rank_shapes(plan, a + "k_proj.weight"),
            (std::vector<Shape>{{8, 32}, {4, 32}, {4, 32}}));
  EXPECT_EQ(rank_shapes(plan, a + "o_proj.weight"),
            (std::vector<Shape>{{32, 16}, {32, 8}, {32, 8}}));
  EXPECT_EQ(rank_shapes(plan, "model.layers.0.mlp.down_proj.weight"), same_on(3, {32, 16}));
  // Inference mode allows them too.
  AutoTPConfig inference = tp_config(3, "llama");
  inference.training = false;
  EXPECT_TRUE(make_plan(module_shapes(cfg), inference, model_dims(cfg)).valid());
}

TEST(Planner, MoreRanksThanKvHeadsIsAnErrorInsteadOfIdleRanks) {
  ModelConfig cfg = testing::toy_config("qwen2");
  cfg.num_key_value_heads = 2;
  AutoTPConfig c = tp_config(4);
  c.allow_uneven = true;
  const TPPlan plan = make_plan(module_shapes(cfg), c, model_dims(cfg));
  ASSERT_FALSE(plan.valid());
  EXPECT_NE(all_text(plan.errors)
                .find("model.layers.*.self_attn.k_proj (in 2 layers): ranks 2, 3 of autotp_size 4 "
                      "would hold no part of its out_features 8: the split follows whole KV heads "
                      "and num_key_value_heads 2 < 4. autotp does not leave ranks idle as "
                      "DeepSpeed does; use an autotp_size that divides num_key_value_heads (1, 2)"),
            std::string::npos)
      << all_text(plan.errors);
}

TEST(Planner, AnUntiedHeadMayBeColumnWithGatheredOutput) {
  ModelConfig cfg = testing::toy_config("llama");
  cfg.vocab_size = 38;
  const TPPlan plan = make_plan(
      module_shapes(cfg), with_specs(2, {spec(R"(lm_head\.weight$)", SpecType::Column, true)}),
      model_dims(cfg));
  ASSERT_TRUE(plan.valid()) << all_text(plan.errors);
  EXPECT_EQ(plan.layer("lm_head")->action, LayerAction::Column);
  EXPECT_TRUE(plan.layer("lm_head")->gather_output);
  EXPECT_EQ(rank_shapes(plan, "lm_head.weight"), same_on(2, {19, 32}));
}

TEST(Planner, AHeadSplitWithoutGatherOrByRowsIsAnError) {
  const ModelConfig cfg = testing::toy_config("llama");
  const TPPlan column =
      make_plan(module_shapes(cfg), with_specs(2, {spec(R"(lm_head\.weight$)", SpecType::Column)}),
                model_dims(cfg));
  EXPECT_NE(all_text(column.errors)
                .find("lm_head: a column-parallel output head without "
                      "gather_output leaves each rank a slice of the logits"),
            std::string::npos)
      << all_text(column.errors);
  const TPPlan row =
      make_plan(module_shapes(cfg), with_specs(2, {spec(R"(lm_head\.weight$)", SpecType::Row)}),
                model_dims(cfg));
  EXPECT_NE(all_text(row.errors)
                .find("lm_head: a row-parallel output head would need a sharded "
                      "input"),
            std::string::npos);
}

TEST(Planner, ATiedHeadStaysReplicatedAndTiedWithAWarning) {
  std::vector<ModuleShape> layout = testing::bloom_layout();
  const TPPlan plan = make_plan(
      layout, with_specs(2, {spec(R"(lm_head\.weight$)", SpecType::Column, true)}, "bloom"),
      testing::bloom_dims());
  ASSERT_TRUE(plan.valid()) << all_text(plan.errors);
  EXPECT_EQ(plan.layer("lm_head")->action, LayerAction::Replicated);
  EXPECT_NE(all_text(plan.warnings)
                .find("lm_head.weight is tied to transformer.word_embeddings.weight: it stays "
                      "replicated and tied"),
            std::string::npos)
      << all_text(plan.warnings);
}

TEST(Planner, SplittingAnEmbeddingOrANonLinearModuleIsAnError) {
  const ModelConfig cfg = testing::toy_config("llama");
  const TPPlan emb = make_plan(
      module_shapes(cfg), with_specs(2, {spec(R"(.*embed_tokens\.weight$)", SpecType::Column)}),
      model_dims(cfg));
  EXPECT_NE(all_text(emb.errors)
                .find("model.embed_tokens: is an embedding but test spec splits "
                      "it: vocab-parallel embeddings are not implemented"),
            std::string::npos)
      << all_text(emb.errors);
  const TPPlan gate =
      make_plan(testing::deepseek_v2_layout(),
                with_specs(2, {spec(R"(.*mlp\.gate\.weight$)", SpecType::Column)}, "deepseek_v2"),
                testing::deepseek_v2_dims());
  EXPECT_NE(all_text(gate.errors).find("model.layers.1.mlp.gate: is a MoEGate, not a Linear"),
            std::string::npos)
      << all_text(gate.errors);
}

TEST(Planner, AColumnLayerMustSplitLikeTheRowLayerItFeeds) {
  // up_proj is excluded from the KV-head rule, "out" is not: 48 splits 16/16/16 one way and
  // by KV groups 24/12/12 the other.
  testing::LayoutBuilder b;
  b.linear("blk.0.ffn.up_proj", 8, 48, false).linear("blk.0.ffn.out", 48, 8, false);
  AutoTPConfig c = with_specs(
      3,
      {spec(R"(.*up_proj\.weight$)", SpecType::Column), spec(R"(.*out\.weight$)", SpecType::Row)},
      "");
  c.allow_uneven = true;
  const TPPlan plan = make_plan(b.build(), c, ModelDims{"", 8, 4, 4, 2, false});
  EXPECT_NE(all_text(plan.errors)
                .find("blk.0.ffn.up_proj: its output split (16, 16, 16 of 48) does not line up "
                      "with the input split of out (24, 12, 12 of 48)"),
            std::string::npos)
      << all_text(plan.errors);
}

TEST(Planner, PerHeadNormsBesideSplitHeadsGetGradientAllReduceWithoutASpec) {
  const ModelConfig cfg = testing::toy_config("qwen3");
  AutoTPConfig c = with_specs(2,
                              {spec(R"(.*\.self_attn\.[qkv]_proj\.weight$)", SpecType::Column),
                               spec(R"(.*\.self_attn\.o_proj\.weight$)", SpecType::Row)},
                              "");
  c.use_default_specs = false;
  const TPPlan plan = make_plan(module_shapes(cfg), c, model_dims(cfg));
  ASSERT_TRUE(plan.valid()) << all_text(plan.errors);
  EXPECT_EQ(plan.grad_allreduce_params().size(), 4u);
  EXPECT_EQ(plan.param("model.layers.0.self_attn.q_norm.weight")->rule.rfind("auto:", 0), 0u);
  // Without split heads nothing needs it.
  AutoTPConfig mlp_only = with_specs(2,
                                     {spec(R"(.*\.mlp\.(gate|up)_proj\.weight$)", SpecType::Column),
                                      spec(R"(.*\.mlp\.down_proj\.weight$)", SpecType::Row)},
                                     "");
  mlp_only.use_default_specs = false;
  EXPECT_TRUE(
      make_plan(module_shapes(cfg), mlp_only, model_dims(cfg)).grad_allreduce_params().empty());
}

TEST(Planner, ANormOverAWholeSplitProjectionIsAnError) {
  testing::LayoutBuilder b;
  b.linear("layers.0.attn.q_proj", 8, 8, false)
      .norm("layers.0.attn.q_norm", 8)
      .linear("layers.0.attn.o_proj", 8, 8, false);
  AutoTPConfig c = tp_config(2);
  const TPPlan plan = make_plan(b.build(), c, ModelDims{});
  EXPECT_NE(all_text(plan.errors)
                .find("layers.0.attn.q_norm: normalizes the whole q_proj output "
                      "(8 features), which is column-split"),
            std::string::npos)
      << all_text(plan.errors);
}

TEST(Planner, ABadFusedShapeIsAnErrorNamingTheLayerAndRule) {
  const TPPlan plan =
      make_plan(testing::phi3_layout(),
                with_specs(2, {[] {
                             TPLayerSpec s;
                             s.patterns = {R"(.*qkv_proj\.weight$)"};
                             s.shape = FusedShape{FusedDim::of(5), FusedDim::infer()};
                             s.origin = "five";
                             s.compile();
                             return s;
                           }()},
                           "phi3"),
                testing::phi3_dims());
  const std::string text = all_text(plan.errors);
  EXPECT_NE(text.find("model.layers.*.self_attn.qkv_proj (in 2 layers):"), std::string::npos)
      << text;
  EXPECT_NE(text.find("rule five column"), std::string::npos) << text;
}

TEST(Planner, CountsEachRanksParameters) {
  const ModelConfig cfg = testing::toy_config("qwen2");  // q/k/v biases
  const TPPlan plan = make_plan(module_shapes(cfg), tp_config(2, "qwen2"), model_dims(cfg));
  const int64_t v = 37, h = 32, q = 32, kv = 16, inner = 48, layers = 2;
  const int64_t replicated = 2 * v * h + (2 * layers + 1) * h;  // embeddings, head, norms
  const int64_t sharded_per_layer = (q * h + q) + 2 * (kv * h + kv) + q * h + 3 * h * inner;
  const int64_t expected = replicated + layers * sharded_per_layer / 2;
  EXPECT_EQ(plan.rank_parameters, (std::vector<int64_t>{expected, expected}));
  EXPECT_EQ(make_plan(module_shapes(cfg), tp_config(1), model_dims(cfg)).rank_parameters[0],
            replicated + layers * sharded_per_layer);
}

TEST(Planner, AnAlreadyParallelModelIsAnError) {
  testing::LayoutBuilder b;
  b.module({"layers.0.mlp.up_proj", "ColumnParallelLinear", {{"weight", {4, 8}}}, {}});
  const TPPlan plan = make_plan(b.build(), tp_config(2), ModelDims{});
  EXPECT_NE(all_text(plan.errors).find("is already a ColumnParallelLinear"), std::string::npos);
}

}  // namespace
}  // namespace autotp
