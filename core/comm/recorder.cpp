// Recording mode: descriptor printing, per-kind counts, and the running sequence hash.
#include "core/comm/recorder.h"

#include <fmt/format.h>

namespace autotp {

std::string reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return "sum";
    case ReduceOp::Avg:
      return "avg";
    case ReduceOp::Max:
      return "max";
  }
  return "?";
}

std::string collective_kind_name(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::AllReduce:
      return "all_reduce";
    case CollectiveKind::AllGather:
      return "all_gather";
    case CollectiveKind::ReduceScatter:
      return "reduce_scatter";
    case CollectiveKind::Broadcast:
      return "broadcast";
    case CollectiveKind::Barrier:
      return "barrier";
  }
  return "?";
}

std::string CollectiveDesc::str() const {
  switch (kind) {
    case CollectiveKind::Barrier:
      return "barrier()";
    case CollectiveKind::AllReduce:
      return fmt::format("all_reduce({}, {}, {} elements)", reduce_op_name(op), dtype_name(dtype),
                         numel);
    case CollectiveKind::ReduceScatter:
      return fmt::format("reduce_scatter({}, {}, {} elements, dim {}, layout {:x})",
                         reduce_op_name(op), dtype_name(dtype), numel, arg, layout_hash);
    case CollectiveKind::AllGather:
      return fmt::format("all_gather({}, {} elements, dim {}, layout {:x})", dtype_name(dtype),
                         numel, arg, layout_hash);
    case CollectiveKind::Broadcast:
      return fmt::format("broadcast({}, {} elements, root {})", dtype_name(dtype), numel, arg);
  }
  return "?";
}

int64_t CollectiveCounts::total_calls() const {
  int64_t n = 0;
  for (const PerKind& k : by_kind)
    n += k.calls;
  return n;
}

int64_t CollectiveCounts::total_bytes() const {
  int64_t n = 0;
  for (const PerKind& k : by_kind)
    n += k.bytes;
  return n;
}

std::string CollectiveCounts::str() const {
  std::string out;
  for (int i = 0; i < kNumCollectiveKinds; ++i) {
    const PerKind& k = by_kind[static_cast<size_t>(i)];
    if (k.calls == 0) continue;
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {} call{} / {} B", collective_kind_name(static_cast<CollectiveKind>(i)),
                       k.calls, k.calls == 1 ? "" : "s", k.bytes);
  }
  return out.empty() ? "no collectives" : out;
}

uint64_t hash_bytes(const void* data, size_t bytes, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed;
  for (size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

void CollectiveRecorder::record(const CollectiveDesc& desc) {
  CollectiveCounts::PerKind& k = current_.by_kind[static_cast<size_t>(desc.kind)];
  ++k.calls;
  k.bytes += desc.bytes();
  log_.push_back(desc);
  // Hash the fields one by one (no struct padding bytes).
  const uint8_t small[3] = {static_cast<uint8_t>(desc.kind), static_cast<uint8_t>(desc.op),
                            static_cast<uint8_t>(desc.dtype)};
  hash_ = hash_bytes(small, sizeof(small), hash_);
  hash_ = hash_bytes(&desc.numel, sizeof(desc.numel), hash_);
  hash_ = hash_bytes(&desc.arg, sizeof(desc.arg), hash_);
  hash_ = hash_bytes(&desc.layout_hash, sizeof(desc.layout_hash), hash_);
}

void CollectiveRecorder::begin_step() {
  history_.push_back(current_);
  current_ = CollectiveCounts{};
}

void CollectiveRecorder::mark_checked() {
  checked_ += static_cast<int64_t>(log_.size());
  log_.clear();
  hash_ = 0;
}

}  // namespace autotp
