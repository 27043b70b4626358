// AutoTPConfig from the engine's parsed YAML `tensor_parallel` section. Header-only and
// included only by code that links autotp_engine (the engine, tools, tests): the autotp
// library itself never depends on engine/.
#pragma once

#include <string>

#include "autotp/autotp_config.h"
#include "engine/config.h"

namespace autotp {

// One layer spec as written (shape entries {n} or a nested list) -> a compiled TPLayerSpec
// whose origin is "tensor_parallel.partition_config.layer_specs[i] (<where>)"; an invalid
// regex or field is an Error naming the pattern and the YAML line.
inline TPLayerSpec layer_spec_from_config(const LayerSpecConfig& c, size_t index) {
  TPLayerSpec spec;
  spec.patterns = c.patterns;
  spec.origin = fmt::format("tensor_parallel.partition_config.layer_specs[{}]{}", index,
                            c.where.empty() ? std::string() : " (" + c.where + ")");
  spec.type = parse_spec_type(c.partition_type, spec.origin);
  if (c.shape) {
    FusedShape shape;
    for (size_t i = 0; i < c.shape->size(); ++i) {
      const std::vector<int64_t>& entry = (*c.shape)[i];
      const bool nested = i < c.shape_nested.size() && c.shape_nested[i];
      if (nested) {
        shape.push_back(FusedDim::of_parts(entry));
      } else {
        AUTOTP_CHECK(entry.size() == 1, "{}: shape entry {} must be one size or a nested list",
                     spec.origin, i);
        shape.push_back(entry[0] == -1 ? FusedDim::infer() : FusedDim::of(entry[0]));
      }
    }
    spec.shape = std::move(shape);
  }
  spec.partition_dim = c.partition_dim;
  spec.model_types = c.model_types;
  spec.gather_output = c.gather_output;
  spec.grad_allreduce = c.grad_allreduce;
  spec.compile();
  return spec;
}

// The AutoTPConfig of a tensor_parallel section. The HF tp_plan, training mode and
// allow_uneven are not part of the YAML section: set them on the result.
inline AutoTPConfig autotp_config_from(const TensorParallelConfig& tp) {
  AutoTPConfig c;
  c.tp_size = tp.autotp_size;
  c.preset_model = tp.preset_model;
  c.tp_overlap_comm = tp.tp_overlap_comm;
  c.keep_module_on_host = tp.keep_module_on_host;
  c.tp_grain_size = tp.tp_grain_size;
  if (tp.partition_config) {
    c.has_partition_config = true;
    c.use_default_specs = tp.partition_config->use_default_specs;
    c.strict_mode = tp.partition_config->strict_mode;
    for (size_t i = 0; i < tp.partition_config->layer_specs.size(); ++i)
      c.layer_specs.push_back(layer_spec_from_config(tp.partition_config->layer_specs[i], i));
  }
  return c;
}

}  // namespace autotp
