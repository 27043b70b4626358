// TPLayerSpec checks, pattern compilation and matching.
#include "autotp/tp_layer_spec.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace autotp {

namespace {
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}
}  // namespace

std::string spec_type_name(SpecType type) {
  switch (type) {
    case SpecType::Column:
      return "column";
    case SpecType::Row:
      return "row";
    case SpecType::Skip:
      return "skip";
  }
  return "?";
}

SpecType parse_spec_type(const std::string& text, const std::string& origin) {
  const std::string t = lower(text);
  if (t == "column") return SpecType::Column;
  if (t == "row") return SpecType::Row;
  if (t == "skip") return SpecType::Skip;
  AUTOTP_FAIL("{}: partition_type must be row, column or skip, got '{}'", origin, text);
}

void TPLayerSpec::compile() {
  AUTOTP_CHECK(!patterns.empty(),
               "{}: a layer spec needs at least one pattern (a regular expression matched "
               "against names such as 'model.layers.0.self_attn.q_proj.weight')",
               origin);
  AUTOTP_CHECK(!gather_output || type == SpecType::Column,
               "{}: gather_output applies to column specs only (this one is {})", origin,
               spec_type_name(type));
  AUTOTP_CHECK(!(gather_output && shape),
               "{}: gather_output cannot be combined with shape (gathering a fused output is not "
               "implemented, as in DeepSpeed)",
               origin);
  AUTOTP_CHECK(!grad_allreduce || type == SpecType::Skip,
               "{}: grad_allreduce applies to skip (replicated) specs only; a {}-parallel "
               "parameter's gradient is complete on its own rank",
               origin, spec_type_name(type));
  if (model_types) {
    for (std::string& t : *model_types)
      t = lower(t);
  }
  if (shape) {
    const int64_t ndim = static_cast<int64_t>(shape->size());
    AUTOTP_CHECK(ndim >= 2, "{}: shape {} must have at least 2 entries (the last is in_features)",
                 origin, fused_shape_str(*shape));
    const int64_t pd = partition_dim.value_or(type == SpecType::Row ? ndim - 1 : 0);
    AUTOTP_CHECK(pd >= 0 && pd < ndim, "{}: partition_dim {} is outside shape {} ({} entries)",
                 origin, pd, fused_shape_str(*shape), ndim);
    for (int64_t i = 0; i < ndim; ++i) {
      const FusedDim& dim = (*shape)[static_cast<size_t>(i)];
      AUTOTP_CHECK(dim.kind != FusedDim::Kind::Parts || i == pd,
                   "{}: shape {}: a nested list of sub-sizes is only allowed at partition_dim "
                   "({}), found at entry {}",
                   origin, fused_shape_str(*shape), pd, i);
    }
  } else if (partition_dim) {
    AUTOTP_CHECK(*partition_dim == 0 || *partition_dim == 1,
                 "{}: partition_dim {} of an unfused weight [out, in] must be 0 or 1", origin,
                 *partition_dim);
  }
  auto compiled_patterns = std::make_shared<std::vector<std::regex>>();
  for (const std::string& p : patterns) {
    try {
      compiled_patterns->emplace_back(p, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      AUTOTP_FAIL(
          "{}: pattern '{}' is not a valid regular expression ({}). Patterns are ECMAScript "
          "regexes matched from the start of names such as "
          "'model.layers.0.self_attn.q_proj.weight', e.g. '.*\\.self_attn\\.q_proj\\.weight$'",
          origin, p, e.what());
    }
  }
  regexes_ = std::move(compiled_patterns);
}

bool TPLayerSpec::matches(const std::string& name) const {
  AUTOTP_ASSERT(compiled(), "TPLayerSpec {} used before compile()", origin);
  for (const std::regex& re : *regexes_) {
    if (std::regex_search(name, re, std::regex_constants::match_continuous)) return true;
  }
  return false;
}

bool TPLayerSpec::applies_to(const std::string& model_type) const {
  if (!model_types) return true;
  const std::string t = lower(model_type);
  return !t.empty() && std::find(model_types->begin(), model_types->end(), t) != model_types->end();
}

std::string TPLayerSpec::describe() const {
  std::string pats;
  for (const std::string& p : patterns)
    pats += (pats.empty() ? "`" : ", `") + p + "`";
  std::string out = fmt::format("{} {} {}", origin, spec_type_name(type), pats);
  if (shape) out += " shape " + fused_shape_str(*shape);
  if (gather_output) out += " gather_output";
  if (grad_allreduce) out += " grad_allreduce";
  return out;
}

TPLayerSpec make_spec(std::vector<std::string> patterns, SpecType type, std::string origin) {
  TPLayerSpec spec;
  spec.patterns = std::move(patterns);
  spec.type = type;
  spec.origin = std::move(origin);
  spec.compile();
  return spec;
}

TPLayerSpec make_fused_spec(std::vector<std::string> patterns, SpecType type, FusedShape shape,
                            std::string origin) {
  TPLayerSpec spec;
  spec.patterns = std::move(patterns);
  spec.type = type;
  spec.shape = std::move(shape);
  spec.origin = std::move(origin);
  spec.compile();
  return spec;
}

}  // namespace autotp
