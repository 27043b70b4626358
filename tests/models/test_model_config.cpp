// ModelConfig: parsing from text maps with HF defaults, validation errors that name the key,
// unknown keys with suggestions, rope_scaling/rope_parameters forms, and to_map round trips.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "models/model_config.h"
#include "models/registry.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/models/golden_reader.h"

namespace autotp {
namespace {

ModelConfigMap tiny(const std::string& model_type = "llama") {
  ModelConfigMap m;
  m.scalars = {{"model_type", model_type}, {"vocab_size", "61"},
               {"hidden_size", "32"},      {"intermediate_size", "44"},
               {"num_hidden_layers", "2"}, {"num_attention_heads", "4"}};
  return m;
}

ModelConfigMap with(ModelConfigMap m, const std::string& key, const std::string& value) {
  m.scalars[key] = value;
  return m;
}

TEST(ModelConfig, AMinimalLlamaMapGetsHfDefaults) {
  const ModelConfig c = ModelConfig::from_map(tiny());
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 61);
  EXPECT_EQ(c.num_key_value_heads, 4);  // = num_attention_heads
  EXPECT_EQ(c.head_dim, 8);             // = hidden_size / num_attention_heads
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.rope_type, "default");
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_EQ(c.initializer_range, 0.02);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_EQ(c.architecture(), "LlamaForCausalLM");
}

TEST(ModelConfig, PerTypeDefaultsFollowTheHfConfigClasses) {
  const ModelConfig mistral = ModelConfig::from_map(tiny("mistral"));
  EXPECT_EQ(mistral.sliding_window, 4096);
  EXPECT_EQ(mistral.max_position_embeddings, 4096 * 32);
  EXPECT_FALSE(ModelConfig::from_map(with(tiny("mistral"), "sliding_window", "null"))
                   .sliding_window.has_value());
  // qwen2/qwen3 use the window only with use_sliding_window.
  const ModelConfig qwen2 = ModelConfig::from_map(tiny("qwen2"));
  EXPECT_FALSE(qwen2.sliding_window.has_value());
  EXPECT_EQ(qwen2.max_position_embeddings, 32768);
  EXPECT_EQ(ModelConfig::from_map(with(tiny("qwen3"), "use_sliding_window", "true")).sliding_window,
            4096);
  EXPECT_EQ(qwen2.architecture(), "Qwen2ForCausalLM");
}

TEST(ModelConfig, MissingRequiredKeyIsNamed) {
  ModelConfigMap m = tiny();
  m.scalars.erase("intermediate_size");
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(m), "required key 'intermediate_size' is missing");
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "hidden_size", "null")),
                        "'hidden_size' is missing");
  // A misspelling of the missing key is named with it.
  ModelConfigMap typo = tiny();
  typo.scalars["num_hiden_layers"] = typo.scalars.at("num_hidden_layers");
  typo.scalars.erase("num_hidden_layers");
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(typo),
                        "required key 'num_hidden_layers' is missing (the config has "
                        "'num_hiden_layers': a misspelling?)");
}

TEST(ModelConfig, ValuesOfTheWrongTypeNameTheKeyAndValue) {
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "hidden_size", "32.5")),
                        "'hidden_size' must be an integer, got '32.5'");
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "rms_norm_eps", "small")),
                        "'rms_norm_eps' must be a finite number, got 'small'");
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "tie_word_embeddings", "yes")),
                        "'tie_word_embeddings' must be true or false, got 'yes'");
}

TEST(ModelConfig, SizesMustBePositiveAndHeadsMustDivide) {
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "vocab_size", "0")),
                        "'vocab_size' must be positive, got 0");
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "num_hidden_layers", "-1")),
                        "'num_hidden_layers' must be positive, got -1");
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "num_key_value_heads", "3")),
                        "num_attention_heads (4) must be a multiple of num_key_value_heads (3)");
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "num_attention_heads", "5")),
                        "hidden_size (32) must be a multiple of num_attention_heads (5)");
  // An explicit head_dim lifts that rule (Qwen3 style) but must be even for rope.
  const ModelConfig c =
      ModelConfig::from_map(with(with(tiny(), "num_attention_heads", "5"), "head_dim", "12"));
  EXPECT_EQ(c.head_dim, 12);
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "head_dim", "7")),
                        "head_dim (7) must be even");
}

TEST(ModelConfig, UnsupportedActivationAndDropoutAreNamed) {
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "hidden_act", "gelu")),
                        "hidden_act 'gelu' is not supported (supported: silu)");
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "attention_dropout", "0.1")),
                        "attention_dropout 0.1 is not supported");
}

TEST(ModelConfig, UnknownModelTypeListsTheSupportedTypes) {
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(tiny("gpt2")),
                        "unknown model_type 'gpt2' (supported: llama, mistral, qwen2, qwen3)");
}

