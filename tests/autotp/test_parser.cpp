// The automatic parser: agrees with the presets on every preset architecture's layout,
// decides a custom model's layers from structure, and keeps lone Linears replicated.
#include <gtest/gtest.h>

#include "autotp/parser.h"
#include "autotp/presets.h"
#include "models/module_shapes.h"
#include "tests/autotp/autotp_test_helpers.h"

namespace autotp {
namespace {

using testing::tp_config;
constexpr LayerAction C = LayerAction::Column, R = LayerAction::Row, X = LayerAction::Replicated;

struct ArchCase {
  std::string name;
  std::vector<ModuleShape> layout;
  ModelDims dims;
  std::string preset;
};

std::vector<ArchCase> arch_cases() {
  std::vector<ArchCase> out;
  for (const char* type : {"llama", "qwen2", "mistral"}) {
    const ModelConfig cfg = testing::toy_config(type);
    out.push_back({type, module_shapes(cfg), model_dims(cfg), type});
  }
  const ModelConfig qwen3 = testing::toy_config("qwen3", /*tied=*/true);
  out.push_back({"qwen3", module_shapes(qwen3), model_dims(qwen3), "llama"});
  out.push_back({"bloom", testing::bloom_layout(), testing::bloom_dims(), "bloom"});
  out.push_back({"chatglm", testing::chatglm_layout(), testing::chatglm_dims(), "chatglm"});
  out.push_back({"mixtral", testing::mixtral_layout(), testing::mixtral_dims(), "mixtral"});
  out.push_back(
      {"deepseek_v2", testing::deepseek_v2_layout(), testing::deepseek_v2_dims(), "deepseek_v2"});
  out.push_back({"phi3", testing::phi3_layout(), testing::phi3_dims(), "phi3"});
  return out;
}

class ParserVsPreset : public ::testing::TestWithParam<size_t> {};

TEST_P(ParserVsPreset, TheParserMakesThePresetsDecisions) {
  const ArchCase arch = arch_cases()[GetParam()];
  SCOPED_TRACE(arch.name);
  AutoTPConfig parser_config = tp_config(2);
  parser_config.detect_preset = false;
  const TPPlan parsed = make_plan(arch.layout, parser_config, arch.dims);
  const TPPlan preset = make_plan(arch.layout, tp_config(2, arch.preset), arch.dims);
  ASSERT_EQ(parsed.selection.source, PlanSource::Parser);
  ASSERT_TRUE(parsed.valid()) << testing::all_text(parsed.errors);
  ASSERT_TRUE(preset.valid()) << testing::all_text(preset.errors);
  ASSERT_EQ(parsed.layers.size(), preset.layers.size());
  for (size_t i = 0; i < parsed.layers.size(); ++i) {
    const LayerPlan& a = parsed.layers[i];
    const LayerPlan& b = preset.layers[i];
    EXPECT_EQ(layer_action_name(a.action), layer_action_name(b.action))
        << a.path << ": parser said '" << a.rule << "', preset '" << b.rule << "'";
    EXPECT_EQ(a.shape, b.shape) << a.path;
  }
  ASSERT_EQ(parsed.params.size(), preset.params.size());
  for (size_t i = 0; i < parsed.params.size(); ++i) {
    EXPECT_EQ(parsed.params[i].rank_shapes, preset.params[i].rank_shapes) << parsed.params[i].name;
    EXPECT_EQ(parsed.params[i].grad_allreduce, preset.params[i].grad_allreduce)
        << parsed.params[i].name;
  }
  EXPECT_EQ(parsed.rank_parameters, preset.rank_parameters);
  EXPECT_FALSE(parsed.sharded_layers().empty());
}

INSTANTIATE_TEST_SUITE_P(Architectures, ParserVsPreset, ::testing::Range<size_t>(0, 9),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return arch_cases()[info.param].name;
                         });

TEST(Parser, ExplainsEachDecision) {
  const ModelConfig cfg = testing::toy_config("qwen3");
  AutoTPConfig c = tp_config(2);
  c.detect_preset = false;
  const TPPlan plan = make_plan(module_shapes(cfg), c, model_dims(cfg));
  EXPECT_EQ(plan.layer("model.layers.0.self_attn.q_proj")->rule,
            "parser: column (in sub-block 'model.layers.0.self_attn')");
  EXPECT_EQ(plan.layer("model.layers.1.self_attn.o_proj")->rule, "parser: row (named o_proj)");
  EXPECT_EQ(plan.layer("lm_head")->rule, "parser: replicated (outside the repeated blocks)");
  EXPECT_EQ(plan.layer("model.embed_tokens")->rule, "default: embeddings stay replicated");
  EXPECT_EQ(plan.param("model.layers.0.self_attn.k_norm.weight")->rule,
            "auto: per-head norm applied to the column-split k_proj heads: replicated, gradient "
            "summed over the TP group");
}

// A model with names of its own: blocks.N.{ln_a, ffn.{expand, gate_lin, contract}, ln_b,
// mixer.{fc_in, fc_out}}, a head "readout", an embedding "tok".
std::vector<ModuleShape> custom_layout() {
  testing::LayoutBuilder b;
  b.embedding("tok", 11, 6);
  for (int i = 0; i < 2; ++i) {
    const std::string l = "blocks." + std::to_string(i);
    b.norm(l + ".ln_a", 6)
        .linear(l + ".ffn.expand", 6, 12, true)
        .linear(l + ".ffn.gate_lin", 6, 12, false)
        .linear(l + ".ffn.contract", 12, 6, true)
        .norm(l + ".ln_b", 6, true, "LayerNorm")
        .linear(l + ".mixer.fc_in", 6, 8, false)
        .linear(l + ".mixer.fc_out", 8, 6, false);
  }
  b.linear("readout", 6, 11, false);
  return b.build();
}

TEST(Parser, ShardsACustomModelByStructure) {
  const TPPlan plan = make_plan(custom_layout(), tp_config(2), ModelDims{});
  ASSERT_TRUE(plan.valid()) << testing::all_text(plan.errors);
  testing::expect_actions(plan, {{"tok", X},
                                 {"blocks.*.ln_a", X},
                                 {"blocks.*.ffn.expand", C},
                                 {"blocks.*.ffn.gate_lin", C},
                                 {"blocks.*.ffn.contract", R},
                                 {"blocks.*.ln_b", X},
                                 {"blocks.*.mixer.fc_in", C},
                                 {"blocks.*.mixer.fc_out", R},
                                 {"readout", X}});
  EXPECT_EQ(plan.layer("blocks.0.ffn.contract")->rule,
            "parser: row (last Linear of sub-block 'blocks.0.ffn': writes into the residual "
            "stream)");
  EXPECT_EQ(testing::rank_shapes(plan, "blocks.1.ffn.expand.bias"), testing::same_on(2, {6}));
  EXPECT_EQ(testing::rank_shapes(plan, "blocks.1.ffn.contract.weight"),
            testing::same_on(2, {6, 6}));
}

TEST(Parser, BlockLevelNormsSeparateLinearsRegisteredDirectlyInTheBlock) {
  // GPT-style: h.N.{ln_1, attn_in, attn_mix, ln_2, fc_in, fc_out, ln_3, lone}
  testing::LayoutBuilder b;
  for (int i = 0; i < 2; ++i) {
    const std::string l = "h." + std::to_string(i);
    b.norm(l + ".ln_1", 8, true, "LayerNorm")
        .linear(l + ".attn_in", 8, 16, false)
        .linear(l + ".attn_mix", 16, 8, false)
        .norm(l + ".ln_2", 8, true, "LayerNorm")
        .linear(l + ".fc_in", 8, 32, false)
        .linear(l + ".fc_out", 32, 8, false)
        .norm(l + ".ln_3", 8)
        .linear(l + ".lone", 8, 8, false);
  }
  const TPPlan plan = make_plan(b.build(), tp_config(2), ModelDims{});
  testing::expect_actions(plan, {{"h.*.ln_1", X},
                                 {"h.*.attn_in", C},
                                 {"h.*.attn_mix", R},
                                 {"h.*.ln_2", X},
                                 {"h.*.fc_in", C},
                                 {"h.*.fc_out", R},
                                 {"h.*.ln_3", X},
                                 {"h.*.lone", X}});
  EXPECT_NE(plan.layer("h.0.lone")->rule.find("no column Linear feeds it"), std::string::npos);
}

TEST(Parser, FindsNoBlocksInAFlatModelAndSaysSo) {
  testing::LayoutBuilder b;
  b.linear("fc1", 4, 8, false).linear("fc2", 8, 4, false);
  const TPPlan plan = make_plan(b.build(), tp_config(2), ModelDims{});
  EXPECT_TRUE(plan.sharded_layers().empty());
  EXPECT_NE(testing::all_text(plan.warnings).find("found no repeated blocks"), std::string::npos);
  EXPECT_NE(testing::all_text(plan.warnings).find("no layer is sharded"), std::string::npos);
  EXPECT_TRUE(find_blocks(b.build()).empty());
}

TEST(Parser, FusedQkvWithUnknownHeadsFallsBackToThirdsAndSaysSo) {
  const std::vector<ParserDecision> d = parse_layers(testing::phi3_layout(), ModelDims{});
  bool seen = false;
  for (const ParserDecision& x : d) {
    if (x.path != "model.layers.0.self_attn.qkv_proj") continue;
    seen = true;
    EXPECT_EQ(x.action, C);
    EXPECT_EQ(*x.shape, (FusedShape{FusedDim::of(3), FusedDim::infer()}));
    EXPECT_NE(x.reason.find("assumed equal thirds"), std::string::npos);
  }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace autotp
