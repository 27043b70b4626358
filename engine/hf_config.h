// Hugging Face config.json <-> ModelConfig: the JSON object as the text map ModelConfig::from_map
// reads, and the config.json that transformers' save_pretrained would write for a ModelConfig.
#pragma once

#include <string>

#include "core/dtype.h"
#include "core/io/json.h"
#include "models/model_config.h"

namespace autotp {

// The JSON object `config` (a parsed config.json) as ModelConfig::from_map's input: scalars as
// their JSON text (numbers as written, true/false, null), one level of nested objects
// (rope_scaling, rope_parameters) as text maps, and arrays (or deeper objects) as JSON text.
ModelConfigMap model_config_map_from_json(const json::Value& config);

// transformers' name of a floating dtype: "float32", "float64", "bfloat16", "float16".
std::string hf_dtype_name(DType dtype);

// The config.json object for `config` with weights saved in `dtype`: ModelConfig::to_map()'s
// keys typed as JSON (floats written with a fraction, as Python does), plus "architectures",
// "dtype" (transformers >= 4.56) and "torch_dtype" (older versions); keys sorted, as
// save_pretrained writes them.
json::Value hf_config_json(const ModelConfig& config, DType dtype);

}  // namespace autotp
