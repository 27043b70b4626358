// The structural parser: blocks from ModuleList indices, sub-blocks from containers and
// block-level norms, row/column/skip from names and order.
#include "autotp/parser.h"

#include <algorithm>
#include <map>
#include <set>

namespace autotp {

namespace {

// The block prefix of `path` (up to and including its first index component), or "".
std::string block_of(const std::string& path) {
  const std::vector<std::string> parts = split_path(path);
  std::string prefix;
  for (size_t i = 0; i < parts.size(); ++i) {
    prefix += (i == 0 ? "" : ".") + parts[i];
    if (i > 0 && is_index(parts[i])) return prefix;
  }
  return "";
}

bool is_row_name(const std::string& path) {
  static const std::set<std::string> names = {"o_proj",        "out_proj", "down_proj",
                                              "dense_4h_to_h", "w2",       "c_proj"};
  const std::string last = last_component(path);
  if (names.count(last) != 0) return true;
  if (last == "dense") {
    const std::string parent = last_component(parent_path(path));
    return parent.find("attn") != std::string::npos ||
           parent.find("attention") != std::string::npos;
  }
  return false;
}

// The reason a Linear is skipped (MoE router, MLA down-projection), or "".
std::string skip_reason(const std::string& path) {
  const std::string last = last_component(path);
  const std::string parent = last_component(parent_path(path));
  if ((last == "gate" || last == "router") &&
      (parent == "mlp" || parent == "moe" || parent == "block_sparse_moe" ||
       parent.find("moe") != std::string::npos)) {
    return "MoE router";
  }
  if (last == "shared_expert_gate") return "MoE shared-expert gate";
  if (last == "q_a_proj" || last == "kv_a_proj_with_mqa") return "MLA low-rank down-projection";
  return "";
}

std::optional<FusedShape> fused_shape_for(const ModuleShape& m, const ModelDims& dims,
                                          std::string& note) {
  const std::string last = last_component(m.path);
  const Shape* w = m.parameter_shape("weight");
  const int64_t out = w != nullptr && w->size() == 2 ? (*w)[0] : 0;
  if (last == "qkv_proj" || last == "query_key_value" || last == "W_pack" || last == "Wqkv" ||
      last == "c_attn") {
    if (dims.model_type == "bloom") {
      note = ", head-interleaved q|k|v: plain split";
      return std::nullopt;
    }
    if (dims.has_heads() &&
        out == (dims.num_attention_heads + 2 * dims.num_key_value_heads) * dims.head_dim) {
      const int64_t q = dims.num_attention_heads * dims.head_dim;
      const int64_t kv = dims.num_key_value_heads * dims.head_dim;
      note = ", fused q|k|v split by heads";
      return FusedShape{FusedDim::of_parts({q, kv, kv}), FusedDim::infer()};
    }
    note = ", fused q|k|v assumed equal thirds (head counts unknown)";
    return FusedShape{FusedDim::of(3), FusedDim::infer()};
  }
  if (last == "gate_up_proj" || (last == "dense_h_to_4h" && dims.model_type == "chatglm")) {
    note = ", fused gate|up";
    return FusedShape{FusedDim::of(2), FusedDim::infer()};
  }
  return std::nullopt;
}

class Parser {
 public:
  Parser(const std::vector<ModuleShape>& modules, const ModelDims& dims)
      : modules_(modules), dims_(dims) {}

  std::vector<ParserDecision> run() {
    std::vector<std::string> blocks;
    std::map<std::string, std::vector<const ModuleShape*>> members;
    for (const ModuleShape& m : modules_) {
      const std::string block = block_of(m.path);
      if (block.empty()) {
        if (module_kind(m.type_name) == ModuleKind::Linear) {
          decide(m, LayerAction::Replicated, "outside the repeated blocks");
        }
        continue;
      }
      if (members.find(block) == members.end()) blocks.push_back(block);
      members[block].push_back(&m);
    }
    for (const std::string& block : blocks)
      process(block, members[block], /*block_level=*/true);
    std::vector<ParserDecision> out;
    for (const ModuleShape& m : modules_) {
      auto it = decisions_.find(m.path);
      if (it != decisions_.end()) out.push_back(it->second);
    }
    return out;
  }

