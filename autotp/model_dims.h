// ModelDims: the model facts the AutoTP rules need (model_type for presets and model_types
// filters, head counts for the KV-head shard rule and fused-QKV sub-sizes, tied embeddings).
#pragma once

#include <cstdint>
#include <string>

#include "models/model_config.h"

namespace autotp {

struct ModelDims {
  std::string model_type;           // lower-case HF model_type; empty when unknown
  int64_t hidden_size = 0;          // 0: unknown
  int64_t num_attention_heads = 0;  // 0: unknown
  int64_t num_key_value_heads = 0;  // 0: unknown (the KV-head shard rule is then off)
  int64_t head_dim = 0;             // 0: unknown
  bool tie_word_embeddings = false;

  bool has_heads() const {
    return num_attention_heads > 0 && num_key_value_heads > 0 && head_dim > 0;
  }
};

// The dims of a built-in model's config (defaults resolved).
ModelDims model_dims(const ModelConfig& config);

}  // namespace autotp
