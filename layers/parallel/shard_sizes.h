// Shard sizes exactly as DeepSpeed's tp_shard.get_shard_size computes them: the KV-head rule
// for attention dims, the grain rule, and near-even with the remainder on the low ranks.
// (DESIGN.md files shard-size rules under autotp/; they live here because layers use them.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace autotp {

// The inputs of the rules besides the dim and TP size. A layer copies them when it is
// built, so later changes (another model, another grain) never move its shards.
struct ShardRules {
  int64_t num_kv_heads = 0;  // 0: unset, the KV-head rule never applies
  int64_t grain_size = 1;    // DeepSpeed's tp_grain_size
};

// True when the KV-head rule sizes a dim of `total` for layer `name`: num_kv_heads is set
// and divides total, and the name is not an MLP/lm_head one ("mlp" anywhere, exactly
// "lm_head" or "embed_out", or containing gate_proj, up_proj, down_proj, w1, w2 or w3).
bool uses_kv_head_rule(int64_t total, const std::string& name, const ShardRules& rules);

// Rank `rank`'s share of a dim of `total` over `world` ranks:
//   KV-head rule: whole KV groups, low ranks first: total * g_r / num_kv_heads with
//     g_r = kv / world + (rank < kv % world); ranks beyond the KV heads get 0.
//   grain rule (total >= grain): G = total / grain grains, (G / world + (rank < G % world))
//     grains each; the last rank also takes the remainder total % grain.
//   otherwise: total / world + (rank < total % world).
// With grain 1 both of the last two are near-even with the remainder on the low ranks:
// 10 over 4 gives 3, 3, 2, 2.
int64_t shard_size(int64_t total, int64_t world, int64_t rank, const std::string& name,
                   const ShardRules& rules);

// shard_size for every rank (they sum to `total`).
std::vector<int64_t> shard_sizes(int64_t total, int64_t world, const std::string& name,
                                 const ShardRules& rules);

// Where each rank's shard starts: the exclusive prefix sums of `sizes`.
std::vector<int64_t> shard_offsets(const std::vector<int64_t>& sizes);

}  // namespace autotp
