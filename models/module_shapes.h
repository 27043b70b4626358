// Module shapes without tensors: the (path, class, parameter shapes) list of a model tree,
// read from a built Module or computed from a ModelConfig without allocating any weights.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/module.h"
#include "core/shape.h"
#include "models/model_config.h"

namespace autotp {

// One module that owns parameters.
struct ModuleShape {
  std::string path;       // dotted path from the model root ("model.layers.0.self_attn.q_proj")
  std::string type_name;  // the module class: "Linear", "Embedding", "RMSNorm", ...
  // Its own parameters (local name -> full shape), in registration order.
  std::vector<std::pair<std::string, Shape>> parameters;
  // When its "weight" is the same tensor as a parameter registered earlier in the tree (tied
  // weights): that parameter's dotted name ("model.embed_tokens.weight"); empty otherwise.
  std::string weight_tied_to;

  // The shape of parameter `name`, or nullptr when the module has none by that name.
  const Shape* parameter_shape(const std::string& name) const;
  bool operator==(const ModuleShape&) const = default;
};

// Every module of `root` (including `root` itself, with path "") that owns parameters, in
// named_modules() pre-order (registration order), which is the order of named_parameters().
std::vector<ModuleShape> describe_modules(const Module& root);

// The same list for the built-in model of `config` (llama, mistral, qwen2, qwen3), computed
// from the config alone: no tensor is allocated, so it serves for 8B-sized plans. Equal to
// describe_modules(*create_model(config, ...)) (a test checks this for every model_type).
std::vector<ModuleShape> module_shapes(const ModelConfig& config);

}  // namespace autotp
