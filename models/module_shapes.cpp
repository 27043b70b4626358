// describe_modules over a Module tree, and module_shapes for the Llama family from its config
// (the same registration order as models/llama.cpp).
#include "models/module_shapes.h"

#include <map>

#include "core/error.h"
#include "models/llama.h"

namespace autotp {

const Shape* ModuleShape::parameter_shape(const std::string& name) const {
  for (const auto& [n, shape] : parameters) {
    if (n == name) return &shape;
  }
  return nullptr;
}

namespace {

// The parameters `module` registered itself (not its children's), in registration order.
std::vector<std::pair<std::string, Tensor>> own_parameters(const Module& module) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, t] : module.named_parameters()) {
    if (name.find('.') == std::string::npos) out.emplace_back(name, t);
  }
  return out;
}

std::string join_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace

std::vector<ModuleShape> describe_modules(const Module& root) {
  std::vector<std::pair<std::string, const Module*>> modules{{"", &root}};
  for (const auto& [path, m] : root.named_modules())
    modules.emplace_back(path, m.get());
  std::vector<ModuleShape> out;
  std::map<const Storage*, std::string> seen;  // storage -> first parameter name
  for (const auto& [path, m] : modules) {
    const auto params = own_parameters(*m);
    if (params.empty()) continue;
    ModuleShape shape{path, m->type_name(), {}, {}};
    for (const auto& [name, t] : params) {
      shape.parameters.emplace_back(name, t.shape());
      const std::string full = join_path(path, name);
      auto [it, inserted] = seen.emplace(t.storage().get(), full);
      if (!inserted && name == "weight") shape.weight_tied_to = it->second;
    }
    out.push_back(std::move(shape));
  }
  return out;
}

std::vector<ModuleShape> module_shapes(const ModelConfig& config_in) {
  ModelConfig c = config_in;
  c.resolve_defaults();
  c.validate();
  const LlamaLayout layout = llama_layout(c);
  const int64_t hidden = c.hidden_size, inner = c.intermediate_size, d = c.head_dim;
  const int64_t q_width = c.num_attention_heads * d, kv_width = c.num_key_value_heads * d;
  std::vector<ModuleShape> out;
  auto linear = [&](const std::string& path, int64_t in, int64_t out_features, bool bias) {
    ModuleShape m{path, "Linear", {{"weight", {out_features, in}}}, {}};
    if (bias) m.parameters.emplace_back("bias", Shape{out_features});
    out.push_back(std::move(m));
  };
  auto rms_norm = [&](const std::string& path, int64_t dim) {
    out.push_back({path, "RMSNorm", {{"weight", {dim}}}, {}});
  };
  out.push_back({"model.embed_tokens", "Embedding", {{"weight", {c.vocab_size, hidden}}}, {}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string layer = "model.layers." + std::to_string(i);
    linear(layer + ".self_attn.q_proj", hidden, q_width, layout.qkv_bias);
    linear(layer + ".self_attn.k_proj", hidden, kv_width, layout.qkv_bias);
    linear(layer + ".self_attn.v_proj", hidden, kv_width, layout.qkv_bias);
    linear(layer + ".self_attn.o_proj", q_width, hidden, layout.o_bias);
    if (layout.qk_norm) {
      rms_norm(layer + ".self_attn.q_norm", d);
      rms_norm(layer + ".self_attn.k_norm", d);
    }
    linear(layer + ".mlp.gate_proj", hidden, inner, layout.mlp_bias);
    linear(layer + ".mlp.up_proj", hidden, inner, layout.mlp_bias);
    linear(layer + ".mlp.down_proj", inner, hidden, layout.mlp_bias);
    rms_norm(layer + ".input_layernorm", hidden);
    rms_norm(layer + ".post_attention_layernorm", hidden);
  }
  rms_norm("model.norm", hidden);
  if (!c.tie_word_embeddings) linear("lm_head", hidden, c.vocab_size, false);
  return out;
}

}  // namespace autotp
