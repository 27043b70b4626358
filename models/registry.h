// The model registry: builds the built-in model for a config's model_type (llama, mistral,
// qwen2, qwen3), initialized like Hugging Face from a seed, or uninitialized for loading.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/random.h"
#include "models/causal_lm.h"
#include "models/model_config.h"

namespace autotp {

// The model_type values create_model accepts (the same list as supported_model_types()).
std::vector<std::string> registered_model_types();

// The model for config.model_type with HF's initialization (init::init_weights_hf): Linear and
// Embedding weights ~ N(0, initializer_range), biases 0, norm weights 1, drawn from
// Generator(seed) in named_modules() order, so a seed gives the same weights everywhere.
// An unknown model_type is an error listing the supported types.
std::shared_ptr<CausalLM> create_model(const ModelConfig& config, uint64_t seed,
                                       DType dtype = DType::F32, Device device = Device::cpu());
// The same model without initialization (Linear/Embedding weights 0, norm weights 1), for
// loading a checkpoint into.
std::shared_ptr<CausalLM> create_model_uninitialized(const ModelConfig& config,
                                                     DType dtype = DType::F32,
                                                     Device device = Device::cpu());
// HF's initialization of an existing model from `gen` (as create_model does).
void initialize_model(CausalLM& model, Generator& gen);

}  // namespace autotp
