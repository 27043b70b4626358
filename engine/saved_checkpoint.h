// SavedCheckpoint: a training checkpoint of any layout opened for reading one tensor at a time
// (the manifest and every file's header up front; a parameter's pieces read when asked for).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "engine/checkpoint.h"
#include "layers/parallel/split_plan.h"

namespace autotp {

// Which of a parameter's tensors to read.
enum class SavedTensor { Weight, ExpAvg, ExpAvgSq };

// What a load read: a check that it stayed within one parameter at a time.
struct CheckpointReadStats {
  int64_t bytes_read = 0;  // tensor data read from the checkpoint's files
  // The most bytes of tensors read from the files, or built from them (an assembled full
  // tensor, a rank's slice, a dtype conversion), alive at the same time.
  int64_t peak_bytes_held = 0;
};

// Counts the bytes of the tensors it was shown that are still alive (by their storage), and
// the peak of that count.
class HeldBytesMeter {
 public:
  void track(const Tensor& t);
  int64_t held() const;
  int64_t peak() const { return peak_; }

 private:
  std::vector<std::weak_ptr<Storage>> alive_;
  int64_t peak_ = 0;
};

// Opening reads state.json and the header of every weight and optimizer file, and checks them
// against each other (each file present, every TP rank holding every tensor with a shard of
// the manifest's split, the ZeRO partitions fitting their flat state), without reading tensor
// data beyond step counts. Errors name the checkpoint and the file or tensor. Move-only (it
// keeps the files open).
class SavedCheckpoint {
 public:
  explicit SavedCheckpoint(std::string dir);
  ~SavedCheckpoint();
  SavedCheckpoint(SavedCheckpoint&&) noexcept;
  SavedCheckpoint& operator=(SavedCheckpoint&&) noexcept;

  const std::string& dir() const { return dir_; }
  const TrainingState& state() const { return state_; }
  int64_t tp_size() const { return tp_; }
  int64_t dp_size() const { return dp_; }
  int64_t zero_stage() const { return zero_stage_; }
  std::string layout() const;  // "tp 2 x dp 2, ZeRO stage 2"

  // The saved tensors (parameters and buffers), in save order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const;
  // Parameters with AdamW state (absent: never stepped), in save order.
  const std::vector<std::string>& moment_names() const { return moment_names_; }
  bool has_moments(const std::string& name) const { return steps_.count(name) > 0; }
  int64_t step(const std::string& name) const;
  // The dtype `name`'s weight or moment was saved in (from the headers).
  DType dtype(const std::string& name, SavedTensor which) const { return saved_dtype(name, which); }
  // The unsharded shape of `name`'s weight or moment (from the headers and the manifest).
  Shape full_shape(const std::string& name, SavedTensor which) const;
  // The split it was saved with; null when every TP rank holds it whole.
  const SplitPlan* saved_split(const std::string& name) const;

  // The unsharded tensor, assembled piece by piece: holds the result and one piece.
  Tensor read_full(const std::string& name, SavedTensor which);
  // Rank `rank`'s shard of the unsharded tensor under `plan` (shape plan.local_view(rank)):
  // the saved piece itself when the split is the saved one; else built from the overlapping
  // saved pieces when `plan` cuts the same view and sub-parameters; else taken from the full
  // tensor.
  Tensor read_shard(const std::string& name, SavedTensor which, const SplitPlan& plan,
                    int64_t rank);

  // Counts a tensor the caller built from what was read (e.g. a dtype conversion).
  void track(const Tensor& t) { meter_.track(t); }
  CheckpointReadStats stats() const { return {bytes_read_, meter_.peak()}; }

 private:
  struct TpRankFiles;
  struct SavedSplitInfo {
    Shape shape;
    SplitPlan plan;
  };

  // TP rank t's piece of `name`'s weight or moment, shaped as saved.
  Tensor read_piece(const std::string& name, SavedTensor which, int64_t t);
  DType saved_dtype(const std::string& name, SavedTensor which) const;
  Tensor tracked(Tensor t);

  std::string dir_;
  TrainingState state_;
  int64_t tp_ = 1, dp_ = 1, zero_stage_ = 0;
  std::vector<TpRankFiles> ranks_;
  std::vector<std::string> names_, moment_names_;
  std::map<std::string, int64_t> steps_;  // by parameter name, for those with state
  std::map<std::string, SavedSplitInfo> splits_;
  int64_t bytes_read_ = 0;
  HeldBytesMeter meter_;
};

}  // namespace autotp
