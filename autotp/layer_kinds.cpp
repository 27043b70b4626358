// Module kinds from class names, action names and dotted-path helpers.
#include "autotp/layer_kinds.h"

namespace autotp {

ModuleKind module_kind(const std::string& type_name) {
  if (type_name == "Linear") return ModuleKind::Linear;
  if (type_name == "ColumnParallelLinear" || type_name == "RowParallelLinear") {
    return ModuleKind::ParallelLinear;
  }
  if (type_name == "Embedding") return ModuleKind::Embedding;
  if (type_name.find("Norm") != std::string::npos) return ModuleKind::Norm;
  return ModuleKind::Other;
}

std::string layer_action_name(LayerAction action) {
  switch (action) {
    case LayerAction::Column:
      return "column";
    case LayerAction::Row:
      return "row";
    case LayerAction::Replicated:
      return "replicated";
  }
  return "?";
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    if (dot == std::string::npos) {
      out.push_back(path.substr(start));
      break;
    }
    out.push_back(path.substr(start, dot - start));
    start = dot + 1;
  }
  return out;
}

std::string last_component(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

std::string parent_path(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? std::string() : path.substr(0, dot);
}

bool is_index(const std::string& component) {
  if (component.empty()) return false;
  for (char c : component) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

std::string generic_path(const std::string& path) {
  std::string out;
  for (const std::string& c : split_path(path))
    out += (out.empty() ? "" : ".") + (is_index(c) ? std::string("*") : c);
  return out;
}

bool is_lm_head(const std::string& path) {
  const std::string last = last_component(path);
  return last == "lm_head" || last == "embed_out" || last == "output_layer";
}

}  // namespace autotp
