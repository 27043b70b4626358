// How the AutoTP rules see a module: its kind (Linear, embedding, norm, ...) from its class
// name, what is done with a layer (column / row / replicated), and path helpers.
#pragma once

#include <string>
#include <vector>

#include "models/module_shapes.h"

namespace autotp {

enum class ModuleKind {
  Linear,          // class "Linear": can be replaced
  ParallelLinear,  // already a Column/RowParallelLinear
  Embedding,       // class "Embedding"
  Norm,            // a class name containing "Norm" (RMSNorm, LayerNorm, ...)
  Other,
};
ModuleKind module_kind(const std::string& type_name);

enum class LayerAction { Column, Row, Replicated };
std::string layer_action_name(LayerAction action);  // "column", "row", "replicated"

// "model.layers.3.mlp" -> {"model", "layers", "3", "mlp"}
std::vector<std::string> split_path(const std::string& path);
// The last component ("o_proj"), or the path itself without dots.
std::string last_component(const std::string& path);
// The parent path ("model.layers.3" for "model.layers.3.mlp"; "" at the top).
std::string parent_path(const std::string& path);
// True for a non-empty all-digit component (a ModuleList index).
bool is_index(const std::string& component);
// The path with every index component written "*": "model.layers.*.mlp.down_proj".
std::string generic_path(const std::string& path);
// True for the output head by its last component: lm_head, embed_out (GPT-NeoX) or
// output_layer (ChatGLM).
bool is_lm_head(const std::string& path);

}  // namespace autotp
