// FLOP accounting of `autotp bench`: 6 N + 12 L H Q T with N counted without the input
// embedding (a tied table counts once, as the lm_head's weight), checked against a parameter
// count made independently from the config.
#include <gtest/gtest.h>

#include "models/registry.h"
#include "tools/flops.h"

namespace autotp::tools {
namespace {

ModelConfig llama_1b_shape() {
  ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 128256;
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_hidden_layers = 16;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 64;
  c.tie_word_embeddings = true;
  c.resolve_defaults();
  return c;
}

TEST(TrainingFlops, MatchTheFormulaForTheLlama32OneBShape) {
  const ModelConfig c = llama_1b_shape();
  // Parameters by hand: embedding V*h (tied lm_head), per layer q,o: h*h; k,v: h*(kv*Q);
  // gate/up/down: 3*h*ffn; two norms 2h; final norm h.
  const int64_t h = 2048, ffn = 8192, kv = 8 * 64, layers = 16, vocab = 128256;
  const int64_t per_layer = 2 * h * h + 2 * h * kv + 3 * h * ffn + 2 * h;
  const int64_t params = vocab * h + layers * per_layer + h;
  EXPECT_EQ(params, 1235814400);  // meta-llama/Llama-3.2-1B's published parameter count
  // Tied: the table is the lm_head's weight (2 V h FLOPs per token forward), so N keeps it.
  const FlopCount f = training_flops_per_token(c, params, 2048);
  EXPECT_EQ(f.non_embedding_params, params);
  EXPECT_DOUBLE_EQ(f.attention_flops_per_token, 12.0 * 16 * 32 * 64 * 2048);
  EXPECT_DOUBLE_EQ(f.flops_per_token,
                   6.0 * static_cast<double>(params) + 12.0 * 16 * 32 * 64 * 2048);
  EXPECT_NEAR(f.flops_per_token, 8.2202e9, 0.0001e9);
  EXPECT_NE(f.formula.find("6 N + 12 L H Q T"), std::string::npos);
  EXPECT_NE(f.formula.find("tied"), std::string::npos);
  // Untied (Llama-3-8B style): the lm_head is its own matrix and the input table drops out,
  // so the same matmuls are counted.
  ModelConfig untied = c;
  untied.tie_word_embeddings = false;
  const FlopCount u = training_flops_per_token(untied, params + vocab * h, 2048);
  EXPECT_EQ(u.non_embedding_params, params);
  EXPECT_DOUBLE_EQ(u.flops_per_token, f.flops_per_token);
}

TEST(TrainingFlops, ParameterCountOfABuiltModelMatchesTheHandCount) {
  ModelConfig c = llama_1b_shape();
  c.vocab_size = 101;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  const auto model = create_model_uninitialized(c);
  const int64_t h = 64, kv = 32;
  const int64_t per_layer = 2 * h * h + 2 * h * kv + 3 * h * 96 + 2 * h;
  EXPECT_EQ(model->num_parameters(), 101 * h + 2 * per_layer + h);
}

TEST(PeakFlops, KnowsHopperAndRejectsUnknownDevices) {
  EXPECT_DOUBLE_EQ(*dense_bf16_peak_flops("NVIDIA H100 80GB HBM3"), 989e12);
  EXPECT_DOUBLE_EQ(*dense_bf16_peak_flops("NVIDIA H200"), 989e12);
  EXPECT_DOUBLE_EQ(*dense_bf16_peak_flops("NVIDIA H100 PCIe"), 756e12);
  EXPECT_FALSE(dense_bf16_peak_flops("cpu").has_value());
}

TEST(MemoryBandwidth, MatchesTheDatasheetsAndPrefersTheMoreSpecificName) {
  EXPECT_DOUBLE_EQ(*memory_bandwidth_bytes_per_s("NVIDIA H100 80GB HBM3"), 3.35e12);
  EXPECT_DOUBLE_EQ(*memory_bandwidth_bytes_per_s("NVIDIA H100 PCIe"), 2.0e12);
  EXPECT_DOUBLE_EQ(*memory_bandwidth_bytes_per_s("NVIDIA H200"), 4.8e12);
  EXPECT_DOUBLE_EQ(*memory_bandwidth_bytes_per_s("NVIDIA A100-SXM4-40GB"), 1.555e12);
  EXPECT_DOUBLE_EQ(*memory_bandwidth_bytes_per_s("NVIDIA A100-SXM4-80GB"), 2.039e12);
  EXPECT_FALSE(memory_bandwidth_bytes_per_s("cpu").has_value());
}

}  // namespace
}  // namespace autotp::tools
