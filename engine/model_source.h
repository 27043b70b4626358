// From the config's `model` section to a model: inline Hugging Face config.json fields, or
// `path:` to a config.json file or a Hugging Face checkpoint directory (with or without weights).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <yaml-cpp/yaml.h>

#include "core/dtype.h"
#include "core/io/json.h"
#include "engine/config.h"
#include "models/causal_lm.h"

namespace autotp {

// Where a run's model comes from, resolved before anything large is allocated.
struct ModelSource {
  ModelConfig config;
  // A Hugging Face directory whose weights are loaded (config.json + model.safetensors or the
  // sharded index); empty: the weights are initialized from the seed.
  std::string weights_dir;
  std::string description;  // one line for logs: "inline config", "path runs/x/hf (weights)"
};

// A YAML `model` map -> ModelConfigMap (the `path` key skipped); `where` prefixes errors.
ModelConfigMap model_config_map_from_yaml(const YAML::Node& node, const std::string& where);
// Reads a config.json file into a ModelConfig; errors name the file.
ModelConfig model_config_from_json_file(const std::string& path);

// Resolves the section. With `path`, no other key may be given (the error names the first
// one). A path is a config.json file, or a directory holding config.json (its weights are
// loaded when model.safetensors or model.safetensors.index.json is present). Errors name the
// section's line in the YAML file.
ModelSource resolve_model_source(const ModelSection& section);

// Builds the model: loads weights_dir, or create_model(config, seed) (HF initialization).
std::shared_ptr<CausalLM> build_model(const ModelSource& source, uint64_t seed, DType dtype);

// True when `dir` holds Hugging Face weights (model.safetensors or its sharded index).
bool has_hf_weights(const std::string& dir);

}  // namespace autotp
