// Registry of built-in model types: a table from model_type to a constructor, and HF-style
// initialization through layers/init.h.
#include "models/registry.h"

#include <functional>
#include <map>

#include "layers/init.h"
#include "models/llama.h"

namespace autotp {

namespace {

using Factory = std::function<std::shared_ptr<CausalLM>(const ModelConfig&, DType, Device)>;

const std::map<std::string, Factory>& factories() {
  static const std::map<std::string, Factory> table = [] {
    const Factory llama = [](const ModelConfig& c, DType dtype, Device device) {
      return std::make_shared<LlamaForCausalLM>(c, dtype, device);
    };
    // mistral, qwen2 and qwen3 differ from llama only in LlamaLayout (models/llama.h).
    return std::map<std::string, Factory>{
        {"llama", llama}, {"mistral", llama}, {"qwen2", llama}, {"qwen3", llama}};
  }();
  return table;
}

}  // namespace

std::vector<std::string> registered_model_types() {
  std::vector<std::string> out;
  for (const auto& [name, factory] : factories())
    out.push_back(name);
  return out;
}

std::shared_ptr<CausalLM> create_model_uninitialized(const ModelConfig& config, DType dtype,
                                                     Device device) {
  auto it = factories().find(config.model_type);
  if (it == factories().end()) {
    std::string supported;
    for (const std::string& t : registered_model_types()) {
      supported += (supported.empty() ? "" : ", ") + t;
    }
    AUTOTP_FAIL("create_model: unknown model_type '{}' (supported: {})", config.model_type,
                supported);
  }
  return it->second(config, dtype, device);
}

void initialize_model(CausalLM& model, Generator& gen) {
  init::init_weights_hf(model, gen, model.config().initializer_range);
}

std::shared_ptr<CausalLM> create_model(const ModelConfig& config, uint64_t seed, DType dtype,
                                       Device device) {
  std::shared_ptr<CausalLM> model = create_model_uninitialized(config, dtype, device);
  Generator gen(seed);
  initialize_model(*model, gen);
  return model;
}

}  // namespace autotp
