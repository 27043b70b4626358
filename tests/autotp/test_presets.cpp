// Each preset on the module layout of its architecture (2 layers, Hugging Face names): every
// module's decision and the shard shapes at TP=2, the head-count fused splits of phi3 and
// chatglm, and preset detection from model_type.
#include <gtest/gtest.h>

#include "autotp/presets.h"
#include "models/module_shapes.h"
#include "tests/autotp/autotp_test_helpers.h"

namespace autotp {
namespace {

using testing::expect_actions;
using testing::rank_shapes;
using testing::same_on;
using testing::tp_config;
constexpr LayerAction C = LayerAction::Column, R = LayerAction::Row, X = LayerAction::Replicated;

std::map<std::string, LayerAction> llama_expectations(bool qk_norm, bool tied) {
  std::map<std::string, LayerAction> e = {{"model.embed_tokens", X},
                                          {"model.layers.*.self_attn.q_proj", C},
                                          {"model.layers.*.self_attn.k_proj", C},
                                          {"model.layers.*.self_attn.v_proj", C},
                                          {"model.layers.*.self_attn.o_proj", R},
                                          {"model.layers.*.mlp.gate_proj", C},
                                          {"model.layers.*.mlp.up_proj", C},
                                          {"model.layers.*.mlp.down_proj", R},
                                          {"model.layers.*.input_layernorm", X},
                                          {"model.layers.*.post_attention_layernorm", X},
                                          {"model.norm", X}};
  if (qk_norm) {
    e["model.layers.*.self_attn.q_norm"] = X;
    e["model.layers.*.self_attn.k_norm"] = X;
  }
  if (!tied) e["lm_head"] = X;
  return e;
}

class LlamaFamilyPreset : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaFamilyPreset, ShardsAttentionAndMlpByTheLlamaRules) {
  const std::string type = GetParam();
  const ModelConfig cfg = testing::toy_config(type, /*tied=*/type == "qwen3");
  const std::string preset = type == "qwen3" ? "llama" : type;
  const TPPlan plan = make_plan(module_shapes(cfg), tp_config(2, preset), model_dims(cfg));
  ASSERT_TRUE(plan.valid()) << testing::all_text(plan.errors);
  EXPECT_TRUE(plan.unmatched.empty());
  EXPECT_TRUE(plan.warnings.empty()) << testing::all_text(plan.warnings);
  expect_actions(plan, llama_expectations(type == "qwen3", type == "qwen3"));
  // hidden 32, 8 heads over 4 KV heads of dim 4, intermediate 48; TP=2.
  const std::string a = "model.layers.1.self_attn.";
  EXPECT_EQ(rank_shapes(plan, a + "q_proj.weight"), same_on(2, {16, 32}));
  EXPECT_EQ(rank_shapes(plan, a + "k_proj.weight"), same_on(2, {8, 32}));
  EXPECT_EQ(rank_shapes(plan, a + "v_proj.weight"), same_on(2, {8, 32}));
  EXPECT_EQ(rank_shapes(plan, a + "o_proj.weight"), same_on(2, {32, 16}));
  EXPECT_EQ(rank_shapes(plan, "model.layers.0.mlp.up_proj.weight"), same_on(2, {24, 32}));
  EXPECT_EQ(rank_shapes(plan, "model.layers.0.mlp.down_proj.weight"), same_on(2, {32, 24}));
  EXPECT_EQ(rank_shapes(plan, "model.embed_tokens.weight"), same_on(2, {37, 32}));
  if (type == "qwen2") {  // q/k/v biases follow their rows
    EXPECT_EQ(rank_shapes(plan, a + "q_proj.bias"), same_on(2, {16}));
    EXPECT_EQ(rank_shapes(plan, a + "k_proj.bias"), same_on(2, {8}));
    EXPECT_TRUE(plan.param(a + "k_proj.bias")->sharded);
  }
  const std::vector<std::string> ga = plan.grad_allreduce_params();
  if (type == "qwen3") {
    EXPECT_EQ(ga, (std::vector<std::string>{"model.layers.0.self_attn.q_norm.weight",
                                            "model.layers.0.self_attn.k_norm.weight",
                                            "model.layers.1.self_attn.q_norm.weight",
                                            "model.layers.1.self_attn.k_norm.weight"}));
    EXPECT_NE(plan.param(a + "q_norm.weight")->rule.find("preset 'llama' #5"), std::string::npos);
  } else {
    EXPECT_TRUE(ga.empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Types, LlamaFamilyPreset,
                         ::testing::Values("llama", "qwen2", "mistral", "qwen3"));

TEST(Preset, LlamaRulesAreDeepSpeedsPatternsInOrder) {
  const std::vector<TPLayerSpec> specs = preset_specs("LLaMA", {});
  ASSERT_EQ(specs.size(), 5u);
  EXPECT_EQ(specs[0].patterns[0], R"(.*\.self_attn\.o_proj\.weight$)");
  EXPECT_EQ(specs[0].type, SpecType::Row);
  EXPECT_EQ(specs[1].patterns[0], R"(.*\.self_attn\.[qkv]_proj\.weight$)");
  EXPECT_EQ(specs[2].patterns[0], R"(.*\.mlp\.down_proj\.weight$)");
  EXPECT_EQ(specs[3].patterns[0], R"(.*\.mlp\.(up|gate)_proj\.weight$)");
  EXPECT_EQ(specs[3].type, SpecType::Column);
  EXPECT_EQ(specs[4].type, SpecType::Skip);
  EXPECT_TRUE(specs[4].grad_allreduce);
}

TEST(Preset, BloomSplitsTheInterleavedQkvPlainlyAndKeepsTheTiedHeadReplicated) {
  const TPPlan plan =
      make_plan(testing::bloom_layout(), tp_config(2, "bloom"), testing::bloom_dims());
  ASSERT_TRUE(plan.valid()) << testing::all_text(plan.errors);
  EXPECT_TRUE(plan.unmatched.empty());
  expect_actions(plan, {{"transformer.word_embeddings", X},
                        {"transformer.word_embeddings_layernorm", X},
                        {"transformer.h.*.input_layernorm", X},
                        {"transformer.h.*.self_attention.query_key_value", C},
                        {"transformer.h.*.self_attention.dense", R},
                        {"transformer.h.*.post_attention_layernorm", X},
                        {"transformer.h.*.mlp.dense_h_to_4h", C},
                        {"transformer.h.*.mlp.dense_4h_to_h", R},
                        {"transformer.ln_f", X},
                        {"lm_head", X}});
  const std::string l = "transformer.h.0.";
  EXPECT_EQ(rank_shapes(plan, l + "self_attention.query_key_value.weight"), same_on(2, {24, 16}));
  EXPECT_EQ(rank_shapes(plan, l + "self_attention.query_key_value.bias"), same_on(2, {24}));
  EXPECT_EQ(rank_shapes(plan, l + "self_attention.dense.weight"), same_on(2, {16, 8}));
  EXPECT_EQ(rank_shapes(plan, l + "self_attention.dense.bias"), same_on(2, {16}));
  EXPECT_FALSE(plan.param(l + "self_attention.dense.bias")->sharded);  // added after the reduce
  EXPECT_EQ(rank_shapes(plan, l + "mlp.dense_h_to_4h.weight"), same_on(2, {32, 16}));
  EXPECT_EQ(rank_shapes(plan, l + "mlp.dense_4h_to_h.weight"), same_on(2, {16, 32}));
  EXPECT_EQ(plan.param("lm_head.weight")->tied_to, "transformer.word_embeddings.weight");
  // The tied head is not counted twice.
  int64_t total = 0;
  for (const ParamPlan& p : plan.params)
    total += p.tied_to.empty() ? shape_numel(p.full_shape) : 0;
  EXPECT_LT(plan.rank_parameters[0], total);
}

TEST(Preset, ChatglmSplitsItsMqaQkvByHeadCountsAndItsPackedGateUpByHalves) {
  const TPPlan plan =
      make_plan(testing::chatglm_layout(), tp_config(2, "chatglm"), testing::chatglm_dims());
  ASSERT_TRUE(plan.valid()) << testing::all_text(plan.errors);
  EXPECT_TRUE(plan.unmatched.empty());
  expect_actions(plan, {{"transformer.embedding.word_embeddings", X},
                        {"transformer.encoder.layers.*.input_layernorm", X},
                        {"transformer.encoder.layers.*.self_attention.query_key_value", C},
                        {"transformer.encoder.layers.*.self_attention.dense", R},
                        {"transformer.encoder.layers.*.post_attention_layernorm", X},
                        {"transformer.encoder.layers.*.mlp.dense_h_to_4h", C},
                        {"transformer.encoder.layers.*.mlp.dense_4h_to_h", R},
                        {"transformer.encoder.final_layernorm", X},
                        {"transformer.output_layer", X}});
  const LayerPlan* qkv = plan.layer("transformer.encoder.layers.0.self_attention.query_key_value");
  ASSERT_NE(qkv, nullptr);
  // q = 8 heads * 4 = 32, k = v = 2 groups * 4 = 8 (DeepSpeed's (3, -1) would cut 16/16/16).
  EXPECT_EQ(*qkv->shape, (FusedShape{FusedDim::of_parts({32, 8, 8}), FusedDim::infer()}));
  EXPECT_EQ(qkv->rank_sizes, (std::vector<int64_t>{24, 24}));  // 16 + 4 + 4 each
  const std::string l = "transformer.encoder.layers.1.";
  EXPECT_EQ(rank_shapes(plan, l + "self_attention.query_key_value.bias"), same_on(2, {24}));
  EXPECT_EQ(rank_shapes(plan, l + "self_attention.dense.weight"), same_on(2, {32, 16}));
  EXPECT_EQ(rank_shapes(plan, l + "mlp.dense_h_to_4h.weight"), same_on(2, {24, 32}));
  EXPECT_EQ(rank_shapes(plan, l + "mlp.dense_4h_to_h.weight"), same_on(2, {32, 12}));
}

TEST(Preset, FusedPresetsNeedTheHeadCounts) {
  EXPECT_ERROR_CONTAINS(preset_specs("phi3", {}),
                        "preset 'phi3' splits the fused self_attn.qkv_proj by head counts");
  EXPECT_ERROR_CONTAINS(preset_specs("chatglm", {}), "needs the model's num_attention_heads");
}

TEST(Preset, MixtralShardsExpertsAndSkipsTheRouter) {
  const TPPlan plan =
      make_plan(testing::mixtral_layout(), tp_config(2, "mixtral"), testing::mixtral_dims());
  ASSERT_TRUE(plan.valid()) << testing::all_text(plan.errors);
  EXPECT_TRUE(plan.unmatched.empty());
  expect_actions(plan, {{"model.embed_tokens", X},
                        {"model.layers.*.self_attn.q_proj", C},
                        {"model.layers.*.self_attn.k_proj", C},
                        {"model.layers.*.self_attn.v_proj", C},
                        {"model.layers.*.self_attn.o_proj", R},
                        {"model.layers.*.block_sparse_moe.gate", X},
                        {"model.layers.*.block_sparse_moe.experts.*.w1", C},
                        {"model.layers.*.block_sparse_moe.experts.*.w2", R},
                        {"model.layers.*.block_sparse_moe.experts.*.w3", C},
                        {"model.layers.*.input_layernorm", X},
                        {"model.layers.*.post_attention_layernorm", X},
                        {"model.norm", X},
                        {"lm_head", X}});
  EXPECT_NE(plan.layer("model.layers.0.block_sparse_moe.gate")->rule.find("skip"),
            std::string::npos);
  const std::string x = "model.layers.1.block_sparse_moe.experts.3.";
  EXPECT_EQ(rank_shapes(plan, x + "w1.weight"), same_on(2, {12, 16}));
  EXPECT_EQ(rank_shapes(plan, x + "w2.weight"), same_on(2, {16, 12}));
  EXPECT_EQ(rank_shapes(plan, x + "w3.weight"), same_on(2, {12, 16}));
  EXPECT_EQ(rank_shapes(plan, "model.layers.0.self_attn.k_proj.weight"), same_on(2, {4, 16}));
}

TEST(Preset, DeepseekV2SkipsMlaDownProjectionsAndTheRouter) {
  const TPPlan plan = make_plan(testing::deepseek_v2_layout(), tp_config(2, "deepseek_v2"),
                                testing::deepseek_v2_dims());
  ASSERT_TRUE(plan.valid()) << testing::all_text(plan.errors);
  // DeepSpeed's table leaves the dense layer 0's MLP unmatched; autotp's preset names it.
  EXPECT_TRUE(plan.unmatched.empty());
  expect_actions(plan, {{"model.embed_tokens", X},
                        {"model.layers.*.self_attn.q_a_proj", X},
                        {"model.layers.*.self_attn.q_a_layernorm", X},
                        {"model.layers.*.self_attn.q_b_proj", C},
                        {"model.layers.*.self_attn.kv_a_proj_with_mqa", X},
                        {"model.layers.*.self_attn.kv_a_layernorm", X},
                        {"model.layers.*.self_attn.kv_b_proj", C},
                        {"model.layers.*.self_attn.o_proj", R},
                        {"model.layers.*.mlp.gate_proj", C},
                        {"model.layers.*.mlp.up_proj", C},
                        {"model.layers.*.mlp.down_proj", R},
                        {"model.layers.*.mlp.experts.*.gate_proj", C},
                        {"model.layers.*.mlp.experts.*.up_proj", C},
                        {"model.layers.*.mlp.experts.*.down_proj", R},
                        {"model.layers.*.mlp.gate", X},
                        {"model.layers.*.mlp.shared_experts.gate_proj", C},
                        {"model.layers.*.mlp.shared_experts.up_proj", C},
                        {"model.layers.*.mlp.shared_experts.down_proj", R},
                        {"model.layers.*.input_layernorm", X},
                        {"model.layers.*.post_attention_layernorm", X},
                        {"model.norm", X},
                        {"lm_head", X}});
  EXPECT_NE(plan.layer("model.layers.1.mlp.gate")->rule.find("skip"), std::string::npos);
  const std::string a = "model.layers.0.self_attn.";
  EXPECT_EQ(rank_shapes(plan, a + "q_b_proj.weight"), same_on(2, {12, 8}));
  EXPECT_EQ(rank_shapes(plan, a + "kv_b_proj.weight"), same_on(2, {16, 6}));
  EXPECT_EQ(rank_shapes(plan, a + "o_proj.weight"), same_on(2, {16, 8}));
  EXPECT_EQ(rank_shapes(plan, "model.layers.0.mlp.down_proj.weight"), same_on(2, {16, 12}));
  EXPECT_EQ(rank_shapes(plan, "model.layers.1.mlp.experts.2.down_proj.weight"),
            same_on(2, {16, 4}));
  EXPECT_EQ(rank_shapes(plan, "model.layers.1.mlp.shared_experts.up_proj.weight"),
            same_on(2, {8, 16}));
}

TEST(Preset, Phi3SplitsItsGqaQkvByHeadCounts) {
  const TPPlan plan = make_plan(testing::phi3_layout(), tp_config(2, "phi3"), testing::phi3_dims());
  ASSERT_TRUE(plan.valid()) << testing::all_text(plan.errors);
  EXPECT_TRUE(plan.unmatched.empty());
  expect_actions(plan, {{"model.embed_tokens", X},
                        {"model.layers.*.self_attn.o_proj", R},
                        {"model.layers.*.self_attn.qkv_proj", C},
                        {"model.layers.*.mlp.gate_up_proj", C},
                        {"model.layers.*.mlp.down_proj", R},
                        {"model.layers.*.input_layernorm", X},
                        {"model.layers.*.post_attention_layernorm", X},
                        {"model.norm", X},
                        {"lm_head", X}});
  const LayerPlan* qkv = plan.layer("model.layers.0.self_attn.qkv_proj");
  // q 8 heads * 4 = 32 and k = v = 2 KV heads * 4 = 8: (3, -1) would cut 16 | 16 | 16.
  EXPECT_EQ(*qkv->shape, (FusedShape{FusedDim::of_parts({32, 8, 8}), FusedDim::infer()}));
  EXPECT_EQ(rank_shapes(plan, "model.layers.0.self_attn.qkv_proj.weight"), same_on(2, {24, 32}));
  EXPECT_EQ(rank_shapes(plan, "model.layers.0.mlp.gate_up_proj.weight"), same_on(2, {24, 32}));
  EXPECT_EQ(rank_shapes(plan, "model.layers.0.mlp.down_proj.weight"), same_on(2, {32, 12}));
  EXPECT_EQ(rank_shapes(plan, "model.layers.0.self_attn.o_proj.weight"), same_on(2, {32, 16}));
}

TEST(Preset, IsDetectedFromTheModelType) {
  EXPECT_EQ(preset_for_model_type("llama"), "llama");
  EXPECT_EQ(preset_for_model_type("Qwen2"), "qwen2");
  EXPECT_EQ(preset_for_model_type("qwen3"), "llama");
  EXPECT_EQ(preset_for_model_type("mistral"), "mistral");
  EXPECT_EQ(preset_for_model_type("phi3"), "phi3");
  EXPECT_EQ(preset_for_model_type("gpt2"), std::nullopt);
  EXPECT_EQ(preset_for_model_type(""), std::nullopt);
}

TEST(Preset, AnUnknownNameListsTheKnownOnes) {
  EXPECT_ERROR_CONTAINS(preset_specs("lama", {}),
                        "unknown AutoTP preset 'lama' (known presets: llama, qwen2, mistral");
  EXPECT_TRUE(is_preset_name("DeepSeek_V2"));
  EXPECT_FALSE(is_preset_name("gpt2"));
}

}  // namespace
}  // namespace autotp
