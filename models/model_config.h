// ModelConfig: the Hugging Face config.json fields of the Llama family (llama, qwen2, qwen3,
// mistral), built from a front-end-agnostic map of text values, with HF's defaults and checks.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace autotp {

// A config.json object or YAML `model` section as a front end (JSON, YAML, --set) hands it
// over: scalars as text ("64", "1e-06", "true", "silu"; "null", "~" or "" mean unset, like a
// JSON null) and nested objects (rope_scaling, rope_parameters) as one level of text maps.
// Lists (architectures, eos_token_id, layer_types) may be given as any text: only ignored
// keys hold lists.
struct ModelConfigMap {
  std::map<std::string, std::string> scalars;
  std::map<std::string, std::map<std::string, std::string>> objects;
};

// rope_scaling / rope_parameters. rope_type "default" is HF's plain rope; "llama3" is Llama
// 3.1's frequency-dependent scaling (see rope_inv_freq in models/rope.h).
struct RopeScaling {
  std::string rope_type = "default";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;  // llama3; 0 = max_position_embeddings

  bool operator==(const RopeScaling&) const = default;
};

struct ModelConfig {
  std::string model_type = "llama";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // 0 (or null in a map): num_attention_heads
  int64_t head_dim = 0;             // 0 (or null in a map): hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  // llama, qwen3: bias on q/k/v/o (qwen2 always has q/k/v biases, mistral never any).
  bool attention_bias = false;
  bool mlp_bias = false;  // llama only (the others never have MLP biases)
  double initializer_range = 0.02;
  std::string hidden_act = "silu";
  // The attention window of sliding-window layers, when the model has any (mistral by
  // default; qwen2/qwen3 with use_sliding_window). Sequences up to this length are exact.
  std::optional<int64_t> sliding_window;

  // Builds a config from `map` with the defaults of HF's config class for its model_type
  // (required: model_type, vocab_size, hidden_size, intermediate_size, num_hidden_layers,
  // num_attention_heads), then resolve_defaults() and validate(). One deliberate difference:
  // an absent num_key_value_heads / head_dim is derived as above for every model_type,
  // where HF's qwen2/qwen3/mistral classes would use their 7B-sized defaults (32/128/8). Keys that
  // are neither used nor a known HF key that autotp ignores (architectures, torch_dtype,
  // bos_token_id, ...) are collected into `unknown_keys` when it is given, and are an error naming
  // the key and the closest known key when it is not. A value of the wrong type is an error naming
  // the key and the value.
  static ModelConfig from_map(const ModelConfigMap& map,
                              std::vector<std::string>* unknown_keys = nullptr);
  // The config as config.json scalars and objects (HF's keys; rope_scaling only when it is
  // not the default), so that from_map(to_map()) gives the same config.
  ModelConfigMap to_map() const;

  // Fills the fields left at 0 by a C++ caller the way HF's config classes do:
  // num_key_value_heads = num_attention_heads, head_dim = hidden_size / num_attention_heads
  // (which must divide), llama3 original_max_position_embeddings = max_position_embeddings.
  void resolve_defaults();
  // Checks every field; an error names the key, its value and what was expected.
  void validate() const;

  // HF's architecture class for the model_type ("LlamaForCausalLM", "Qwen2ForCausalLM", ...).
  std::string architecture() const;

  bool operator==(const ModelConfig&) const = default;
};

// The model_type values ModelConfig and the model registry accept: llama, mistral, qwen2, qwen3.
const std::vector<std::string>& supported_model_types();

}  // namespace autotp
