// Helpers of the AutoTP planning tests: plans of a layout for a TP size and source, and
// expectations over every module's decision.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "autotp/autotp_config.h"
#include "autotp/planner.h"
#include "tests/autotp/arch_layouts.h"
#include "tests/core/nn_test_helpers.h"

namespace autotp::testing {

inline AutoTPConfig tp_config(int64_t tp, const std::string& preset = "") {
  AutoTPConfig c;
  c.tp_size = tp;
  c.preset_model = preset;
  return c;
}

// Every module of `plan` must appear in `expected` under its generic path
// ("model.layers.*.mlp.down_proj") with that action, and every expected entry must occur.
inline void expect_actions(const TPPlan& plan, const std::map<std::string, LayerAction>& expected) {
  std::map<std::string, int> seen;
  for (const LayerPlan& l : plan.layers) {
    const std::string g = generic_path(l.path);
    auto it = expected.find(g);
    if (it == expected.end()) {
      ADD_FAILURE() << "no expectation for " << l.path << " (" << layer_action_name(l.action)
                    << ", " << l.rule << ")";
      continue;
    }
    ++seen[g];
    EXPECT_EQ(layer_action_name(l.action), layer_action_name(it->second))
        << l.path << " decided by " << l.rule;
  }
  for (const auto& [g, action] : expected)
    EXPECT_GT(seen[g], 0) << "expected module " << g << " is not in the layout";
}

// The shape every rank holds of parameter `name`.
inline std::vector<Shape> rank_shapes(const TPPlan& plan, const std::string& name) {
  const ParamPlan* p = plan.param(name);
  EXPECT_NE(p, nullptr) << "no parameter " << name;
  return p == nullptr ? std::vector<Shape>{} : p->rank_shapes;
}

inline std::vector<Shape> same_on(int64_t ranks, const Shape& shape) {
  return std::vector<Shape>(static_cast<size_t>(ranks), shape);
}

inline std::string all_text(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines)
    out += l + "\n";
  return out;
}

}  // namespace autotp::testing
