// AutoTPConfig: the tensor_parallel settings the AutoTP pass reads, and select_specs, which
// decides where the plan comes from (custom specs / preset, HF tp_plan, or the parser).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autotp/hf_tp_plan.h"
#include "autotp/model_dims.h"
#include "autotp/tp_layer_spec.h"

namespace autotp {

struct AutoTPConfig {
  // tensor_parallel.autotp_size: the TP degree. 0 and 1 shard nothing.
  int64_t tp_size = 0;
  // tensor_parallel.preset_model (lower-case); empty: detected from the model_type when
  // detect_preset (autotp's addition: DeepSpeed documents detection but never does it).
  std::string preset_model;
  bool detect_preset = true;
  // tensor_parallel.partition_config: present or not, its compiled layer_specs in order,
  // use_default_specs and strict_mode.
  bool has_partition_config = false;
  std::vector<TPLayerSpec> layer_specs;
  bool use_default_specs = true;
  bool strict_mode = false;
  // The model's HF base_model_tp_plan (from its config.json), when it has one.
  HfTpPlan hf_tp_plan;
  std::string hf_tp_plan_where = "base_model_tp_plan";
  bool tp_overlap_comm = false;
  // Where the pass takes the shards when it moves the model to a device
  // (ApplyOptions::device, e.g. the trainer on CUDA): false (DeepSpeed's default) moves the
  // full model to the device and shards it there; true shards it on the host and moves only
  // the shards, so the device never holds the full model. No effect without a target device.
  bool keep_module_on_host = false;
  int64_t tp_grain_size = 1;  // tensor_parallel.tp.tp_grain_size
  // Training mode needs even shards unless allow_uneven (autotp extension, C++ API only):
  // uneven shards follow DeepSpeed's rules (KV groups / near-even, remainder on low ranks).
  bool training = true;
  bool allow_uneven = false;

  int64_t effective_tp_size() const { return tp_size > 1 ? tp_size : 1; }
};

enum class PlanSource { Specs, HfTpPlan, Parser };
std::string plan_source_name(PlanSource source);  // "layer specs", "HF tp_plan", "parser"

// The specs the pass matches, in priority order (first match wins), and where they came from.
struct SpecSelection {
  PlanSource source = PlanSource::Parser;
  std::vector<TPLayerSpec> specs;  // empty for the parser
  bool custom_specs = false;       // partition_config specs are among them (unused-spec warnings)
  // "partition_config.layer_specs (2) + preset 'llama' (detected from model_type 'qwen3')"
  std::string description;
};

// Priority (reference 3.4, with detection added):
//   1. partition_config and/or an explicit preset_model: preset only; custom only; or both,
//      merged custom-first when use_default_specs and custom only when not;
//   2. the HF tp_plan, when the model has a non-empty one;
//   3. the preset detected from dims.model_type (with a partition_config present and
//      use_default_specs, the detected preset is merged after the custom specs as in 1);
//   4. the automatic parser.
// An unknown preset_model is an Error listing the presets.
SpecSelection select_specs(const AutoTPConfig& config, const ModelDims& dims);

}  // namespace autotp
