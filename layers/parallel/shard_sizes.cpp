// DeepSpeed's shard-size rules (reference section 5.8).
#include "layers/parallel/shard_sizes.h"

#include "core/error.h"

namespace autotp {

bool uses_kv_head_rule(int64_t total, const std::string& name, const ShardRules& rules) {
  if (rules.num_kv_heads <= 0 || total % rules.num_kv_heads != 0) return false;
  if (name.find("mlp") != std::string::npos) return false;
  if (name == "lm_head" || name == "embed_out") return false;
  for (const char* mlp_name : {"gate_proj", "up_proj", "down_proj", "w1", "w2", "w3"}) {
    if (name.find(mlp_name) != std::string::npos) return false;
  }
  return true;
}

int64_t shard_size(int64_t total, int64_t world, int64_t rank, const std::string& name,
                   const ShardRules& rules) {
  AUTOTP_CHECK(total >= 0, "shard size of '{}': dim size {} is negative", name, total);
  AUTOTP_CHECK(world >= 1 && rank >= 0 && rank < world,
               "shard size of '{}': rank {} of a tensor-parallel group of {} is not valid", name,
               rank, world);
  AUTOTP_CHECK(rules.grain_size >= 1, "shard size of '{}': tp_grain_size {} must be at least 1",
               name, rules.grain_size);
  if (uses_kv_head_rule(total, name, rules)) {
    const int64_t kv = rules.num_kv_heads;
    const int64_t groups = kv / world + (rank < kv % world ? 1 : 0);
    return total * groups / kv;
  }
  if (total >= rules.grain_size) {
    const int64_t grain = rules.grain_size;
    const int64_t grains = total / grain;
    int64_t size = (grains / world + (rank < grains % world ? 1 : 0)) * grain;
    if (rank == world - 1) size += total % grain;
    return size;
  }
  return total / world + (rank < total % world ? 1 : 0);
}

std::vector<int64_t> shard_sizes(int64_t total, int64_t world, const std::string& name,
                                 const ShardRules& rules) {
  std::vector<int64_t> sizes;
  int64_t sum = 0;
  for (int64_t r = 0; r < world; ++r) {
    sizes.push_back(shard_size(total, world, r, name, rules));
    sum += sizes.back();
  }
  AUTOTP_ASSERT(sum == total, "shard sizes of '{}' sum to {} instead of {}", name, sum, total);
  return sizes;
}

std::vector<int64_t> shard_offsets(const std::vector<int64_t>& sizes) {
  std::vector<int64_t> offsets;
  int64_t at = 0;
  for (int64_t s : sizes) {
    offsets.push_back(at);
    at += s;
  }
  return offsets;
}

}  // namespace autotp