 private:
  void decide(const ModuleShape& m, LayerAction action, const std::string& why,
              std::optional<FusedShape> shape = std::nullopt) {
    decisions_[m.path] = {m.path, action, std::move(shape),
                          fmt::format("parser: {} ({})", layer_action_name(action), why)};
  }

  // `mods` are the modules below `prefix` (and possibly `prefix` itself), in order.
  void process(const std::string& prefix, const std::vector<const ModuleShape*>& mods,
               bool block_level) {
    std::vector<std::string> order;
    std::map<std::string, const ModuleShape*> leaf;
    std::map<std::string, std::vector<const ModuleShape*>> nested;
    for (const ModuleShape* m : mods) {
      if (m->path == prefix) continue;  // the container's own parameters
      const std::string rel = m->path.substr(prefix.size() + 1);
      const size_t dot = rel.find('.');
      const std::string comp = rel.substr(0, dot);
      if (std::find(order.begin(), order.end(), comp) == order.end()) order.push_back(comp);
      if (dot == std::string::npos) {
        leaf[comp] = m;
      } else {
        nested[comp].push_back(m);
      }
    }
    std::vector<const ModuleShape*> segment;
    for (const std::string& comp : order) {
      if (auto it = leaf.find(comp); it != leaf.end()) {
        const ModuleKind kind = module_kind(it->second->type_name);
        if (kind == ModuleKind::Norm && block_level) close(segment, prefix);
        if (kind == ModuleKind::Linear) segment.push_back(it->second);
      }
      if (auto it = nested.find(comp); it != nested.end()) {
        close(segment, prefix);
        std::vector<const ModuleShape*> sub = it->second;
        if (auto own = leaf.find(comp); own != leaf.end()) sub.insert(sub.begin(), own->second);
        process(prefix + "." + comp, sub, false);
      }
    }
    close(segment, prefix);
  }

  void close(std::vector<const ModuleShape*>& segment, const std::string& container) {
    std::vector<const ModuleShape*> linears;
    for (const ModuleShape* m : segment) {
      const std::string why = skip_reason(m->path);
      if (why.empty()) {
        linears.push_back(m);
      } else {
        decide(*m, LayerAction::Replicated, why);
      }
    }
    segment.clear();
    if (linears.empty()) return;
    std::vector<const ModuleShape*> rows;
    for (const ModuleShape* m : linears) {
      if (is_row_name(m->path)) rows.push_back(m);
    }
    const bool named = !rows.empty();
    if (!named) rows.push_back(linears.back());
    if (linears.size() == 1 || rows.size() == linears.size()) {
      for (const ModuleShape* m : linears) {
        decide(*m, LayerAction::Replicated,
               fmt::format("no column Linear feeds it in sub-block '{}': it reads and writes the "
                           "replicated residual stream",
                           container));
      }
      return;
    }
    for (const ModuleShape* m : linears) {
      if (std::find(rows.begin(), rows.end(), m) != rows.end()) {
        decide(*m, LayerAction::Row,
               named ? fmt::format("named {}", last_component(m->path))
                     : fmt::format("last Linear of sub-block '{}': writes into the residual "
                                   "stream",
                                   container));
      } else {
        std::string note;
        std::optional<FusedShape> shape = fused_shape_for(*m, dims_, note);
        decide(*m, LayerAction::Column, fmt::format("in sub-block '{}'{}", container, note),
               std::move(shape));
      }
    }
  }

  const std::vector<ModuleShape>& modules_;
  const ModelDims& dims_;
  std::map<std::string, ParserDecision> decisions_;
};

}  // namespace

std::vector<ParserDecision> parse_layers(const std::vector<ModuleShape>& modules,
                                         const ModelDims& dims) {
  return Parser(modules, dims).run();
}

std::vector<std::string> find_blocks(const std::vector<ModuleShape>& modules) {
  std::vector<std::string> out;
  for (const ModuleShape& m : modules) {
    const std::string block = block_of(m.path);
    if (!block.empty() && std::find(out.begin(), out.end(), block) == out.end()) {
      out.push_back(block);
    }
  }
  return out;
}

}  // namespace autotp
