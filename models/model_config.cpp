// ModelConfig parsing from text maps (HF defaults per model_type, typed values, unknown-key
// reporting with the closest known key), validation and conversion back to config.json keys.
#include "models/model_config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>

#include "core/error.h"

namespace autotp {

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items)
    out += (out.empty() ? "" : ", ") + item;
  return out;
}

bool is_null(const std::string& text) {
  return text.empty() || text == "null" || text == "~";
}

int64_t parse_int(const std::string& key, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  AUTOTP_CHECK(!text.empty() && end == text.c_str() + text.size() && errno == 0,
               "model config: '{}' must be an integer, got '{}'", key, text);
  return static_cast<int64_t>(value);
}

double parse_double(const std::string& key, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  AUTOTP_CHECK(
      !text.empty() && end == text.c_str() + text.size() && errno == 0 && std::isfinite(value),
      "model config: '{}' must be a finite number, got '{}'", key, text);
  return value;
}

bool parse_bool(const std::string& key, const std::string& text) {
  if (text == "true" || text == "True") return true;
  if (text == "false" || text == "False") return false;
  AUTOTP_FAIL("model config: '{}' must be true or false, got '{}'", key, text);
}

// Levenshtein distance, for "did you mean" suggestions.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] =
          std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest(const std::string& key, const std::set<std::string>& known) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const std::string& k : known) {
    const size_t d = edit_distance(key, k);
    if (d < best_distance) {
      best_distance = d;
      best = k;
    }
  }
  return best;
}

// Per model_type: HF's class defaults for the keys that may be absent from a config.json.
struct TypeDefaults {
  std::string architecture;
  int64_t max_position_embeddings;
  std::optional<int64_t> sliding_window;  // mistral's default window; qwen: see use_sliding_window
  bool has_attention_bias_key;            // llama, qwen3
  bool has_mlp_bias_key;                  // llama
  bool has_use_sliding_window_key;        // qwen2, qwen3
};

const std::map<std::string, TypeDefaults>& type_defaults() {
  static const std::map<std::string, TypeDefaults> table = {
      {"llama", {"LlamaForCausalLM", 2048, std::nullopt, true, true, false}},
      {"mistral", {"MistralForCausalLM", 4096 * 32, 4096, false, false, false}},
      {"qwen2", {"Qwen2ForCausalLM", 32768, std::nullopt, false, false, true}},
      {"qwen3", {"Qwen3ForCausalLM", 32768, std::nullopt, true, false, true}},
  };
  return table;
}

const TypeDefaults& defaults_for(const std::string& model_type) {
  auto it = type_defaults().find(model_type);
  AUTOTP_CHECK(it != type_defaults().end(), "model config: unknown model_type '{}' (supported: {})",
               model_type, join(supported_model_types()));
  return it->second;
}

// Keys HF writes into config.json that do not change the model autotp builds.
const std::set<std::string>& ignored_keys() {
  static const std::set<std::string> keys = {"_name_or_path",
                                             "architectures",
                                             "auto_map",
                                             "bos_token_id",
                                             "eos_token_id",
                                             "pad_token_id",
                                             "torch_dtype",
                                             "dtype",
                                             "transformers_version",
                                             "use_cache",
                                             "pretraining_tp",
                                             "output_attentions",
                                             "output_hidden_states",
                                             "return_dict",
                                             "max_window_layers",
                                             "layer_types",
                                             "attention_bias",
                                             "mlp_bias",
                                             "sliding_window",
                                             "use_sliding_window",
                                             "attention_dropout",
                                             "partial_rotary_factor"};
  return keys;
}

const std::set<std::string> kRopeKeys = {"rope_type",
                                         "type",
                                         "rope_theta",
                                         "factor",
                                         "low_freq_factor",
                                         "high_freq_factor",
                                         "original_max_position_embeddings",
                                         "partial_rotary_factor"};

// The values still to be consumed, with the name each came from ("rope_scaling.factor").
class KeyReader {
 public:
  explicit KeyReader(const ModelConfigMap& map) : map_(map) {}

  // The text of scalar `key`, or nullopt when absent or null; marks the key used.
  std::optional<std::string> get(const std::string& key) {
    used_.insert(key);
    auto it = map_.scalars.find(key);
    if (it == map_.scalars.end() || is_null(it->second)) return std::nullopt;
    return it->second;
  }
  std::string require(const std::string& key) {
    std::optional<std::string> v = get(key);
    if (!v.has_value()) {
      // A key of the config within two edits of the missing one is most likely its misspelling.
      std::set<std::string> present;
      for (const auto& [name, value] : map_.scalars)
        present.insert(name);
      const std::string near = closest(key, present);
      AUTOTP_CHECK(near.empty() || edit_distance(key, near) > 2,
                   "model config: required key '{}' is missing (the config has '{}': a "
                   "misspelling?)",
                   key, near);
      AUTOTP_FAIL("model config: required key '{}' is missing", key);
    }
    return *v;
  }
  void read_int(const std::string& key, int64_t& out) {
    if (auto v = get(key)) out = parse_int(key, *v);
  }
  void read_double(const std::string& key, double& out) {
    if (auto v = get(key)) out = parse_double(key, *v);
  }
  void read_bool(const std::string& key, bool& out) {
    if (auto v = get(key)) out = parse_bool(key, *v);
  }
  const std::set<std::string>& used() const { return used_; }

