// select_specs: the priority between custom specs, presets, the HF tp_plan and the parser.
#include "autotp/autotp_config.h"

#include <optional>

#include "autotp/presets.h"
#include "core/error.h"

namespace autotp {

std::string plan_source_name(PlanSource source) {
  switch (source) {
    case PlanSource::Specs:
      return "layer specs";
    case PlanSource::HfTpPlan:
      return "HF tp_plan";
    case PlanSource::Parser:
      return "parser";
  }
  return "?";
}

SpecSelection select_specs(const AutoTPConfig& config, const ModelDims& dims) {
  SpecSelection out;
  const bool explicit_preset = !config.preset_model.empty();
  if (explicit_preset) {
    AUTOTP_CHECK(is_preset_name(config.preset_model),
                 "tensor_parallel.preset_model '{}' is not a known preset (known: llama, qwen2, "
                 "mistral, bloom, chatglm, mixtral, deepseek_v2, phi3)",
                 config.preset_model);
  }
  std::optional<std::string> detected;
  if (!explicit_preset && config.detect_preset) detected = preset_for_model_type(dims.model_type);

  const std::string custom_text =
      fmt::format("partition_config.layer_specs ({})", config.layer_specs.size());
  auto add_custom = [&] {
    out.specs = config.layer_specs;
    out.custom_specs = !config.layer_specs.empty();
    out.description = custom_text;
  };
  auto add_preset = [&](const std::string& name, const std::string& how) {
    for (TPLayerSpec& s : preset_specs(name, dims))
      out.specs.push_back(std::move(s));
    const std::string text = fmt::format("preset '{}'{}", name, how);
    out.description = out.description.empty() ? text : out.description + " + " + text;
  };

  if (config.has_partition_config || explicit_preset) {
    out.source = PlanSource::Specs;
    if (config.has_partition_config) add_custom();
    if (explicit_preset && (!config.has_partition_config || config.use_default_specs)) {
      add_preset(config.preset_model, "");
    } else if (explicit_preset) {
      out.description +=
          fmt::format(" (preset '{}' ignored: use_default_specs is false)", config.preset_model);
    } else if (detected && config.use_default_specs) {
      add_preset(*detected, fmt::format(" (detected from model_type '{}')", dims.model_type));
    }
    return out;
  }
  if (!config.hf_tp_plan.empty()) {
    out.specs = specs_from_hf_tp_plan(config.hf_tp_plan, config.hf_tp_plan_where);
    if (!out.specs.empty()) {
      out.source = PlanSource::HfTpPlan;
      out.description = fmt::format("{} ({} entries)", config.hf_tp_plan_where, out.specs.size());
      return out;
    }
  }
  if (detected) {
    out.source = PlanSource::Specs;
    add_preset(*detected, fmt::format(" (detected from model_type '{}')", dims.model_type));
    return out;
  }
  out.source = PlanSource::Parser;
  out.description =
      dims.model_type.empty()
          ? std::string("automatic parser (no specs, tp_plan or preset)")
          : fmt::format("automatic parser (no preset for model_type '{}')", dims.model_type);
  return out;
}

}  // namespace autotp
