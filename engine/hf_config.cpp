// config.json as ModelConfig's text map (reading) and as transformers writes it (export), with
// JSON types chosen per key so floats stay floats ("rope_theta": 10000.0).
#include "engine/hf_config.h"

#include <cerrno>
#include <cstdlib>
#include <map>
#include <set>

#include "core/error.h"

namespace autotp {

namespace {

// A scalar's text as ModelConfigMap holds it; arrays and objects as compact JSON text.
std::string scalar_text(const json::Value& v) {
  switch (v.kind()) {
    case json::Kind::Null:
      return "null";
    case json::Kind::Bool:
      return v.as_bool() ? "true" : "false";
    case json::Kind::Number:
      return v.number_text();
    case json::Kind::String:
      return v.as_string();
    case json::Kind::Array:
    case json::Kind::Object:
      return v.dump();
  }
  AUTOTP_ASSERT(false, "unknown JSON kind {}", static_cast<int>(v.kind()));
}

// Keys whose values HF's config classes hold as Python floats.
const std::set<std::string>& float_keys() {
  static const std::set<std::string> keys = {
      "rms_norm_eps",    "rope_theta",       "initializer_range", "factor",
      "low_freq_factor", "high_freq_factor", "attention_dropout"};
  return keys;
}

bool parses_as_int(const std::string& text) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  (void)std::strtoll(text.c_str(), &end, 10);
  return errno == 0 && end == text.c_str() + text.size();
}

// One to_map() value as the JSON value transformers would write for `key`.
json::Value typed_value(const std::string& key, const std::string& text) {
  if (text == "null") return json::Value();
  if (text == "true") return json::Value(true);
  if (text == "false") return json::Value(false);
  if (float_keys().count(key) > 0) {
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    AUTOTP_ASSERT(!text.empty() && end == text.c_str() + text.size(),
                  "model config key '{}' has the non-numeric value '{}'", key, text);
    return json::Value(value);
  }
  if (parses_as_int(text))
    return json::Value(static_cast<int64_t>(std::strtoll(text.c_str(), nullptr, 10)));
  return json::Value(text);
}

}  // namespace

ModelConfigMap model_config_map_from_json(const json::Value& config) {
  AUTOTP_CHECK(config.is_object(), "{}: a model config must be a JSON object, got {}",
               config.source(), json::kind_name(config.kind()));
  ModelConfigMap map;
  for (size_t i = 0; i < config.size(); ++i) {
    const std::string& key = config.keys()[i];
    const json::Value& value = config.elements()[i];
    if (!value.is_object()) {
      map.scalars[key] = scalar_text(value);
      continue;
    }
    std::map<std::string, std::string>& object = map.objects[key];
    for (size_t k = 0; k < value.size(); ++k) {
      object[value.keys()[k]] = scalar_text(value.elements()[k]);
    }
  }
  return map;
}

std::string hf_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "float32";
    case DType::F64:
      return "float64";
    case DType::BF16:
      return "bfloat16";
    case DType::F16:
      return "float16";
    case DType::I32:
    case DType::I64:
      break;
  }
  AUTOTP_FAIL("model weights must be floating point, got dtype {}", dtype_name(dtype));
}

json::Value hf_config_json(const ModelConfig& config, DType dtype) {
  const ModelConfigMap map = config.to_map();
  // Every key once, sorted (json.dumps(sort_keys=True)).
  std::map<std::string, json::Value> members;
  for (const auto& [key, text] : map.scalars)
    members[key] = typed_value(key, text);
  for (const auto& [key, object] : map.objects) {
    json::Value nested = json::Value::object();
    for (const auto& [k, text] : object)
      nested.set(k, typed_value(k, text));
    members[key] = std::move(nested);
  }
  members["architectures"] = json::Value::array().push(config.architecture());
  members["dtype"] = hf_dtype_name(dtype);
  members["torch_dtype"] = hf_dtype_name(dtype);
  json::Value out = json::Value::object();
  for (auto& [key, value] : members)
    out.set(key, std::move(value));
  return out;
}

}  // namespace autotp
