// Where the plan comes from and how rules combine: explicit preset, custom specs merged
// custom-first (use_default_specs), detected presets, the HF tp_plan, the parser; first match
// wins; model_types; strict_mode; unmatched warnings.
#include <gtest/gtest.h>

#include "autotp/presets.h"
#include "models/module_shapes.h"
#include "tests/autotp/autotp_test_helpers.h"

namespace autotp {
namespace {

using testing::tp_config;

TPLayerSpec custom(std::vector<std::string> patterns, SpecType type, const std::string& origin,
                   std::optional<std::vector<std::string>> model_types = std::nullopt) {
  TPLayerSpec s;
  s.patterns = std::move(patterns);
  s.type = type;
  s.origin = origin;
  s.model_types = std::move(model_types);
  s.compile();
  return s;
}

const ModelConfig kLlama = testing::toy_config("llama");
const ModelDims kLlamaDims = model_dims(kLlama);

LayerAction action_of(const TPPlan& plan, const std::string& path) {
  const LayerPlan* l = plan.layer(path);
  EXPECT_NE(l, nullptr) << path;
  return l == nullptr ? LayerAction::Replicated : l->action;
}

const std::string kO = "model.layers.0.self_attn.o_proj";
const std::string kQ = "model.layers.0.self_attn.q_proj";

TEST(SpecSelection, AnExplicitPresetAloneGivesThePresetSpecs) {
  const SpecSelection s = select_specs(tp_config(2, "mistral"), kLlamaDims);
  EXPECT_EQ(s.source, PlanSource::Specs);
  EXPECT_EQ(s.description, "preset 'mistral'");
  EXPECT_EQ(s.specs.size(), preset_specs("mistral", kLlamaDims).size());
  EXPECT_FALSE(s.custom_specs);
}

TEST(SpecSelection, CustomSpecsComeFirstWhenMergedWithThePreset) {
  AutoTPConfig c = tp_config(2, "llama");
  c.has_partition_config = true;
  c.layer_specs = {custom({R"(.*\.o_proj\.weight$)"}, SpecType::Skip, "mine")};
  const SpecSelection s = select_specs(c, kLlamaDims);
  EXPECT_EQ(s.description, "partition_config.layer_specs (1) + preset 'llama'");
  ASSERT_EQ(s.specs.size(), 1 + preset_specs("llama", kLlamaDims).size());
  EXPECT_EQ(s.specs[0].origin, "mine");
  const TPPlan plan = make_plan(module_shapes(kLlama), c, kLlamaDims);
  // The custom skip wins over the preset's row spec for o_proj; the preset does the rest.
  EXPECT_EQ(action_of(plan, kO), LayerAction::Replicated);
  EXPECT_EQ(plan.layer(kO)->rule, "mine skip `.*\\.o_proj\\.weight$`");
  EXPECT_EQ(action_of(plan, kQ), LayerAction::Column);
  EXPECT_EQ(action_of(plan, "model.layers.1.mlp.down_proj"), LayerAction::Row);
}

TEST(SpecSelection, UseDefaultSpecsFalseIgnoresThePresetAndWarnsAboutUnmatchedLayers) {
  AutoTPConfig c = tp_config(2, "llama");
  c.has_partition_config = true;
  c.use_default_specs = false;
  c.layer_specs = {custom({R"(.*\.mlp\.(gate|up)_proj\.weight$)"}, SpecType::Column, "cols"),
                   custom({R"(.*\.mlp\.down_proj\.weight$)"}, SpecType::Row, "rows")};
  const TPPlan plan = make_plan(module_shapes(kLlama), c, kLlamaDims);
  EXPECT_EQ(
      plan.selection.description,
      "partition_config.layer_specs (2) (preset 'llama' ignored: use_default_specs is false)");
  ASSERT_TRUE(plan.valid()) << testing::all_text(plan.errors);
  EXPECT_EQ(action_of(plan, kQ), LayerAction::Replicated);
  EXPECT_EQ(action_of(plan, "model.layers.0.mlp.up_proj"), LayerAction::Column);
  // q/k/v/o of both layers; embeddings and lm_head are not counted as unmatched.
  EXPECT_EQ(plan.unmatched.size(), 8u);
  EXPECT_EQ(plan.unmatched.front(), kQ);
  ASSERT_EQ(plan.warnings.size(), 1u);
  EXPECT_NE(plan.warnings[0].find("8 Linear layer(s) matched no spec and stay replicated (the "
                                  "model is only partly sharded): "
                                  "model.layers.*.self_attn.q_proj (x2)"),
            std::string::npos)
      << plan.warnings[0];
}

// A spec whose model_types filter excludes the model says so, not only that it matched nothing.
TEST(SpecSelection, ASpecExcludedByItsModelTypesSaysSo) {
  AutoTPConfig c = tp_config(2, "llama");
  c.has_partition_config = true;
  c.layer_specs = {custom({R"(.*\.mlp\.down_proj\.weight$)"}, SpecType::Row, "qwen rows",
                          std::vector<std::string>{"qwen2"})};
  const TPPlan plan = make_plan(module_shapes(kLlama), c, kLlamaDims);
  bool said = false;
  for (const std::string& w : plan.warnings)
    said = said || w.find(
                       "matched no parameter of the model (its model_types [qwen2] exclude "
                       "this llama model)") != std::string::npos;
  EXPECT_TRUE(said) << testing::all_text(plan.warnings);
}

TEST(SpecSelection, StrictModeMakesEveryUnmatchedLinearAnErrorButNotEmbeddingsOrTheHead) {
  AutoTPConfig c = tp_config(2);
  c.has_partition_config = true;
  c.use_default_specs = false;
  c.strict_mode = true;
  c.layer_specs = {custom({R"(.*\.self_attn\.[qkv]_proj\.weight$)"}, SpecType::Column, "qkv"),
                   custom({R"(.*\.self_attn\.o_proj\.weight$)"}, SpecType::Row, "o"),
                   custom({R"(.*\.mlp\.(gate|up)_proj\.weight$)"}, SpecType::Column, "gu")};
  const TPPlan plan = make_plan(module_shapes(kLlama), c, kLlamaDims);
  ASSERT_EQ(plan.errors.size(), 1u) << testing::all_text(plan.errors);
  EXPECT_EQ(plan.errors[0],
            "model.layers.*.mlp.down_proj (in 2 layers): strict_mode: no layer spec matches "
            "'model.layers.*.mlp.down_proj.weight' (Linear [32, 48]); add a layer spec for it "
            "(partition_type skip keeps it replicated)");
  EXPECT_ERROR_CONTAINS(throw_if_invalid(plan), "strict_mode: no layer spec matches");
  c.layer_specs.push_back(custom({R"(.*down_proj\.weight$)"}, SpecType::Row, "d"));
  EXPECT_TRUE(make_plan(module_shapes(kLlama), c, kLlamaDims).valid());
}

TEST(SpecSelection, TheFirstMatchingSpecWins) {
  AutoTPConfig c = tp_config(2);
  c.has_partition_config = true;
  c.layer_specs = {custom({R"(.*\.q_proj\.weight$)"}, SpecType::Skip, "first"),
                   custom({R"(.*\.q_proj\.weight$)"}, SpecType::Column, "second")};
  const TPPlan plan = make_plan(module_shapes(kLlama), c, ModelDims{});
  EXPECT_EQ(action_of(plan, kQ), LayerAction::Replicated);
  EXPECT_EQ(plan.layer(kQ)->rule.rfind("first", 0), 0u);
  // The second never matched anything: a warning says so.
  EXPECT_NE(testing::all_text(plan.warnings)
                .find("second column `.*\\.q_proj\\.weight$` matched "
                      "no parameter"),
            std::string::npos)
      << testing::all_text(plan.warnings);
}

TEST(SpecSelection, ModelTypesRestrictASpecToTheListedModels) {
  AutoTPConfig c = tp_config(2, "llama");
  c.has_partition_config = true;
  c.layer_specs = {custom({R"(.*\.o_proj\.weight$)"}, SpecType::Skip, "qwen only",
                          std::vector<std::string>{"qwen2"})};
  EXPECT_EQ(action_of(make_plan(module_shapes(kLlama), c, kLlamaDims), kO), LayerAction::Row);
  const ModelConfig qwen = testing::toy_config("qwen2");
  EXPECT_EQ(action_of(make_plan(module_shapes(qwen), c, model_dims(qwen)), kO),
            LayerAction::Replicated);
}

TEST(SpecSelection, TheDetectedPresetIsUsedWhenNothingElseIsGiven) {
  const SpecSelection s = select_specs(tp_config(2), model_dims(testing::toy_config("qwen3")));
  EXPECT_EQ(s.source, PlanSource::Specs);
  EXPECT_EQ(s.description, "preset 'llama' (detected from model_type 'qwen3')");
  AutoTPConfig off = tp_config(2);
  off.detect_preset = false;
  EXPECT_EQ(select_specs(off, kLlamaDims).source, PlanSource::Parser);
  EXPECT_EQ(select_specs(tp_config(2), ModelDims{}).source, PlanSource::Parser);
}

TEST(SpecSelection, CustomSpecsMergeWithTheDetectedPresetUnlessUseDefaultSpecsIsFalse) {
  AutoTPConfig c = tp_config(2);
  c.has_partition_config = true;
  c.layer_specs = {custom({R"(.*\.o_proj\.weight$)"}, SpecType::Skip, "mine")};
  const SpecSelection merged = select_specs(c, kLlamaDims);
  EXPECT_EQ(merged.description,
            "partition_config.layer_specs (1) + preset 'llama' (detected from model_type "
            "'llama')");
  c.use_default_specs = false;
  const SpecSelection alone = select_specs(c, kLlamaDims);
  EXPECT_EQ(alone.description, "partition_config.layer_specs (1)");
  EXPECT_EQ(alone.specs.size(), 1u);
}

TEST(SpecSelection, TheHfTpPlanBeatsTheDetectedPresetButNotAnExplicitOne) {
  AutoTPConfig c = tp_config(2);
  c.hf_tp_plan = {{"layers.*.self_attn.q_proj", "colwise"},
                  {"layers.*.self_attn.k_proj", "colwise"},
                  {"layers.*.self_attn.v_proj", "colwise"},
                  {"layers.*.self_attn.o_proj", "rowwise"}};
  c.hf_tp_plan_where = "config.json base_model_tp_plan";
  const TPPlan plan = make_plan(module_shapes(kLlama), c, kLlamaDims);
  ASSERT_TRUE(plan.valid()) << testing::all_text(plan.errors);
  EXPECT_EQ(plan.selection.source, PlanSource::HfTpPlan);
  EXPECT_EQ(plan.selection.description, "config.json base_model_tp_plan (4 entries)");
  EXPECT_EQ(action_of(plan, kQ), LayerAction::Column);
  EXPECT_EQ(action_of(plan, kO), LayerAction::Row);
  EXPECT_EQ(action_of(plan, "model.layers.0.mlp.up_proj"), LayerAction::Replicated);
  EXPECT_EQ(plan.unmatched.size(), 6u);  // gate, up, down of both layers
  c.preset_model = "llama";
  EXPECT_EQ(select_specs(c, kLlamaDims).source, PlanSource::Specs);
}

TEST(SpecSelection, QueryKeyAndValueProjectionsMustBeSplitAlike) {
  AutoTPConfig c = tp_config(2);
  c.hf_tp_plan = {{"layers.*.self_attn.q_proj", "colwise"},
                  {"layers.*.self_attn.o_proj", "rowwise"}};
  const TPPlan plan = make_plan(module_shapes(kLlama), c, kLlamaDims);
  ASSERT_EQ(plan.errors.size(), 1u) << testing::all_text(plan.errors);
  EXPECT_EQ(plan.errors[0],
            "model.layers.*.self_attn.q_proj (in 2 layers): q_proj, k_proj, v_proj must be split "
            "alike (all column, or all replicated), got q_proj column, k_proj replicated, v_proj "
            "replicated: add specs so they match the same way");
}

TEST(SpecSelection, AnUnknownPresetIsAnError) {
  EXPECT_ERROR_CONTAINS(select_specs(tp_config(2, "gpt2"), kLlamaDims),
                        "tensor_parallel.preset_model 'gpt2' is not a known preset");
}

}  // namespace
}  // namespace autotp
