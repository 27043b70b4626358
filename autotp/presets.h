// The built-in presets (DeepSpeed's AutoTPPresets plus mistral), written from each
// architecture's Hugging Face parameter names, and preset detection from model_type.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "autotp/model_dims.h"
#include "autotp/tp_layer_spec.h"

namespace autotp {

// llama, qwen2, mistral, bloom, chatglm, mixtral, deepseek_v2, phi3.
const std::vector<std::string>& preset_names();
bool is_preset_name(const std::string& name);  // case-insensitive

// The specs of preset `name` (case-insensitive), in priority order (first match wins).
// Differences from DeepSpeed (reference 4):
//   * llama/qwen2/mistral also mark self_attn.q_norm/k_norm skip + grad_allreduce, so the
//     qwen3 layout (per-head norms on sharded heads) trains correctly with them;
//   * deepseek_v2 also shards the dense MLPs of its first_k_dense_replace layers (DeepSpeed's
//     table leaves them unmatched and replicated);
//   * the fused presets split by head counts: phi3's qkv_proj as ((q, kv, kv), -1) and
//     chatglm's query_key_value as ((q, kv, kv), -1) with q = num_attention_heads * head_dim
//     and kv = num_key_value_heads * head_dim, so GQA/MQA variants cut on head boundaries
//     (DeepSpeed's (3, -1) silently mis-slices them). These two need dims.has_heads().
// An unknown name is an Error listing the presets.
std::vector<TPLayerSpec> preset_specs(const std::string& name, const ModelDims& dims);

// The preset for an HF model_type, when one fits (llama, mistral, qwen2, qwen3 -> llama,
// bloom, chatglm, mixtral, deepseek_v2, phi3); nullopt otherwise.
std::optional<std::string> preset_for_model_type(const std::string& model_type);

}  // namespace autotp
