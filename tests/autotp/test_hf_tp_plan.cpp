// HF base_model_tp_plan conversion: key-to-regex rules, the supported styles, rejection of the
// whole plan for any other style, "model." duplicates, and Qwen3's replicated q_norm/k_norm.
#include <gtest/gtest.h>

#include "autotp/hf_tp_plan.h"
#include "models/module_shapes.h"
#include "tests/autotp/autotp_test_helpers.h"

namespace autotp {
namespace {

TEST(HfTpPlan, KeysBecomeRegexesWithOneWeightSuffix) {
  EXPECT_EQ(hf_plan_key_to_regex("layers.*.self_attn.q_proj"),
            R"(.*layers\..*\.self_attn\.q_proj\.weight$)");
  EXPECT_EQ(hf_plan_key_to_regex("lm_head.weight"), R"(.*lm_head\.weight$)");
  EXPECT_EQ(hf_plan_key_to_regex("a+b"), R"(.*a\+b\.weight$)");
}

TEST(HfTpPlan, SupportedStylesMapToSpecs) {
  const std::vector<TPLayerSpec> specs =
      specs_from_hf_tp_plan({{"layers.*.self_attn.q_proj", "colwise"},
                             {"layers.*.self_attn.o_proj", "rowwise"},
                             {"lm_head", "colwise_rep"},
                             {"embed_out", "colwise_gather_output"},
                             {"layers.*.self_attn.q_norm", "replicated_with_grad_allreduce"}},
                            "plan");
  ASSERT_EQ(specs.size(), 5u);
  EXPECT_EQ(specs[0].type, SpecType::Column);
  EXPECT_FALSE(specs[0].gather_output);
  EXPECT_EQ(specs[1].type, SpecType::Row);
  EXPECT_TRUE(specs[2].gather_output);
  EXPECT_TRUE(specs[3].gather_output);
  EXPECT_EQ(specs[4].type, SpecType::Skip);
  EXPECT_TRUE(specs[4].grad_allreduce);
  EXPECT_EQ(specs[0].origin, "plan 'layers.*.self_attn.q_proj': colwise");
  EXPECT_TRUE(specs[0].matches("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_FALSE(specs[0].matches("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_TRUE(specs[4].matches("model.layers.11.self_attn.q_norm.weight"));
}

TEST(HfTpPlan, AnyOtherStyleRejectsTheWholePlan) {
  for (const char* style : {"local_colwise", "moe_tp_experts", "sequence_parallel", "gather"}) {
    EXPECT_ERROR_CONTAINS(
        specs_from_hf_tp_plan({{"layers.*.q_proj", "colwise"}, {"layers.*.o_proj", style}},
                              "config.json base_model_tp_plan"),
        fmt::format("config.json base_model_tp_plan: entry 'layers.*.o_proj' has style '{}', "
                    "which autotp does not support",
                    style));
  }
}

TEST(HfTpPlan, AModelPrefixedDuplicateIsDroppedAndAnEmptyPlanGivesNothing) {
  const auto specs = specs_from_hf_tp_plan(
      {{"layers.*.q_proj", "colwise"}, {"model.layers.*.q_proj", "colwise"}}, "p");
  ASSERT_EQ(specs.size(), 1u);
  EXPECT_EQ(specs[0].patterns[0], R"(.*layers\..*\.q_proj\.weight$)");
  EXPECT_TRUE(specs_from_hf_tp_plan({}, "p").empty());
  // An empty plan falls through to the next source.
  AutoTPConfig c = testing::tp_config(2);
  c.detect_preset = false;
  EXPECT_EQ(select_specs(c, {}).source, PlanSource::Parser);
}

TEST(HfTpPlan, Qwen3sPlanMarksItsPerHeadNormsForGradientAllReduce) {
  const ModelConfig cfg = testing::toy_config("qwen3");
  AutoTPConfig c = testing::tp_config(2);
  c.hf_tp_plan = {{"layers.*.self_attn.q_proj", "colwise"},
                  {"layers.*.self_attn.k_proj", "colwise"},
                  {"layers.*.self_attn.v_proj", "colwise"},
                  {"layers.*.self_attn.o_proj", "rowwise"},
                  {"layers.*.self_attn.q_norm", "replicated_with_grad_allreduce"},
                  {"layers.*.self_attn.k_norm", "replicated_with_grad_allreduce"},
                  {"layers.*.mlp.gate_proj", "colwise"},
                  {"layers.*.mlp.up_proj", "colwise"},
                  {"layers.*.mlp.down_proj", "rowwise"}};
  const TPPlan plan = make_plan(module_shapes(cfg), c, model_dims(cfg));
  ASSERT_TRUE(plan.valid()) << testing::all_text(plan.errors);
  EXPECT_TRUE(plan.unmatched.empty());
  EXPECT_EQ(plan.grad_allreduce_params().size(), 4u);
  const ParamPlan* q_norm = plan.param("model.layers.1.self_attn.q_norm.weight");
  EXPECT_TRUE(q_norm->grad_allreduce);
  EXPECT_FALSE(q_norm->sharded);
  EXPECT_EQ(q_norm->rule.find("base_model_tp_plan 'layers.*.self_attn.q_norm'"), 0u)
      << q_norm->rule;
}

}  // namespace
}  // namespace autotp
