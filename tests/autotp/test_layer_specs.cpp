// TPLayerSpec: regex matching from the start of full names, field checks with clear errors,
// and the conversion from the YAML tensor_parallel section (errors name the pattern and line).
#include <gtest/gtest.h>

#include "autotp/from_engine_config.h"
#include "autotp/tp_layer_spec.h"
#include "engine/config.h"
#include "tests/core/nn_test_helpers.h"

namespace autotp {
namespace {

TEST(LayerSpec, PatternsMatchFromTheStartOfTheNameButNotToItsEnd) {
  const TPLayerSpec spec = make_spec({"self_attn"}, SpecType::Column, "test");
  EXPECT_FALSE(spec.matches("model.layers.0.self_attn.q_proj.weight"));  // re.match semantics
  EXPECT_TRUE(spec.matches("self_attn.q_proj.weight"));                  // open at the end
  const TPLayerSpec anywhere = make_spec({R"(.*\.q_proj\.weight$)"}, SpecType::Column, "test");
  EXPECT_TRUE(anywhere.matches("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_FALSE(anywhere.matches("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_FALSE(anywhere.matches("model.layers.0.self_attn.q_proj.weight.extra"));
}

TEST(LayerSpec, AnyOfSeveralPatternsMatchesAndDeepPathsAreSeenWhole) {
  const TPLayerSpec spec =
      make_spec({R"(.*\.k_proj\.weight$)", R"(.*layers\.\d+\.self_attn\.q_proj\.weight$)"},
                SpecType::Column, "test");
  EXPECT_TRUE(spec.matches("model.layers.0.self_attn.k_proj.weight"));
  EXPECT_TRUE(spec.matches("outer.model.layers.12.self_attn.q_proj.weight"));
  EXPECT_FALSE(spec.matches("model.layers.x.self_attn.q_proj.weight"));
}

TEST(LayerSpec, ModelTypesFilterCaseInsensitivelyAndAnUnknownTypeNeverMatches) {
  TPLayerSpec spec;
  spec.patterns = {".*"};
  spec.model_types = std::vector<std::string>{"Qwen2", "llama"};
  spec.origin = "test";
  spec.compile();
  EXPECT_TRUE(spec.applies_to("qwen2"));
  EXPECT_TRUE(spec.applies_to("LLAMA"));
  EXPECT_FALSE(spec.applies_to("mistral"));
  EXPECT_FALSE(spec.applies_to(""));
  EXPECT_TRUE(make_spec({".*"}, SpecType::Row, "t").applies_to(""));
}

TEST(LayerSpec, PartitionTypeIsCaseInsensitiveAndOtherWordsAreErrors) {
  EXPECT_EQ(parse_spec_type("Column", "x"), SpecType::Column);
  EXPECT_EQ(parse_spec_type("ROW", "x"), SpecType::Row);
  EXPECT_EQ(parse_spec_type("skip", "x"), SpecType::Skip);
  EXPECT_ERROR_CONTAINS(parse_spec_type("rows", "spec 3"),
                        "spec 3: partition_type must be row, column or skip, got 'rows'");
}

TEST(LayerSpec, AnInvalidRegexNamesThePatternAndTheOrigin) {
  EXPECT_ERROR_CONTAINS(make_spec({R"(.*\.q_proj(\.weight$)"}, SpecType::Column, "my spec"),
                        "my spec: pattern '.*\\.q_proj(\\.weight$' is not a valid regular "
                        "expression");
  EXPECT_ERROR_CONTAINS(make_spec({}, SpecType::Column, "my spec"),
                        "my spec: a layer spec needs at least one pattern");
}

TEST(LayerSpec, InconsistentFieldsAreErrors) {
  TPLayerSpec spec;
  spec.patterns = {".*"};
  spec.origin = "s";
  spec.type = SpecType::Row;
  spec.gather_output = true;
  EXPECT_ERROR_CONTAINS(spec.compile(), "s: gather_output applies to column specs only");
  spec.type = SpecType::Column;
  spec.shape = FusedShape{FusedDim::of(3), FusedDim::infer()};
  EXPECT_ERROR_CONTAINS(spec.compile(), "gather_output cannot be combined with shape");
  spec.gather_output = false;
  spec.grad_allreduce = true;
  EXPECT_ERROR_CONTAINS(spec.compile(), "grad_allreduce applies to skip (replicated) specs only");
  spec.grad_allreduce = false;
  spec.shape = FusedShape{FusedDim::of(2), FusedDim::of_parts({1, 1})};
  EXPECT_ERROR_CONTAINS(spec.compile(),
                        "a nested list of sub-sizes is only allowed at partition_dim (0)");
  spec.shape = FusedShape{FusedDim::of(3), FusedDim::infer()};
  spec.partition_dim = 2;
  EXPECT_ERROR_CONTAINS(spec.compile(), "partition_dim 2 is outside shape (3, -1)");
  spec.shape.reset();
  EXPECT_ERROR_CONTAINS(spec.compile(),
                        "partition_dim 2 of an unfused weight [out, in] must be 0 or 1");
}

TEST(LayerSpec, DescribeNamesOriginTypePatternsAndOptions) {
  TPLayerSpec spec;
  spec.patterns = {"a", "b"};
  spec.type = SpecType::Column;
  spec.gather_output = true;
  spec.origin = "layer_specs[0]";
  spec.compile();
  EXPECT_EQ(spec.describe(), "layer_specs[0] column `a`, `b` gather_output");
}

const char* kBase = R"(train_micro_batch_size_per_gpu: 1
data: {type: synthetic, seq_len: 8, vocab_size: 16}
train: {steps: 1}
)";

Config parse_with(const std::string& tp_section) {
  return parse_config(std::string(kBase) + tp_section, {}, "cfg.yaml");
}

TEST(LayerSpecFromConfig, TheYamlSectionBecomesAnAutoTPConfig) {
  const Config cfg = parse_with(R"(tensor_parallel:
  autotp_size: 2
  preset_model: Qwen2
  tp_overlap_comm: true
  tp: {tp_grain_size: 8}
  partition_config:
    use_default_specs: false
    strict_mode: true
    layer_specs:
      - patterns: [".*\\.qkv\\.weight$"]
        partition_type: Column
        shape: [[16, 8, 8], -1]
      - patterns: [".*\\.out\\.weight$"]
        partition_type: row
        model_types: [Qwen2]
      - patterns: [".*\\.q_norm\\.weight$"]
        partition_type: skip
        grad_allreduce: true
)");
  const AutoTPConfig c = autotp_config_from(cfg.tensor_parallel);
  EXPECT_EQ(c.tp_size, 2);
  EXPECT_EQ(c.preset_model, "qwen2");
  EXPECT_TRUE(c.tp_overlap_comm);
  EXPECT_EQ(c.tp_grain_size, 8);
  EXPECT_TRUE(c.has_partition_config);
  EXPECT_FALSE(c.use_default_specs);
  EXPECT_TRUE(c.strict_mode);
  ASSERT_EQ(c.layer_specs.size(), 3u);
  EXPECT_EQ(c.layer_specs[0].type, SpecType::Column);
  ASSERT_TRUE(c.layer_specs[0].shape.has_value());
  EXPECT_EQ(*c.layer_specs[0].shape,
            (FusedShape{FusedDim::of_parts({16, 8, 8}), FusedDim::infer()}));
  EXPECT_EQ(c.layer_specs[0].origin,
            "tensor_parallel.partition_config.layer_specs[0] (cfg.yaml line 13)");
  EXPECT_TRUE(c.layer_specs[0].matches("model.layers.0.attn.qkv.weight"));
  EXPECT_EQ(c.layer_specs[1].type, SpecType::Row);
  EXPECT_TRUE(c.layer_specs[1].applies_to("qwen2"));
  EXPECT_FALSE(c.layer_specs[1].applies_to("llama"));
  EXPECT_TRUE(c.layer_specs[2].grad_allreduce);
}

TEST(LayerSpecFromConfig, AnInvalidRegexInYamlNamesThePatternAndItsLine) {
  const Config cfg = parse_with(R"(tensor_parallel:
  autotp_size: 2
  partition_config:
    layer_specs:
      - patterns: [".*\\.o_proj\\.weight$"]
        partition_type: row
      - patterns: ["[unclosed"]
        partition_type: column
)");
  EXPECT_ERROR_CONTAINS(autotp_config_from(cfg.tensor_parallel),
                        "layer_specs[1] (cfg.yaml line 10): pattern '[unclosed' is not a valid "
                        "regular expression");
}

TEST(LayerSpecFromConfig, GradAllreduceOnAColumnSpecIsAnErrorWithItsLine) {
  const Config cfg = parse_with(R"(tensor_parallel:
  autotp_size: 2
  partition_config:
    layer_specs:
      - patterns: [".*\\.q_proj\\.weight$"]
        grad_allreduce: true
)");
  EXPECT_ERROR_CONTAINS(autotp_config_from(cfg.tensor_parallel),
                        "layer_specs[0] (cfg.yaml line 8): grad_allreduce applies to skip");
}

}  // namespace
}  // namespace autotp