TEST(ModelConfig, UnknownKeysFailWithTheClosestKnownKeyOrAreCollected) {
  ModelConfigMap typo = with(tiny(), "rms_norm_epsilon", "1e-5");
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(typo),
                        "unknown key 'rms_norm_epsilon' (did you mean 'rms_norm_eps'?)");
  std::vector<std::string> unknown;
  const ModelConfig c = ModelConfig::from_map(typo, &unknown);
  EXPECT_EQ(unknown, std::vector<std::string>{"rms_norm_epsilon"});
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  // Keys HF writes that do not change the model are accepted silently.
  ModelConfigMap hf = tiny();
  hf.scalars["architectures"] = "[\"LlamaForCausalLM\"]";
  hf.scalars["torch_dtype"] = "bfloat16";
  hf.scalars["eos_token_id"] = "[128001, 128008]";
  EXPECT_NO_THROW(ModelConfig::from_map(hf));
  ModelConfigMap rope_typo = tiny();
  rope_typo.objects["rope_scaling"] = {{"rope_type", "default"}, {"factr", "2"}};
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(rope_typo),
                        "unknown key 'rope_scaling.factr' (did you mean 'rope_scaling.factor'?)");
}

TEST(ModelConfig, Llama3RopeScalingReadsBothHfForms) {
  // transformers < 5: top-level rope_theta and rope_scaling with "type".
  ModelConfigMap old_form = with(tiny(), "rope_theta", "500000.0");
  old_form.objects["rope_scaling"] = {{"type", "llama3"},
                                      {"factor", "8.0"},
                                      {"low_freq_factor", "1.0"},
                                      {"high_freq_factor", "4.0"}};
  const ModelConfig a = ModelConfig::from_map(with(old_form, "max_position_embeddings", "4096"));
  EXPECT_EQ(a.rope_theta, 500000.0);
  EXPECT_EQ(a.rope_scaling.rope_type, "llama3");
  EXPECT_EQ(a.rope_scaling.factor, 8.0);
  EXPECT_EQ(a.rope_scaling.original_max_position_embeddings, 4096);  // HF: max_position_embeddings
  // transformers >= 5: everything inside rope_parameters.
  ModelConfigMap new_form = tiny();
  new_form.objects["rope_parameters"] = {
      {"rope_type", "llama3"},     {"rope_theta", "500000.0"},
      {"factor", "8.0"},           {"low_freq_factor", "1.0"},
      {"high_freq_factor", "4.0"}, {"original_max_position_embeddings", "8192"}};
  const ModelConfig b = ModelConfig::from_map(new_form);
  EXPECT_EQ(b.rope_theta, 500000.0);
  EXPECT_EQ(b.rope_scaling.original_max_position_embeddings, 8192);
}

TEST(ModelConfig, RopeErrorsNameTheProblem) {
  ModelConfigMap missing = tiny();
  missing.objects["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", "8"}};
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(missing),
                        "rope_scaling of type llama3 needs 'low_freq_factor'");
  ModelConfigMap yarn = tiny();
  yarn.objects["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", "4"}};
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(yarn),
                        "rope_scaling type 'yarn' is not supported (supported: default, llama3)");
  ModelConfigMap inverted = tiny();
  inverted.objects["rope_scaling"] = {{"rope_type", "llama3"},
                                      {"factor", "8"},
                                      {"low_freq_factor", "4"},
                                      {"high_freq_factor", "1"}};
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(inverted),
                        "high_freq_factor (1) must exceed low_freq_factor (4)");
  ModelConfigMap conflict = with(tiny(), "rope_theta", "10000");
  conflict.objects["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", "500000"}};
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(conflict),
                        "rope_theta = 10000 contradicts rope_parameters.rope_theta = 500000");
  EXPECT_ERROR_CONTAINS(ModelConfig::from_map(with(tiny(), "partial_rotary_factor", "0.5")),
                        "partial_rotary_factor 0.5 is not supported");
}

TEST(ModelConfig, ToMapRoundTripsEveryGoldenConfig) {
  for (const char* name : {"llama_gqa", "llama_tied_bias", "llama3_rope", "qwen2_bias",
                           "qwen3_qknorm", "mistral_window"}) {
    const ModelConfig c = ModelConfig::from_map(testing::read_golden(name).config);
    EXPECT_EQ(ModelConfig::from_map(c.to_map()), c) << name;
  }
}

TEST(ModelConfig, CppConstructionResolvesDefaultsLikeTheMapPath) {
  ModelConfig c;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.intermediate_size = 44;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  EXPECT_ERROR_CONTAINS(c.validate(), "'num_key_value_heads' must be positive, got 0");
  c.resolve_defaults();
  EXPECT_NO_THROW(c.validate());
  EXPECT_EQ(c, ModelConfig::from_map(tiny()));
}

TEST(ModelRegistry, KnowsTheSameTypesAsTheConfigAndListsThemOnError) {
  EXPECT_EQ(registered_model_types(), supported_model_types());
  ModelConfig c = ModelConfig::from_map(tiny());
  c.model_type = "gpt_neox";
  EXPECT_ERROR_CONTAINS(create_model(c, 0),
                        "create_model: unknown model_type 'gpt_neox' (supported: llama, mistral, "
                        "qwen2, qwen3)");
}

}  // namespace
}  // namespace autotp