 private:
  const ModelConfigMap& map_;
  std::set<std::string> used_;
};

// rope_scaling (HF < 5) and rope_parameters (HF >= 5) merged; the same key in both must agree.
std::map<std::string, std::string> merged_rope_map(const ModelConfigMap& map) {
  std::map<std::string, std::string> merged;
  for (const char* object : {"rope_scaling", "rope_parameters"}) {
    auto it = map.objects.find(object);
    if (it == map.objects.end()) continue;
    for (const auto& [key, value] : it->second) {
      if (is_null(value)) continue;
      auto [pos, inserted] = merged.emplace(key, value);
      if (inserted || pos->second == value) continue;
      char* end_a = nullptr;
      char* end_b = nullptr;
      const double a = std::strtod(pos->second.c_str(), &end_a);
      const double b = std::strtod(value.c_str(), &end_b);
      AUTOTP_CHECK(*end_a == '\0' && *end_b == '\0' && a == b,
                   "model config: rope_scaling.{} = '{}' contradicts rope_parameters.{} = '{}'",
                   key, pos->second, key, value);
    }
  }
  return merged;
}

void read_rope(KeyReader& reader, const ModelConfigMap& map, ModelConfig& c,
               std::vector<std::string>& unknown) {
  const std::map<std::string, std::string> rope = merged_rope_map(map);
  auto rope_value = [&](const std::string& key) -> std::optional<std::string> {
    auto it = rope.find(key);
    return it == rope.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  // rope_theta: top level (HF < 5) or inside rope_parameters (HF >= 5).
  const std::optional<std::string> top_theta = reader.get("rope_theta");
  const std::optional<std::string> nested_theta = rope_value("rope_theta");
  if (top_theta) c.rope_theta = parse_double("rope_theta", *top_theta);
  if (nested_theta) {
    const double theta = parse_double("rope_parameters.rope_theta", *nested_theta);
    AUTOTP_CHECK(!top_theta || theta == c.rope_theta,
                 "model config: rope_theta = {} contradicts rope_parameters.rope_theta = {}",
                 c.rope_theta, theta);
    c.rope_theta = theta;
  }
  for (const char* key : {"partial_rotary_factor"}) {
    std::optional<std::string> v = reader.get(key);
    if (!v) v = rope_value(key);
    if (v) {
      AUTOTP_CHECK(parse_double(key, *v) == 1.0,
                   "model config: partial_rotary_factor {} is not supported (only 1.0: rope on "
                   "the whole head)",
                   *v);
    }
  }
  std::string type = "default";
  if (auto v = rope_value("rope_type")) {
    type = *v;
  } else if (auto t = rope_value("type")) {
    type = *t;
  }
  AUTOTP_CHECK(type == "default" || type == "llama3",
               "model config: rope_scaling type '{}' is not supported (supported: default, llama3)",
               type);
  c.rope_scaling = RopeScaling{};
  c.rope_scaling.rope_type = type;
  std::set<std::string> allowed = {"rope_type", "type", "rope_theta", "partial_rotary_factor"};
  if (type == "llama3") {
    for (const char* key : {"factor", "low_freq_factor", "high_freq_factor"}) {
      AUTOTP_CHECK(rope_value(key).has_value(),
                   "model config: rope_scaling of type llama3 needs '{}' (it has: {})", key, [&] {
                     std::vector<std::string> keys;
                     for (const auto& [k, v] : rope)
                       keys.push_back(k);
                     return join(keys);
                   }());
    }
    c.rope_scaling.factor = parse_double("rope_scaling.factor", *rope_value("factor"));
    c.rope_scaling.low_freq_factor =
        parse_double("rope_scaling.low_freq_factor", *rope_value("low_freq_factor"));
    c.rope_scaling.high_freq_factor =
        parse_double("rope_scaling.high_freq_factor", *rope_value("high_freq_factor"));
    if (auto v = rope_value("original_max_position_embeddings")) {
      c.rope_scaling.original_max_position_embeddings =
          parse_int("rope_scaling.original_max_position_embeddings", *v);
    }  // absent: 0, resolved to max_position_embeddings (HF's rule)
    allowed.insert(
        {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
  }
  for (const auto& [key, value] : rope) {
    if (allowed.count(key) == 0) unknown.push_back("rope_scaling." + key);
  }
}

}  // namespace

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> types = [] {
    std::vector<std::string> out;
    for (const auto& [name, d] : type_defaults())
      out.push_back(name);
    return out;
  }();
  return types;
}

ModelConfig ModelConfig::from_map(const ModelConfigMap& map,
                                  std::vector<std::string>* unknown_keys) {
  KeyReader reader(map);
  ModelConfig c;
  c.model_type = reader.require("model_type");
  const TypeDefaults& d = defaults_for(c.model_type);

  c.vocab_size = parse_int("vocab_size", reader.require("vocab_size"));
  c.hidden_size = parse_int("hidden_size", reader.require("hidden_size"));
  c.intermediate_size = parse_int("intermediate_size", reader.require("intermediate_size"));
  c.num_hidden_layers = parse_int("num_hidden_layers", reader.require("num_hidden_layers"));
  c.num_attention_heads = parse_int("num_attention_heads", reader.require("num_attention_heads"));
  reader.read_int("num_key_value_heads", c.num_key_value_heads);  // absent: 0, resolved below
  reader.read_int("head_dim", c.head_dim);
  reader.read_double("rms_norm_eps", c.rms_norm_eps);
  c.max_position_embeddings = d.max_position_embeddings;
  reader.read_int("max_position_embeddings", c.max_position_embeddings);
  reader.read_bool("tie_word_embeddings", c.tie_word_embeddings);
  if (d.has_attention_bias_key) reader.read_bool("attention_bias", c.attention_bias);
  if (d.has_mlp_bias_key) reader.read_bool("mlp_bias", c.mlp_bias);
  reader.read_double("initializer_range", c.initializer_range);
  if (auto act = reader.get("hidden_act")) c.hidden_act = *act;
  if (auto dropout = reader.get("attention_dropout")) {
    AUTOTP_CHECK(parse_double("attention_dropout", *dropout) == 0.0,
                 "model config: attention_dropout {} is not supported (only 0)", *dropout);
  }

  // Sliding windows: mistral applies sliding_window (default 4096) to every layer; qwen2/qwen3
  // only with use_sliding_window (default false).
  const std::optional<std::string> window_text = reader.get("sliding_window");
  const bool window_key_present = map.scalars.count("sliding_window") > 0;
  std::optional<int64_t> window = d.sliding_window;
  if (window_key_present) window.reset();
  if (window_text) window = parse_int("sliding_window", *window_text);
  if (d.has_use_sliding_window_key) {
    bool use_sliding_window = false;
    reader.read_bool("use_sliding_window", use_sliding_window);
    if (!window_key_present) window = 4096;
    if (!use_sliding_window) window.reset();
  }
  c.sliding_window = c.model_type == "llama" ? std::nullopt : window;

  std::vector<std::string> unknown;
  read_rope(reader, map, c, unknown);

  // Keys neither read nor known to be irrelevant.
  std::set<std::string> known = reader.used();
  known.insert(ignored_keys().begin(), ignored_keys().end());
  known.insert({"rope_scaling", "rope_parameters"});
  for (const auto& [key, value] : map.scalars) {
    if (known.count(key) == 0) unknown.push_back(key);
  }
  for (const auto& [key, value] : map.objects) {
    if (key != "rope_scaling" && key != "rope_parameters" && known.count(key) == 0) {
      unknown.push_back(key);
    }
  }
  if (unknown_keys != nullptr) {
    *unknown_keys = unknown;
  } else if (!unknown.empty()) {
    const std::string& key = unknown.front();
    const bool in_rope = key.rfind("rope_scaling.", 0) == 0;
    AUTOTP_FAIL(
        "model config ({}): unknown key '{}' (did you mean '{}'?)", c.model_type, key,
        in_rope ? "rope_scaling." + closest(key.substr(13), kRopeKeys) : closest(key, known));
  }
  c.resolve_defaults();
  c.validate();
  return c;
}

void ModelConfig::resolve_defaults() {
  if (num_key_value_heads == 0) num_key_value_heads = num_attention_heads;
  if (head_dim == 0 && num_attention_heads > 0) {
    AUTOTP_CHECK(hidden_size % num_attention_heads == 0,
                 "model config: hidden_size ({}) must be a multiple of num_attention_heads ({}) "
                 "unless head_dim is given",
                 hidden_size, num_attention_heads);
    head_dim = hidden_size / num_attention_heads;
  }
  if (rope_scaling.rope_type == "llama3" && rope_scaling.original_max_position_embeddings == 0) {
    rope_scaling.original_max_position_embeddings = max_position_embeddings;
  }
}

void ModelConfig::validate() const {
  defaults_for(model_type);  // reports an unknown model_type with the supported ones
  auto positive = [](const char* key, int64_t value) {
    AUTOTP_CHECK(value > 0, "model config: '{}' must be positive, got {}", key, value);
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("max_position_embeddings", max_position_embeddings);
  AUTOTP_CHECK(num_attention_heads % num_key_value_heads == 0,
               "model config: num_attention_heads ({}) must be a multiple of num_key_value_heads "
               "({})",
               num_attention_heads, num_key_value_heads);
  AUTOTP_CHECK(head_dim > 0,
               "model config: head_dim must be positive, got {} (without head_dim, hidden_size {} "
               "must be a multiple of num_attention_heads {})",
               head_dim, hidden_size, num_attention_heads);
  AUTOTP_CHECK(head_dim % 2 == 0, "model config: head_dim ({}) must be even for rotary embeddings",
               head_dim);
  AUTOTP_CHECK(rms_norm_eps > 0.0, "model config: 'rms_norm_eps' must be positive, got {}",
               rms_norm_eps);
  AUTOTP_CHECK(rope_theta > 0.0, "model config: 'rope_theta' must be positive, got {}", rope_theta);
  AUTOTP_CHECK(initializer_range >= 0.0,
               "model config: 'initializer_range' must not be negative, got {}", initializer_range);
  AUTOTP_CHECK(hidden_act == "silu",
               "model config: hidden_act '{}' is not supported (supported: silu)", hidden_act);
  if (sliding_window) positive("sliding_window", *sliding_window);
  if (rope_scaling.rope_type == "llama3") {
    const RopeScaling& r = rope_scaling;
    AUTOTP_CHECK(r.factor >= 1.0, "model config: rope_scaling.factor must be >= 1, got {}",
                 r.factor);
    AUTOTP_CHECK(r.low_freq_factor > 0.0,
                 "model config: rope_scaling.low_freq_factor must be positive, got {}",
                 r.low_freq_factor);
    AUTOTP_CHECK(
        r.high_freq_factor > r.low_freq_factor,
        "model config: rope_scaling.high_freq_factor ({}) must exceed low_freq_factor ({})",
        r.high_freq_factor, r.low_freq_factor);
    positive("rope_scaling.original_max_position_embeddings", r.original_max_position_embeddings);
  } else {
    AUTOTP_CHECK(
        rope_scaling.rope_type == "default",
        "model config: rope_scaling type '{}' is not supported (supported: default, llama3)",
        rope_scaling.rope_type);
  }
}

std::string ModelConfig::architecture() const {
  return defaults_for(model_type).architecture;
}

ModelConfigMap ModelConfig::to_map() const {
  const TypeDefaults& d = defaults_for(model_type);
  ModelConfigMap m;
  auto num = [](double v) { return fmt::format("{}", v); };
  auto& s = m.scalars;
  s["model_type"] = model_type;
  s["vocab_size"] = std::to_string(vocab_size);
  s["hidden_size"] = std::to_string(hidden_size);
  s["intermediate_size"] = std::to_string(intermediate_size);
  s["num_hidden_layers"] = std::to_string(num_hidden_layers);
  s["num_attention_heads"] = std::to_string(num_attention_heads);
  s["num_key_value_heads"] = std::to_string(num_key_value_heads);
  s["head_dim"] = std::to_string(head_dim);
  s["rms_norm_eps"] = num(rms_norm_eps);
  s["rope_theta"] = num(rope_theta);
  s["max_position_embeddings"] = std::to_string(max_position_embeddings);
  s["tie_word_embeddings"] = tie_word_embeddings ? "true" : "false";
  if (d.has_attention_bias_key) s["attention_bias"] = attention_bias ? "true" : "false";
  if (d.has_mlp_bias_key) s["mlp_bias"] = mlp_bias ? "true" : "false";
  s["initializer_range"] = num(initializer_range);
  s["hidden_act"] = hidden_act;
  if (model_type != "llama") {
    s["sliding_window"] = sliding_window ? std::to_string(*sliding_window) : "null";
  }
  if (d.has_use_sliding_window_key) s["use_sliding_window"] = sliding_window ? "true" : "false";
  if (rope_scaling.rope_type != "default") {
    auto& r = m.objects["rope_scaling"];
    r["rope_type"] = rope_scaling.rope_type;
    r["factor"] = num(rope_scaling.factor);
    r["low_freq_factor"] = num(rope_scaling.low_freq_factor);
    r["high_freq_factor"] = num(rope_scaling.high_freq_factor);
    r["original_max_position_embeddings"] =
        std::to_string(rope_scaling.original_max_position_embeddings);
  }
  return m;
}

}  // namespace autotp
