// HF tp_plan key-to-regex conversion and style mapping.
#include "autotp/hf_tp_plan.h"

#include <set>

#include "core/error.h"

namespace autotp {

std::string hf_plan_key_to_regex(const std::string& key) {
  std::string body = key;
  bool has_weight = false;
  const std::string suffix = ".weight";
  if (body.size() >= suffix.size() &&
      body.compare(body.size() - suffix.size(), suffix.size(), suffix) == 0) {
    has_weight = true;
  }
  std::string out = ".*";
  for (char c : body) {
    if (c == '*') {
      out += ".*";
    } else if (std::string("\\^$.|?+()[]{}").find(c) != std::string::npos) {
      out += '\\';
      out += c;
    } else {
      out += c;
    }
  }
  out += has_weight ? "$" : "\\.weight$";
  return out;
}

std::vector<TPLayerSpec> specs_from_hf_tp_plan(const HfTpPlan& plan, const std::string& where) {
  std::set<std::string> keys;
  for (const auto& [key, style] : plan)
    keys.insert(key);
  std::vector<TPLayerSpec> specs;
  for (const auto& [key, style] : plan) {
    if (key.rfind("model.", 0) == 0 && keys.count(key.substr(6)) != 0) continue;
    TPLayerSpec spec;
    spec.patterns = {hf_plan_key_to_regex(key)};
    spec.origin = fmt::format("{} '{}': {}", where, key, style);
    if (style == "colwise") {
      spec.type = SpecType::Column;
    } else if (style == "colwise_rep" || style == "colwise_gather_output") {
      spec.type = SpecType::Column;
      spec.gather_output = true;
    } else if (style == "rowwise") {
      spec.type = SpecType::Row;
    } else if (style == "replicated_with_grad_allreduce") {
      spec.type = SpecType::Skip;
      spec.grad_allreduce = true;
    } else {
      AUTOTP_FAIL(
          "{}: entry '{}' has style '{}', which autotp does not support (supported: colwise, "
          "rowwise, colwise_rep, colwise_gather_output, replicated_with_grad_allreduce). The "
          "whole plan is rejected, since applying half of a column/row pair would corrupt the "
          "model: give tensor_parallel.partition_config.layer_specs (or preset_model) instead",
          where, key, style);
    }
    spec.compile();
    specs.push_back(std::move(spec));
  }
  return specs;
}

}  // namespace autotp
