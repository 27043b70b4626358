// ZeroAdamW: AdamW with its state partitioned over the DP group (ZeRO stage 1: moments;
// stage 2: moments and gradients), updating each rank's flat slice and all-gathering weights.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "core/comm/communicator.h"
#include "engine/optimizer.h"
#include "engine/zero_partition.h"

namespace autotp {

// The whole optimizer state over the flat parameter space, however it was partitioned.
struct FlatAdamWState {
  int64_t step = 0;
  Tensor exp_avg;     // [total]
  Tensor exp_avg_sq;  // [total]
};

// Each DP rank owns the contiguous slice layout().partition_* of the flat parameter space and
// keeps AdamW's moments for it only. After backward (or, after arm(), from within it),
// reduce_gradients() leaves this rank's slice of the DP-mean gradient in partition_grad()
// (stage 1: all_reduce of the full gradients, then the slice is copied; stage 2:
// reduce_scatter per bucket, the full gradients dropped). step() applies the AdamW kernel to the
// slice piece by piece (per-parameter weight decay), then all_gathers the updated slices into every
// rank's parameters, so all ranks hold identical weights. Every parameter steps together (one step
// count); a missing gradient counts as zeros (as DeepSpeed's ZeRO does). Collective over `dp`.
class ZeroAdamW {
 public:
  ZeroAdamW(NamedTensors params, AdamWOptions options, int stage, std::shared_ptr<Communicator> dp,
            int64_t bucket_bytes);

  void reduce_gradients();
  // Overlap: launch the gradient buckets from backward (GradientReducer::arm) until the next
  // reduce_gradients(). Call before the last backward pass of a step.
  void arm() {
    reducer_.arm(stage_ == 2 ? ReduceCollective::ReduceScatter : ReduceCollective::AllReduce);
  }
  // Sum of squares of this rank's gradient slice, counting parameter i only when counts[i]
  // (empty: all). The caller all-reduces it over DP (and TP) for the global norm.
  double partition_grad_sq_sum(const std::vector<bool>& counts = {}) const;
  void scale_partition_grad(double coef);
  void step();
  void zero_grad();

  void set_lr(double lr) { options_.lr = lr; }
  double lr() const { return options_.lr; }
  int stage() const { return stage_; }
  int64_t step_count() const { return step_; }
  const FlatParamLayout& layout() const { return reducer_.layout(); }
  const NamedTensors& params() const { return params_; }
  const Tensor& partition_grad() const { return grad_; }
  const Tensor& exp_avg() const { return exp_avg_; }        // [partition size]
  const Tensor& exp_avg_sq() const { return exp_avg_sq_; }  // [partition size]
  int64_t num_buckets() const { return reducer_.num_buckets(); }
  int64_t buckets_launched_from_hooks() const { return reducer_.buckets_launched_from_hooks(); }

  // Per-rank bytes of optimizer state (both moments) and of gradients kept between backward
  // and step (stage 1: the full gradients; stage 2: the slice).
  int64_t optimizer_state_bytes() const;
  int64_t gradient_bytes() const;

  // Installs this rank's slice of `full` (e.g. gathered from another layout's partitions).
  void load_full_state(const FlatAdamWState& full);
  // The same, parameter by parameter, without the full state: `moments(i)` returns parameter
  // i's (exp_avg, exp_avg_sq), each with its numel, and is called only for the parameters that
  // overlap this rank's slice. step 0: a fresh state (zeros; `moments` is not called).
  void load_state_by_parameter(int64_t step,
                               const std::function<std::pair<Tensor, Tensor>(size_t)>& moments);
  // Collective: the whole state, gathered from every rank's slice.
  FlatAdamWState gather_full_state() const;

 private:
  NamedTensors params_;
  AdamWOptions options_;
  int stage_;
  std::shared_ptr<Communicator> dp_;
  GradientReducer reducer_;
  int64_t step_ = 0;
  Tensor exp_avg_, exp_avg_sq_, grad_;  // [partition size]
};

// The state of a per-parameter AdamW (every parameter must have stepped the same number of
// times, or none) as one flat state over `layout`, and back.
FlatAdamWState flatten_adamw_state(const AdamW& optimizer, const FlatParamLayout& layout);
NamedTensors unflatten_adamw_state(const FlatAdamWState& state, const NamedTensors& params,
                                   const FlatParamLayout& layout);

}  // namespace autotp
