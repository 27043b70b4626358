// Preset spec tables (reference section 4) and model_type -> preset detection.
#include "autotp/presets.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "core/error.h"

namespace autotp {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Appends specs numbered in order: "preset 'llama' #3".
class PresetBuilder {
 public:
  explicit PresetBuilder(std::string name) : name_(std::move(name)) {}
  PresetBuilder& add(const std::string& pattern, SpecType type) {
    specs_.push_back(make_spec({pattern}, type, origin()));
    return *this;
  }
  PresetBuilder& fused(const std::string& pattern, FusedShape shape) {
    specs_.push_back(make_fused_spec({pattern}, SpecType::Column, std::move(shape), origin()));
    return *this;
  }
  PresetBuilder& grad_allreduce(const std::string& pattern) {
    TPLayerSpec spec;
    spec.patterns = {pattern};
    spec.type = SpecType::Skip;
    spec.grad_allreduce = true;
    spec.origin = origin();
    spec.compile();
    specs_.push_back(std::move(spec));
    return *this;
  }
  std::vector<TPLayerSpec> build() { return std::move(specs_); }

 private:
  std::string origin() const { return fmt::format("preset '{}' #{}", name_, specs_.size() + 1); }
  std::string name_;
  std::vector<TPLayerSpec> specs_;
};

// ((q, kv, kv), -1) from the head counts; an Error when they are unknown.
FusedShape qkv_shape(const std::string& preset, const std::string& weight, const ModelDims& d) {
  AUTOTP_CHECK(d.has_heads(),
               "preset '{}' splits the fused {} by head counts and needs the model's "
               "num_attention_heads, num_key_value_heads and head_dim (got {}, {}, {})",
               preset, weight, d.num_attention_heads, d.num_key_value_heads, d.head_dim);
  const int64_t q = d.num_attention_heads * d.head_dim, kv = d.num_key_value_heads * d.head_dim;
  return {FusedDim::of_parts({q, kv, kv}), FusedDim::infer()};
}

std::vector<TPLayerSpec> llama_like(const std::string& name) {
  return PresetBuilder(name)
      .add(R"(.*\.self_attn\.o_proj\.weight$)", SpecType::Row)
      .add(R"(.*\.self_attn\.[qkv]_proj\.weight$)", SpecType::Column)
      .add(R"(.*\.mlp\.down_proj\.weight$)", SpecType::Row)
      .add(R"(.*\.mlp\.(up|gate)_proj\.weight$)", SpecType::Column)
      .grad_allreduce(R"(.*\.self_attn\.(q_norm|k_norm)\.weight$)")
      .build();
}

}  // namespace

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = {"llama",   "qwen2",   "mistral",     "bloom",
                                                 "chatglm", "mixtral", "deepseek_v2", "phi3"};
  return names;
}

bool is_preset_name(const std::string& name) {
  const std::string n = lower(name);
  return std::find(preset_names().begin(), preset_names().end(), n) != preset_names().end();
}

std::vector<TPLayerSpec> preset_specs(const std::string& name_in, const ModelDims& dims) {
  const std::string name = lower(name_in);
  if (name == "llama" || name == "qwen2" || name == "mistral") return llama_like(name);
  if (name == "bloom") {
    // query_key_value is head-interleaved [q1, k1, v1, q2, ...]: a plain split of the rows
    // lands on head boundaries.
    return PresetBuilder(name)
        .add(R"(.*\.self_attention\.dense\.weight$)", SpecType::Row)
        .add(R"(.*\.self_attention\.query_key_value\.weight$)", SpecType::Column)
        .add(R"(.*\.mlp\.dense_4h_to_h\.weight$)", SpecType::Row)
        .add(R"(.*\.mlp\.dense_h_to_4h\.weight$)", SpecType::Column)
        .build();
  }
  if (name == "chatglm") {
    return PresetBuilder(name)
        .add(R"(.*\.self_attention\.dense\.weight$)", SpecType::Row)
        .fused(R"(.*\.self_attention\.query_key_value\.weight$)",
               qkv_shape(name, "self_attention.query_key_value", dims))
        .add(R"(.*\.mlp\.dense_4h_to_h\.weight$)", SpecType::Row)
        .fused(R"(.*\.mlp\.dense_h_to_4h\.weight$)", {FusedDim::of(2), FusedDim::infer()})
        .build();
  }
  if (name == "mixtral") {
    return PresetBuilder(name)
        .add(R"(.*\.self_attn\.o_proj\.weight$)", SpecType::Row)
        .add(R"(.*\.self_attn\.[qkv]_proj\.weight$)", SpecType::Column)
        .add(R"(.*\.block_sparse_moe\.experts\.\d+\.w2\.weight$)", SpecType::Row)
        .add(R"(.*\.block_sparse_moe\.experts\.\d+\.w[13]\.weight$)", SpecType::Column)
        .add(R"(.*\.block_sparse_moe\.gate\.weight$)", SpecType::Skip)
        .build();
  }
  if (name == "deepseek_v2") {
    return PresetBuilder(name)
        .add(R"(.*\.self_attn\.o_proj\.weight$)", SpecType::Row)
        .add(R"(.*\.self_attn\.(q_a_proj|kv_a_proj_with_mqa)\.weight$)", SpecType::Skip)
        .add(R"(.*\.self_attn\.(q_b_proj|kv_b_proj)\.weight$)", SpecType::Column)
        .add(R"(.*\.mlp\.experts\.\d+\.down_proj\.weight$)", SpecType::Row)
        .add(R"(.*\.mlp\.experts\.\d+\.(up|gate)_proj\.weight$)", SpecType::Column)
        .add(R"(.*\.mlp\.gate\.weight$)", SpecType::Skip)
        .add(R"(.*\.mlp\.shared_experts\.down_proj\.weight$)", SpecType::Row)
        .add(R"(.*\.mlp\.shared_experts\.(up|gate)_proj\.weight$)", SpecType::Column)
        // autotp's addition: the dense MLPs of the first_k_dense_replace layers.
        .add(R"(.*\.mlp\.down_proj\.weight$)", SpecType::Row)
        .add(R"(.*\.mlp\.(up|gate)_proj\.weight$)", SpecType::Column)
        .build();
  }
  if (name == "phi3") {
    return PresetBuilder(name)
        .add(R"(.*\.self_attn\.o_proj\.weight$)", SpecType::Row)
        .fused(R"(.*\.self_attn\.qkv_proj\.weight$)", qkv_shape(name, "self_attn.qkv_proj", dims))
        .add(R"(.*\.mlp\.down_proj\.weight$)", SpecType::Row)
        .fused(R"(.*\.mlp\.gate_up_proj\.weight$)", {FusedDim::of(2), FusedDim::infer()})
        .build();
  }
  std::string known;
  for (const std::string& n : preset_names())
    known += (known.empty() ? "" : ", ") + n;
  AUTOTP_FAIL("unknown AutoTP preset '{}' (known presets: {})", name_in, known);
}

std::optional<std::string> preset_for_model_type(const std::string& model_type) {
  static const std::map<std::string, std::string> table = {
      {"llama", "llama"},     {"mistral", "mistral"},
      {"qwen2", "qwen2"},     {"qwen3", "llama"},
      {"bloom", "bloom"},     {"chatglm", "chatglm"},
      {"mixtral", "mixtral"}, {"deepseek_v2", "deepseek_v2"},
      {"phi3", "phi3"}};
  auto it = table.find(lower(model_type));
  if (it == table.end()) return std::nullopt;
  return it->second;
}

}  // namespace autotp
