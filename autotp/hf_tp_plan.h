// Hugging Face base_model_tp_plan -> TPLayerSpecs (DeepSpeed's TPPlanConverter, reference 5.3).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "autotp/tp_layer_spec.h"

namespace autotp {

// An HF plan in its written order: module key ("layers.*.self_attn.q_proj") -> style.
using HfTpPlan = std::vector<std::pair<std::string, std::string>>;

// "layers.*.self_attn.q_proj" -> ".*layers\..*\.self_attn\.q_proj\.weight$": '.' escaped,
// '*' -> '.*', ".*" in front, "\.weight$" appended (only "$" when the key already ends in
// ".weight"); other regex characters are escaped.
std::string hf_plan_key_to_regex(const std::string& key);

// One spec per entry: colwise -> column; colwise_rep / colwise_gather_output -> column +
// gather_output; rowwise -> row; replicated_with_grad_allreduce -> skip + grad_allreduce.
// Any other style (local_colwise, gather, sequence_parallel, moe_tp_experts, ...) rejects the
// whole plan with an Error naming the key and the style: half of a column/row pair would
// corrupt the model. A "model."-prefixed key is dropped when its unprefixed form is also in
// the plan. `where` (e.g. "config.json base_model_tp_plan") prefixes each spec's origin. An
// empty plan gives no specs.
std::vector<TPLayerSpec> specs_from_hf_tp_plan(const HfTpPlan& plan, const std::string& where);

}  // namespace autotp
