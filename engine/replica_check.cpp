// Replica check: per-parameter FNV-1a hashes exchanged over the world and compared by role.
#include "engine/replica_check.h"

#include <cstring>
#include <vector>

#include "core/error.h"
#include "layers/parallel/tensor_parallel_layer.h"

namespace autotp {

namespace {

uint64_t hash_bytes(const Tensor& t) {
  const Tensor c = t.device().is_cpu() ? t.contiguous() : t.to(Device::cpu()).contiguous();
  const auto* bytes = static_cast<const uint8_t*>(c.raw_data());
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < static_cast<size_t>(c.numel()) * c.itemsize(); ++i)
    h = (h ^ bytes[i]) * 1099511628211ULL;
  return h;
}

}  // namespace

void check_replicas_identical(const Module& model, const ParallelGrid& grid,
                              const std::string& when) {
  const auto sharded = sharded_parameters(model);
  const auto params = model.named_parameters();
  // [tp rank, hash of parameter 0, hash of parameter 1, ...]
  std::vector<uint64_t> mine = {static_cast<uint64_t>(grid.tp()->rank())};
  for (const auto& [name, p] : params)
    mine.push_back(hash_bytes(p.detach()));
  std::vector<uint8_t> bytes(mine.size() * sizeof(uint64_t));
  std::memcpy(bytes.data(), mine.data(), bytes.size());
  const std::vector<std::vector<uint8_t>> all = grid.world()->exchange_bytes(bytes);
  const int me = grid.world()->rank();
  for (size_t r = 0; r < all.size(); ++r) {
    AUTOTP_CHECK(all[r].size() == bytes.size(),
                 "replica check {}: rank {} has {} parameters, rank {} has {}", when, r,
                 all[r].size() / sizeof(uint64_t) - 1, me, params.size());
    std::vector<uint64_t> theirs(mine.size());
    std::memcpy(theirs.data(), all[r].data(), bytes.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const bool is_shard = sharded.count(params[i].first) > 0;
      if (is_shard && theirs[0] != mine[0]) continue;  // another TP rank's shard
      AUTOTP_CHECK(theirs[i + 1] == mine[i + 1],
                   "replica check {}: '{}' ({}) differs between rank {} and rank {}: the copies "
                   "that must stay bit-identical have diverged (a missing gradient all-reduce "
                   "or a nondeterministic kernel)",
                   when, params[i].first,
                   is_shard ? "a TP shard, compared across DP replicas" : "replicated", me, r);
    }
  }
}

}  // namespace autotp
