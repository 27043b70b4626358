// TPLayerSpec: one partitioning rule (regex patterns over full parameter names, column / row
// / skip, fused shape, partition dim, model_types, gather_output, grad_allreduce).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "layers/parallel/fused_shape.h"

namespace autotp {

enum class SpecType { Column, Row, Skip };
std::string spec_type_name(SpecType type);  // "column", "row", "skip"
// "row" | "column" | "skip", case-insensitive; an Error names `origin` and the value.
SpecType parse_spec_type(const std::string& text, const std::string& origin);

// A rule as DeepSpeed's TPLayerSpec defines it (reference 3.3). Fill the fields, then call
// compile(): it checks them and compiles the patterns. A candidate name is a module's path
// plus ".weight" ("model.layers.0.self_attn.q_proj.weight"), or for grad_allreduce any
// parameter's full name; a pattern matches when it matches a prefix of the name (Python's
// re.match: anchored at the start, not at the end, so end patterns with "$").
struct TPLayerSpec {
  std::vector<std::string> patterns;  // ECMAScript regexes
  SpecType type = SpecType::Column;
  // Logical view of a fused weight, e.g. (3, -1) or ((q, kv, kv), -1): each sub-parameter is
  // split on its own (reference 5.10).
  std::optional<FusedShape> shape;
  // The split dim of `shape` (default: 0 for column, the last dim for row); without a shape
  // 0 for column and 1 for row.
  std::optional<int64_t> partition_dim;
  // When set, the spec applies only to models whose model_type (lower-case) is listed.
  std::optional<std::vector<std::string>> model_types;
  bool gather_output = false;   // column only: every rank gets the full output (untied lm_head)
  bool grad_allreduce = false;  // skip only: the replicated gradient is summed over TP
  // Where the spec came from, for messages: "layer_specs[2] (cfg.yaml line 31)",
  // "preset 'llama'", "tp_plan 'layers.*.self_attn.q_proj': colwise".
  std::string origin;

  // Checks the fields (gather_output only on column specs and not with shape, grad_allreduce
  // only on skip specs, partition_dim inside shape, a nested size list only at the partition
  // dim) and compiles every pattern. Errors name `origin` and the offending pattern or key.
  void compile();
  bool compiled() const { return regexes_ != nullptr; }

  // True when some pattern matches a prefix of `name` (compile() first).
  bool matches(const std::string& name) const;
  // True without model_types, else when `model_type` (lower-cased) is listed; an unknown
  // (empty) model_type never matches a filtered spec, as in DeepSpeed.
  bool applies_to(const std::string& model_type) const;
  // "preset 'llama' row `.*\.self_attn\.o_proj\.weight$`"
  std::string describe() const;

 private:
  std::shared_ptr<const std::vector<std::regex>> regexes_;
};

// The spec helpers presets and tests use: fields set, compiled.
TPLayerSpec make_spec(std::vector<std::string> patterns, SpecType type, std::string origin);
TPLayerSpec make_fused_spec(std::vector<std::string> patterns, SpecType type, FusedShape shape,
                            std::string origin);

}  // namespace autotp
