// Plan memory estimates and the text / JSON renderings of a TPPlan.
#include "autotp/plan_report.h"

#include <algorithm>

namespace autotp {

namespace {

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

json::Value shape_json(const Shape& s) {
  json::Value a = json::Value::array();
  for (int64_t d : s)
    a.push(d);
  return a;
}

std::string group_digits(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

// "[16, 32] x4" when every rank holds the same shape, else each rank's.
std::string shards_text(const std::vector<Shape>& shapes) {
  if (shapes.empty()) return "";
  const bool same =
      std::all_of(shapes.begin(), shapes.end(), [&](const Shape& s) { return s == shapes[0]; });
  if (same) return fmt::format("{} x{}", shape_str(shapes[0]), shapes.size());
  std::string out;
  for (size_t r = 0; r < shapes.size(); ++r)
    out += (r == 0 ? "" : " ") + fmt::format("r{}:{}", r, shape_str(shapes[r]));
  return out;
}

}  // namespace

std::vector<RankMemory> plan_memory(const TPPlan& plan, const MemoryModel& m) {
  std::vector<RankMemory> out;
  const int64_t dp = std::max<int64_t>(1, m.dp_size);
  for (int64_t n : plan.rank_parameters) {
    RankMemory r;
    r.parameters = n;
    r.weight_bytes = n * m.weight_bytes;
    const int64_t optimizer = n * (m.optimizer_bytes + m.master_bytes);
    r.optimizer_bytes = m.zero_stage >= 1 ? ceil_div(optimizer, dp) : optimizer;
    r.grad_bytes = m.zero_stage >= 2 ? ceil_div(n * m.grad_bytes, dp) : n * m.grad_bytes;
    out.push_back(r);
  }
  return out;
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string plan_to_text(const TPPlan& plan, const std::vector<RankMemory>& memory) {
  std::string out = fmt::format(
      "AutoTP plan: tensor-parallel size {}, model_type '{}'\n"
      "rules from: {}\n"
      "shard rules: num_key_value_heads {}, tp_grain_size {}, {}{}\n\n",
      plan.tp_size, plan.model_type, plan.selection.description, plan.rules.num_kv_heads,
      plan.rules.grain_size,
      plan.training
          ? (plan.allow_uneven ? "training (uneven shards allowed)" : "training (even shards)")
          : "inference (uneven shards allowed)",
      plan.overlap_comm ? ", tp_overlap_comm" : "");
  size_t width = 5;
  for (const LayerPlan& l : plan.layers)
    width = std::max(width, l.path.size());
  out += fmt::format("{:<{}}  {:<10}  {:<28}  {}\n", "layer", width, "partition",
                     "weight shard per rank", "rule");
  for (const LayerPlan& l : plan.layers) {
    const ParamPlan* w = plan.param(l.path.empty() ? "weight" : l.path + ".weight");
    if (w == nullptr || w->full_shape.size() != 2) continue;
    out += fmt::format("{:<{}}  {:<10}  {:<28}  {}\n", l.path, width,
                       layer_action_name(l.action) + (l.gather_output ? "+gather" : ""),
                       shards_text(w->rank_shapes), l.rule);
  }
  const std::vector<std::string> ga = plan.grad_allreduce_params();
  if (!ga.empty()) {
    out += "\nreplicated, gradient all-reduced over the TP group:\n";
    for (const std::string& n : ga)
      out += "  " + n + "\n";
  }
  out += "\nper TP rank (weights, gradients, optimizer state = AdamW moments + master):\n";
  for (size_t r = 0; r < memory.size(); ++r) {
    const RankMemory& m = memory[r];
    out += fmt::format(
        "  rank {}: {} parameters, weights {}, gradients {}, optimizer {}, total {}\n", r,
        group_digits(m.parameters), format_bytes(m.weight_bytes), format_bytes(m.grad_bytes),
        format_bytes(m.optimizer_bytes), format_bytes(m.total_bytes()));
  }
  if (!plan.warnings.empty()) {
    out += "\nwarnings:\n";
    for (const std::string& w : plan.warnings)
      out += "  - " + w + "\n";
  }
  if (!plan.errors.empty()) {
    out += "\nerrors (the plan is not valid):\n";
    for (const std::string& e : plan.errors)
      out += "  - " + e + "\n";
  } else {
    out += "\nthe plan is valid\n";
  }
  return out;
}

json::Value plan_to_json(const TPPlan& plan, const std::vector<RankMemory>& memory) {
  auto strings = [](const std::vector<std::string>& items) {
    json::Value a = json::Value::array();
    for (const std::string& s : items)
      a.push(s);
    return a;
  };
  json::Value params = json::Value::object();
  for (const ParamPlan& p : plan.params) {
    json::Value shards = json::Value::array();
    for (const Shape& s : p.rank_shapes)
      shards.push(shape_json(s));
    json::Value entry = json::Value::object();
    entry.set("partition", layer_action_name(p.action))
        .set("sharded", p.sharded)
        .set("full_shape", shape_json(p.full_shape))
        .set("shards", std::move(shards))
        .set("rule", p.rule)
        .set("grad_allreduce", p.grad_allreduce);
    if (!p.tied_to.empty()) entry.set("tied_to", p.tied_to);
    params.set(p.name, std::move(entry));
  }
  json::Value ranks = json::Value::array();
  for (size_t r = 0; r < memory.size(); ++r) {
    json::Value e = json::Value::object();
    e.set("rank", static_cast<int64_t>(r))
        .set("parameters", memory[r].parameters)
        .set("weight_bytes", memory[r].weight_bytes)
        .set("grad_bytes", memory[r].grad_bytes)
        .set("optimizer_bytes", memory[r].optimizer_bytes)
        .set("total_bytes", memory[r].total_bytes());
    ranks.push(std::move(e));
  }
  json::Value doc = json::Value::object();
  doc.set("tp_size", plan.tp_size)
      .set("model_type", plan.model_type)
      .set("source", plan_source_name(plan.selection.source))
      .set("rules_from", plan.selection.description)
      .set("valid", plan.valid())
      .set("errors", strings(plan.errors))
      .set("warnings", strings(plan.warnings))
      .set("unmatched", strings(plan.unmatched))
      .set("parameters", std::move(params))
      .set("ranks", std::move(ranks));
  return doc;
}

}  // namespace autotp
