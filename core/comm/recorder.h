// Collective descriptors and the recording mode: per-step counts of collectives by kind and
// bytes, plus the sequence log and running hash used to check that every rank agrees.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace autotp {

enum class ReduceOp : uint8_t { Sum, Avg, Max };
enum class CollectiveKind : uint8_t { AllReduce, AllGather, ReduceScatter, Broadcast, Barrier };
inline constexpr int kNumCollectiveKinds = 5;

std::string reduce_op_name(ReduceOp op);                // "sum", "avg", "max"
std::string collective_kind_name(CollectiveKind kind);  // "all_reduce", ...

// What one collective call looks like, in terms every rank of the group must agree on:
// `numel` is rank-invariant (all_reduce/broadcast: the buffer; all_gather: the gathered
// output; reduce_scatter: the full input), `arg` is the dim (gather/scatter) or the root
// (broadcast), and `layout_hash` hashes the per-rank sizes of uneven gathers/scatters.
struct CollectiveDesc {
  CollectiveKind kind = CollectiveKind::Barrier;
  ReduceOp op = ReduceOp::Sum;  // reductions only
  DType dtype = DType::F32;
  int64_t numel = 0;
  int64_t arg = -1;
  uint64_t layout_hash = 0;

  int64_t bytes() const { return numel * static_cast<int64_t>(dtype_size(dtype)); }
  // "all_gather(f32, 24 elements, dim 1)"
  std::string str() const;
  bool operator==(const CollectiveDesc&) const = default;
};

// Calls and bytes per collective kind.
struct CollectiveCounts {
  struct PerKind {
    int64_t calls = 0;
    int64_t bytes = 0;
  };
  std::array<PerKind, kNumCollectiveKinds> by_kind{};

  const PerKind& operator[](CollectiveKind kind) const {
    return by_kind[static_cast<size_t>(kind)];
  }
  int64_t total_calls() const;
  int64_t total_bytes() const;
  // "all_reduce 4 calls / 640 B, all_gather 1 call / 96 B"
  std::string str() const;
};

struct RecordingOptions {
  // Also compare each collective's descriptor across the group before issuing it (one small
  // extra exchange per collective), so a mismatch is reported instead of hanging.
  bool verify_each = false;
};

// The record kept by a communicator in recording mode.
class CollectiveRecorder {
 public:
  explicit CollectiveRecorder(RecordingOptions options) : options_(options) {}

  const RecordingOptions& options() const { return options_; }
  void record(const CollectiveDesc& desc);
  // Closes the current step: its counts move to history() and a new step starts.
  void begin_step();
  int64_t step() const { return static_cast<int64_t>(history_.size()); }
  const CollectiveCounts& current() const { return current_; }
  const std::vector<CollectiveCounts>& history() const { return history_; }

  // Collectives since the last successful sequence check, and their running hash.
  const std::vector<CollectiveDesc>& log() const { return log_; }
  uint64_t sequence_hash() const { return hash_; }
  // Index (since the start) of the next collective to be recorded.
  int64_t sequence_number() const { return checked_ + static_cast<int64_t>(log_.size()); }
  void mark_checked();

 private:
  RecordingOptions options_;
  CollectiveCounts current_;
  std::vector<CollectiveCounts> history_;
  std::vector<CollectiveDesc> log_;
  uint64_t hash_ = 0;
  int64_t checked_ = 0;  // collectives verified by earlier sequence checks
};

// FNV-1a over raw bytes, continuing from `seed`.
uint64_t hash_bytes(const void* data, size_t bytes, uint64_t seed = 1469598103934665603ull);

}  // namespace autotp
