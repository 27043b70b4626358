// make_plan: spec / parser decisions per module, the lm_head and tie rules, shard sizes per
// rank, evenness and zero-width checks, column/row consistency, per-head norm gradients.
#include "autotp/planner.h"

#include <algorithm>
#include <map>
#include <numeric>

#include <fmt/ranges.h>

#include "autotp/parser.h"
#include "core/error.h"
#include "layers/parallel/split_plan.h"

namespace autotp {

const LayerPlan* TPPlan::layer(const std::string& path) const {
  for (const LayerPlan& l : layers) {
    if (l.path == path) return &l;
  }
  return nullptr;
}

const ParamPlan* TPPlan::param(const std::string& name) const {
  for (const ParamPlan& p : params) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::vector<std::string> TPPlan::grad_allreduce_params() const {
  std::vector<std::string> out;
  for (const ParamPlan& p : params) {
    if (p.grad_allreduce) out.push_back(p.name);
  }
  return out;
}

std::vector<std::string> TPPlan::sharded_layers() const {
  std::vector<std::string> out;
  for (const LayerPlan& l : layers) {
    if (l.action != LayerAction::Replicated) out.push_back(l.path);
  }
  return out;
}

void throw_if_invalid(const TPPlan& plan) {
  if (plan.valid()) return;
  std::string text;
  for (const std::string& e : plan.errors)
    text += "\n  - " + e;
  AUTOTP_FAIL("the tensor-parallel plan for autotp_size {} ({}) is not valid:{}", plan.tp_size,
              plan.selection.description, text);
}

namespace {

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (const std::string& s : items)
    out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string join_sizes(const std::vector<int64_t>& sizes) {
  std::vector<std::string> parts;
  for (int64_t s : sizes)
    parts.push_back(std::to_string(s));
  return join(parts);
}

// The TP sizes up to 64 that divide n, as text ("1, 2, 4, 8").
std::string divisors_text(int64_t n) {
  std::vector<int64_t> d;
  for (int64_t k = 1; k <= std::min<int64_t>(n, 64); ++k) {
    if (n % k == 0) d.push_back(k);
  }
  return join_sizes(d);
}

// Problems keyed by the layer's generic path, so the repeated blocks report once.
class ProblemList {
 public:
  // `what` may name `path` itself: the repeated form names its generic path instead.
  void add(const std::string& path, const std::string& what) {
    const std::string generic = generic_path(path);
    std::string generic_what = what;
    for (size_t at = generic_what.find(path); !path.empty() && at != std::string::npos;
         at = generic_what.find(path, at + generic.size())) {
      generic_what.replace(at, path.size(), generic);
    }
    const std::string key = generic + "\n" + generic_what;
    auto it = index_.find(key);
    if (it != index_.end()) {
      ++items_[it->second].count;
      return;
    }
    index_[key] = items_.size();
    items_.push_back({path, what, generic_what, 1});
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    for (const Item& i : items_) {
      out.push_back(i.count > 1 ? fmt::format("{} (in {} layers): {}", generic_path(i.path),
                                              i.count, i.generic_what)
                                : fmt::format("{}: {}", i.path, i.what));
    }
    return out;
  }

 private:
  struct Item {
    std::string path, what, generic_what;
    int64_t count;
  };
  std::vector<Item> items_;
  std::map<std::string, size_t> index_;
};

// "a, b (and 3 more)" over generic paths, keeping order.
std::string summarize_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> generic;
  std::map<std::string, int64_t> count;
  for (const std::string& p : paths) {
    const std::string g = generic_path(p);
    if (count[g]++ == 0) generic.push_back(g);
  }
  std::vector<std::string> parts;
  for (const std::string& g : generic)
    parts.push_back(count[g] > 1 ? fmt::format("{} (x{})", g, count[g]) : g);
  return join(parts);
}

// The sharded state of one column/row layer while planning.
struct LayerSplit {
  SubParamLayout layout;
  SplitPlan plan;
  bool fused = false;
  Shape weight_shape;
};

class Planner {
 public:
  Planner(const std::vector<ModuleShape>& modules, const AutoTPConfig& config,
          const ModelDims& dims)
      : modules_(modules), config_(config), dims_(dims) {}

  TPPlan run() {
    plan_.tp_size = config_.effective_tp_size();
    plan_.model_type = dims_.model_type;
    plan_.selection = select_specs(config_, dims_);
    plan_.rules = ShardRules{dims_.num_key_value_heads, config_.tp_grain_size};
    plan_.training = config_.training;
    plan_.allow_uneven = config_.allow_uneven;
    plan_.overlap_comm = config_.tp_overlap_comm;
    spec_hits_.assign(plan_.selection.specs.size(), 0);
    if (plan_.selection.source == PlanSource::Parser) {
      for (ParserDecision& d : parse_layers(modules_, dims_))
        parsed_[d.path] = std::move(d);
      if (find_blocks(modules_).empty()) {
        plan_.warnings.push_back(
            "the automatic parser found no repeated blocks (ModuleList children such as "
            "'model.layers.0'): nothing is sharded; give layer specs in "
            "tensor_parallel.partition_config");
      }
    }
    for (const ModuleShape& m : modules_)
      plan_.layers.push_back(decide(m));
    for (size_t i = 0; i < modules_.size(); ++i)
      compute_split(modules_[i], plan_.layers[i]);
    check_consistency();
    check_siblings_alike();
    for (size_t i = 0; i < modules_.size(); ++i)
      add_params(modules_[i], plan_.layers[i]);
    mark_per_head_norms();
    finish();
    return std::move(plan_);
  }

 private:
  // The first spec that applies to the model and matches `name`, or -1.
  int first_spec(const std::string& name) {
    const auto& specs = plan_.selection.specs;
    for (size_t i = 0; i < specs.size(); ++i) {
      if (specs[i].applies_to(dims_.model_type) && specs[i].matches(name)) {
        ++spec_hits_[i];
        return static_cast<int>(i);
      }
    }
    return -1;
  }

  LayerPlan decide(const ModuleShape& m) {
    LayerPlan lp;
    lp.path = m.path;
    lp.type_name = m.type_name;
    const ModuleKind kind = module_kind(m.type_name);
    const Shape* w = m.parameter_shape("weight");
    const bool candidate = w != nullptr && w->size() == 2;
    if (kind == ModuleKind::ParallelLinear) {
      lp.rule = "already tensor-parallel";
      errors_.add(m.path, fmt::format("is already a {}: the model was sharded before (apply the "
                                      "AutoTP pass once, to the full model)",
                                      m.type_name));
      return lp;
    }
    if (!candidate) {
      lp.rule = kind == ModuleKind::Norm ? "default: norms stay replicated"
                                         : "default: no 2-D weight, stays replicated";
      return lp;
    }
    if (plan_.selection.source == PlanSource::Parser) {
      auto it = parsed_.find(m.path);
      if (kind == ModuleKind::Linear && it != parsed_.end()) {
        lp.action = it->second.action;
        lp.shape = it->second.shape;
        lp.rule = it->second.reason;
      } else {
        lp.rule = default_rule(m, kind);
      }
    } else {
      const int index = first_spec(m.path + ".weight");
      if (index < 0) {
        if (kind == ModuleKind::Embedding || is_lm_head(m.path)) {
          lp.rule = default_rule(m, kind);
        } else {
          lp.rule = "unmatched: no spec matches, stays replicated";
          plan_.unmatched.push_back(m.path);
          if (config_.strict_mode) {
            errors_.add(m.path,
                        fmt::format("strict_mode: no layer spec matches '{}.weight' ({} {}); add a "
                                    "layer spec for it (partition_type skip keeps it replicated)",
                                    m.path, m.type_name, shape_str(*w)));
          }
        }
      } else {
        const TPLayerSpec& spec = plan_.selection.specs[static_cast<size_t>(index)];
        lp.rule = spec.describe();
        if (spec.type != SpecType::Skip) {
          if (kind == ModuleKind::Embedding) {
            errors_.add(m.path, fmt::format("is an embedding but {} splits it: vocab-parallel "
                                            "embeddings are not implemented, embeddings stay "
                                            "replicated (use partition_type skip)",
                                            spec.origin));
          } else if (kind != ModuleKind::Linear) {
            errors_.add(m.path, fmt::format("is a {}, not a Linear, but {} splits it: only Linear "
                                            "layers are replaced (a custom forward could not be "
                                            "kept); use partition_type skip",
                                            m.type_name, spec.origin));
          } else {
            lp.action = spec.type == SpecType::Column ? LayerAction::Column : LayerAction::Row;
            lp.shape = spec.shape;
            lp.partition_dim = spec.partition_dim;
            lp.gather_output = spec.gather_output;
          }
        }
      }
    }
    if (lp.action == LayerAction::Replicated) return lp;
    if (!m.weight_tied_to.empty()) {
      plan_.warnings.push_back(fmt::format(
          "{}.weight is tied to {}: it stays replicated and tied although {} asked for {} (a "
          "tied vocab-parallel head is not implemented)",
          m.path, m.weight_tied_to, lp.rule, layer_action_name(lp.action)));
      lp.rule += " -> replicated: tied to " + m.weight_tied_to;
      lp.action = LayerAction::Replicated;
      lp.shape.reset();
      lp.gather_output = false;
    } else if (is_lm_head(m.path) && lp.action == LayerAction::Row) {
      errors_.add(m.path,
                  "a row-parallel output head would need a sharded input, but it reads "
                  "the replicated hidden state: use partition_type column with "
                  "gather_output: true (or skip)");
    } else if (is_lm_head(m.path) && !lp.gather_output) {
      errors_.add(m.path,
                  "a column-parallel output head without gather_output leaves each rank "
                  "a slice of the logits, but the loss needs all of them: set "
                  "gather_output: true (or use partition_type skip)");
    }
    return lp;
  }

  std::string default_rule(const ModuleShape& m, ModuleKind kind) const {
    if (kind == ModuleKind::Embedding) return "default: embeddings stay replicated";
    if (is_lm_head(m.path)) return "default: lm_head stays replicated";
    if (kind == ModuleKind::Norm) return "default: norms stay replicated";
    if (kind != ModuleKind::Linear) return "default: not a Linear, stays replicated";
    return "default: stays replicated";
  }

  void compute_split(const ModuleShape& m, LayerPlan& lp) {
    if (lp.action == LayerAction::Replicated) return;
    const bool column = lp.action == LayerAction::Column;
    const Shape ws = *m.parameter_shape("weight");
    LayerSplit split;
    split.weight_shape = ws;
    try {
      if (lp.shape) {
        const int64_t ndim = static_cast<int64_t>(lp.shape->size());
        const int64_t pd = lp.partition_dim.value_or(column ? 0 : ndim - 1);
        split.layout = infer_subparam_layout(ws, *lp.shape, pd, m.path);
        split.fused = true;
      } else {
        const int64_t pd = lp.partition_dim.value_or(column ? 0 : 1);
        AUTOTP_CHECK(pd == 0 || pd == 1, "partition_dim {} of an unfused weight must be 0 or 1",
                     pd);
        split.layout = plain_layout(ws, pd);
      }
    } catch (const Error& e) {
      errors_.add(m.path, fmt::format("{} (weight {}; rule {})", e.what(), shape_str(ws), lp.rule));
      lp.action = LayerAction::Replicated;
      return;
    }
    const int64_t last = static_cast<int64_t>(split.layout.logical_shape.size()) - 1;
    if (column ? split.layout.partition_dim >= last : split.layout.partition_dim != last) {
      errors_.add(
          m.path,
          fmt::format("a {}-parallel layer splits {}, but partition_dim is {} of the view "
                      "{} (rule {})",
                      layer_action_name(lp.action),
                      column ? "an output dim (not the last)" : "the input dim (the last)",
                      split.layout.partition_dim, shape_str(split.layout.logical_shape), lp.rule));
      lp.action = LayerAction::Replicated;
      return;
    }
    const int64_t tp = plan_.tp_size;
    split.plan = make_split_plan(split.layout, tp, m.path, plan_.rules);
    lp.rank_sizes = split.plan.rank_sizes();
    check_sizes(m, lp, split);
    splits_[m.path] = std::move(split);
  }

  void check_sizes(const ModuleShape& m, const LayerPlan& lp, const LayerSplit& split) {
    const int64_t tp = plan_.tp_size;
    const bool column = lp.action == LayerAction::Column;
    const char* features = column ? "out_features" : "in_features";
    const int64_t kv = plan_.rules.num_kv_heads;
    for (size_t j = 0; j < split.plan.widths.size(); ++j) {
      const std::vector<int64_t>& w = split.plan.widths[j];
      const int64_t total = split.layout.sub_sizes[j];
      const bool kv_rule = uses_kv_head_rule(total, m.path, plan_.rules);
      const std::string what =
          split.layout.sub_sizes.size() > 1
              ? fmt::format("sub-parameter {} (size {}) of its {} {}", j, total, features,
                            split.weight_shape[column ? 0 : 1])
              : fmt::format("its {} {}", features, total);
      std::vector<std::string> idle;
      for (int64_t r = 0; r < tp; ++r) {
        if (w[static_cast<size_t>(r)] == 0) idle.push_back(std::to_string(r));
      }
      if (!idle.empty()) {
        if (kv_rule) {
          errors_.add(m.path,
                      fmt::format("ranks {} of autotp_size {} would hold no part of {}: the split "
                                  "follows whole KV heads and num_key_value_heads {} < {}. autotp "
                                  "does not leave ranks idle as DeepSpeed does; use an autotp_size "
                                  "that divides num_key_value_heads ({})",
                                  join(idle), tp, what, kv, tp, divisors_text(kv)));
        } else {
          errors_.add(m.path, fmt::format("ranks {} of autotp_size {} would hold no part of {}: "
                                          "use an autotp_size of at most {}",
                                          join(idle), tp, what, total));
        }
        return;
      }
      const bool even = std::all_of(w.begin(), w.end(), [&](int64_t x) { return x == w[0]; });
      if (!even && plan_.training && !plan_.allow_uneven) {
        const int64_t must_divide = kv_rule ? kv : total;
        errors_.add(m.path,
                    fmt::format("{} does not split evenly over autotp_size {} (sizes {}{}). "
                                "Training needs even shards: use an autotp_size that divides {} "
                                "{} ({}), or allow uneven shards (AutoTPConfig::allow_uneven)",
                                what, tp, join_sizes(w), kv_rule ? ", by whole KV heads" : "",
                                kv_rule ? "num_key_value_heads" : "the size", must_divide,
                                divisors_text(must_divide)));
        return;
      }
    }
  }

  // Siblings that feed the same computation must be split alike: q_proj / k_proj / v_proj
  // (attention pairs each query head with its KV head) and gate_proj / up_proj.
  void check_siblings_alike() {
    const std::vector<std::vector<std::string>> groups = {{"q_proj", "k_proj", "v_proj"},
                                                          {"gate_proj", "up_proj"}};
    std::map<std::string, std::vector<const LayerPlan*>> by_parent;
    for (const LayerPlan& l : plan_.layers)
      by_parent[parent_path(l.path)].push_back(&l);
    for (const auto& [parent, members] : by_parent) {
      for (const std::vector<std::string>& group : groups) {
        std::vector<const LayerPlan*> found;
        for (const LayerPlan* l : members) {
          if (std::find(group.begin(), group.end(), last_component(l->path)) != group.end()) {
            found.push_back(l);
          }
        }
        bool alike = true;
        std::string detail;
        for (const LayerPlan* l : found) {
          alike = alike && l->action == found[0]->action;
          detail += fmt::format("{}{} {}", detail.empty() ? "" : ", ", last_component(l->path),
                                layer_action_name(l->action));
        }
        if (!alike) {
          errors_.add(found[0]->path,
                      fmt::format("{} must be split alike (all column, or all replicated), got {}: "
                                  "add specs so they match the same way",
                                  join(group), detail));
        }
      }
    }
  }

  // In each container, a row layer's input split must line up with the output split of
  // every unfused column layer beside it (equal, or proportional to the full sizes).
  void check_consistency() {
    std::map<std::string, std::vector<size_t>> by_parent;
    for (size_t i = 0; i < plan_.layers.size(); ++i) {
      const LayerPlan& l = plan_.layers[i];
      if (l.action == LayerAction::Replicated || l.gather_output) continue;
      if (splits_.count(l.path) == 0 || splits_.at(l.path).fused) continue;
      by_parent[parent_path(l.path)].push_back(i);
    }
    for (const auto& [parent, members] : by_parent) {
      for (size_t ri : members) {
        const LayerPlan& row = plan_.layers[ri];
        if (row.action != LayerAction::Row) continue;
        const int64_t row_in = splits_.at(row.path).weight_shape[1];
        for (size_t ci : members) {
          const LayerPlan& col = plan_.layers[ci];
          if (col.action != LayerAction::Column) continue;
          const int64_t col_out = splits_.at(col.path).weight_shape[0];
          bool ok = true;
          for (int64_t r = 0; r < plan_.tp_size; ++r) {
            const int64_t c = col.rank_sizes[static_cast<size_t>(r)];
            const int64_t w = row.rank_sizes[static_cast<size_t>(r)];
            ok = ok && c * row_in == w * col_out;
          }
          if (!ok) {
            errors_.add(col.path,
                        fmt::format("its output split ({} of {}) does not line up with the input "
                                    "split of {} ({} of {}): a column layer and the row layer it "
                                    "feeds must cut on the same (head) boundaries; give both "
                                    "layers names the same shard rule treats alike, or a fused "
                                    "shape",
                                    join_sizes(col.rank_sizes), col_out, last_component(row.path),
                                    join_sizes(row.rank_sizes), row_in));
          }
        }
      }
    }
  }

  void add_params(const ModuleShape& m, const LayerPlan& lp) {
    const int64_t tp = plan_.tp_size;
    auto it = splits_.find(m.path);
    const LayerSplit* split =
        (lp.action != LayerAction::Replicated && it != splits_.end()) ? &it->second : nullptr;
    for (const auto& [local, shape] : m.parameters) {
      ParamPlan p;
      p.name = m.path.empty() ? local : m.path + "." + local;
      p.module_path = m.path;
      p.full_shape = shape;
      p.action = split != nullptr ? lp.action : LayerAction::Replicated;
      p.rule = lp.rule;
      if (local == "weight") p.tied_to = m.weight_tied_to;
      if (split != nullptr && local == "weight") {
        p.sharded = true;
        for (int64_t r = 0; r < tp; ++r) {
          const Shape view = split->plan.local_view(r);
          int64_t rows = 1;
          for (size_t d = 0; d + 1 < view.size(); ++d)
            rows *= view[d];
          p.rank_shapes.push_back({rows, view.back()});
        }
      } else if (split != nullptr && local == "bias" && split->layout.bias_partitioned) {
        p.sharded = true;
        const SplitPlan out = output_split_plan(split->plan);
        for (int64_t r = 0; r < tp; ++r)
          p.rank_shapes.push_back({shape_numel(out.local_view(r))});
      } else {
        p.rank_shapes.assign(static_cast<size_t>(tp), shape);
        if (split == nullptr && plan_.selection.source != PlanSource::Parser) {
          const int index = first_spec(p.name);
          if (index >= 0 && plan_.selection.specs[static_cast<size_t>(index)].grad_allreduce) {
            p.grad_allreduce = true;
            p.rule = plan_.selection.specs[static_cast<size_t>(index)].describe();
          }
        }
      }
      plan_.params.push_back(std::move(p));
    }
  }

  // q_norm / k_norm beside a column-split projection: per-head norms get grad_allreduce;
  // full-width ones cannot be computed on shards.
  void mark_per_head_norms() {
    for (const ModuleShape& m : modules_) {
      if (module_kind(m.type_name) != ModuleKind::Norm) continue;
      const std::string last = last_component(m.path);
      std::string proj;
      if (last == "q_norm" || last == "query_norm") proj = "q_proj";
      if (last == "k_norm" || last == "key_norm") proj = "k_proj";
      if (proj.empty()) continue;
      const std::string sibling =
          parent_path(m.path).empty() ? proj : parent_path(m.path) + "." + proj;
      const LayerPlan* lp = plan_.layer(sibling);
      if (lp == nullptr || lp->action != LayerAction::Column || lp->gather_output) continue;
      const Shape* w = m.parameter_shape("weight");
      if (w == nullptr) continue;
      const int64_t width = shape_numel(*w);
      const int64_t out = splits_.at(sibling).weight_shape[0];
      if (width >= out) {
        errors_.add(m.path, fmt::format("normalizes the whole {} output ({} features), which is "
                                        "column-split: it cannot be computed on shards; keep {} "
                                        "replicated (partition_type skip)",
                                        proj, width, proj));
        continue;
      }
      for (ParamPlan& p : plan_.params) {
        if (p.module_path != m.path || p.grad_allreduce) continue;
        p.grad_allreduce = true;
        p.rule = fmt::format(
            "auto: per-head norm applied to the column-split {} heads: "
            "replicated, gradient summed over the TP group",
            proj);
      }
    }
  }

  void finish() {
    plan_.rank_parameters.assign(static_cast<size_t>(plan_.tp_size), 0);
    for (const ParamPlan& p : plan_.params) {
      if (!p.tied_to.empty()) continue;
      for (int64_t r = 0; r < plan_.tp_size; ++r)
        plan_.rank_parameters[static_cast<size_t>(r)] +=
            shape_numel(p.rank_shapes[static_cast<size_t>(r)]);
    }
    if (!plan_.unmatched.empty() && !config_.strict_mode) {
      plan_.warnings.push_back(fmt::format(
          "{} Linear layer(s) matched no spec and stay replicated (the model is only partly "
          "sharded): {}. Add layer specs for them, or partition_type skip to keep them "
          "replicated knowingly; strict_mode makes this an error",
          plan_.unmatched.size(), summarize_paths(plan_.unmatched)));
    }
    if (plan_.selection.custom_specs) {
      for (size_t i = 0; i < config_.layer_specs.size() && i < spec_hits_.size(); ++i) {
        if (spec_hits_[i] == 0) {
          const TPLayerSpec& spec = plan_.selection.specs[i];
          // Say when the spec's model_types filter, not its patterns, left it unused.
          const std::string why =
              spec.applies_to(dims_.model_type)
                  ? std::string()
                  : fmt::format(" (its model_types [{}] exclude this {} model)",
                                fmt::join(*spec.model_types, ", "), dims_.model_type);
          plan_.warnings.push_back(
              fmt::format("{} matched no parameter of the model{}", spec.describe(), why));
        }
      }
    }
    if (plan_.tp_size > 1 && plan_.sharded_layers().empty()) {
      plan_.warnings.push_back(
          fmt::format("autotp_size is {} but no layer is sharded: every rank holds the whole model",
                      plan_.tp_size));
    }
    plan_.errors = errors_.lines();
  }

  const std::vector<ModuleShape>& modules_;
  const AutoTPConfig& config_;
  const ModelDims& dims_;
  TPPlan plan_;
  ProblemList errors_;
  std::vector<int64_t> spec_hits_;
  std::map<std::string, ParserDecision> parsed_;
  std::map<std::string, LayerSplit> splits_;
};

}  // namespace

TPPlan make_plan(const std::vector<ModuleShape>& modules, const AutoTPConfig& config,
                 const ModelDims& dims) {
  return Planner(modules, config, dims).run();
}

}  // namespace autotp
