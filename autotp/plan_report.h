// The plan report: per-rank memory of weights, gradients and optimizer state for a TPPlan,
// and the plan as readable text or as one JSON document (what `autotp plan` prints).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autotp/planner.h"
#include "core/io/json.h"

namespace autotp {

// Bytes per parameter element, and ZeRO's partitioning over the data-parallel group.
struct MemoryModel {
  int64_t weight_bytes = 4;     // the training weights (f32; bf16: 2)
  int64_t grad_bytes = 4;       // their gradients
  int64_t master_bytes = 0;     // an f32 master copy (bf16 training: 4)
  int64_t optimizer_bytes = 8;  // AdamW exp_avg + exp_avg_sq in f32
  int64_t zero_stage = 0;       // 1: optimizer state and master split over DP; 2: grads too
  int64_t dp_size = 1;
};

struct RankMemory {
  int64_t parameters = 0;  // elements held by the rank
  int64_t weight_bytes = 0;
  int64_t grad_bytes = 0;
  int64_t optimizer_bytes = 0;  // AdamW moments (+ master weights)
  int64_t total_bytes() const { return weight_bytes + grad_bytes + optimizer_bytes; }
};

// One entry per TP rank (ZeRO partitions rounded up).
std::vector<RankMemory> plan_memory(const TPPlan& plan, const MemoryModel& memory);

// "1.5 GiB", "48.0 KiB", "512 B"
std::string format_bytes(int64_t bytes);

// Readable report: header (TP size, where the rules came from), one line per module with a
// 2-D weight (path, partition type, rule, shard shape per rank), grad_allreduce parameters,
// per-rank parameters and memory, warnings, and errors with their fixes.
std::string plan_to_text(const TPPlan& plan, const std::vector<RankMemory>& memory);

// One JSON document: {"tp_size", "model_type", "source", "rules_from", "valid", "errors",
// "warnings", "unmatched", "parameters": {name: {"partition", "sharded", "full_shape",
// "shards" (per rank), "rule", "grad_allreduce"[, "tied_to"]}}, "ranks": [{"rank",
// "parameters", "weight_bytes", "grad_bytes", "optimizer_bytes", "total_bytes"}]}.
json::Value plan_to_json(const TPPlan& plan, const std::vector<RankMemory>& memory);

}  // namespace autotp
