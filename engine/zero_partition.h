// Data-parallel gradients over a flat parameter space: FlatParamLayout (every parameter's
// offset, and each DP rank's contiguous partition) and GradientReducer (bucketed averaging).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/comm/communicator.h"
#include "engine/optimizer.h"

namespace autotp {

// The parameters (contiguous, one dtype, on the CPU or one CUDA device) concatenated in
// order into one flat space of `total` elements; DP rank r
// owns [partition_offsets[r], partition_offsets[r] + partition_sizes[r]): an even split, the
// first total % dp ranks one element longer.
struct FlatParamLayout {
  std::vector<int64_t> offsets;  // per parameter
  std::vector<int64_t> numels;   // per parameter
  int64_t total = 0;
  std::vector<int64_t> partition_offsets;  // per DP rank
  std::vector<int64_t> partition_sizes;    // per DP rank

  static FlatParamLayout build(const NamedTensors& params, int dp_size);
  int dp_size() const { return static_cast<int>(partition_sizes.size()); }
};

// An even split of `total` into `parts` contiguous sizes (the first total % parts one longer).
std::vector<int64_t> even_partition(int64_t total, int parts);

// Which collective a reduction runs per bucket.
enum class ReduceCollective { AllReduce, ReduceScatter };

// Averages gradients over the DP group in buckets: consecutive parameters are packed into one
// contiguous buffer of about bucket_bytes (a larger parameter gets its own), and every
// bucket's collective is started asynchronously before any is waited on. A parameter without
// a gradient contributes zeros. Collective over `dp`; f32/f64 parameters on the CPU or one
// CUDA device.
//
// Overlap with backward: arm() before the last backward pass of a step (earlier micro-batches
// only accumulate). Each parameter's post-accumulate-grad hook then marks its gradient final,
// and buckets are packed and launched during backward, strictly from the last bucket down to
// the first (the order backward produces them), so every rank starts the same collectives in
// the same order even where ranks differ in which parameters got a gradient; a bucket waits
// for the ones after it. all_reduce_mean() / reduce_scatter_mean() then launch whatever did
// not fire, wait, unpack exactly as without overlap, and disarm: the same buckets and the
// same collectives, so the results are bitwise identical. Between arm() and the reduction no
// other collective may run on `dp` (ranks could issue it at different points among the
// buckets). On CPU the MPI collectives are nonblocking calls progressed when polled, so the
// gain is small here; the schedule is the one NCCL runs on its own stream, behind backward.
class GradientReducer {
 public:
  GradientReducer(NamedTensors params, std::shared_ptr<Communicator> dp, int64_t bucket_bytes);
  ~GradientReducer();  // removes the hooks
  GradientReducer(GradientReducer&&) = default;
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;
  GradientReducer& operator=(GradientReducer&&) = delete;

  // Launches buckets from the gradient hooks until the next reduction, which must use
  // `collective` (AllReduce: all_reduce_mean; ReduceScatter: reduce_scatter_mean).
  void arm(ReduceCollective collective);
  bool armed() const;

  // ZeRO 0/1: every parameter's gradient becomes the DP mean, in place (created if missing).
  void all_reduce_mean();
  // ZeRO 2: `partition` [partition_sizes[rank]] receives the DP mean of this rank's slice of
  // the flat gradient (reduce_scatter per bucket); the parameters' gradients are dropped.
  void reduce_scatter_mean(const Tensor& partition);

  const FlatParamLayout& layout() const;
  int64_t num_buckets() const;
  // Buckets launched from gradient hooks (during backward) since the last arm(); kept after
  // the reduction until the next arm().
  int64_t buckets_launched_from_hooks() const;

 private:
  struct State;
  void launch_remaining(ReduceCollective collective);
  std::shared_ptr<State> state_;   // shared with the hooks through weak pointers
  std::vector<int64_t> hook_ids_;  // per parameter; -1: none (no gradient required)
};

// Copies flat range [begin, end) of the parameters' data (or, with `grads`, their gradients;
// missing gradients read as zeros) into out[0, end - begin), or back from `in`. `out` / `in`
// are flat contiguous tensors of the parameters' dtype, on any device (device tensors are
// copied with device copies, host ones with memcpy).
void gather_flat_range(const NamedTensors& params, const FlatParamLayout& layout, int64_t begin,
                       int64_t end, const Tensor& out, bool grads);
void scatter_flat_range(const NamedTensors& params, const FlatParamLayout& layout, int64_t begin,
                        int64_t end, const Tensor& in);
// The same through raw host memory: CPU parameters only.
void gather_flat_range(const NamedTensors& params, const FlatParamLayout& layout, int64_t begin,
                       int64_t end, void* out, bool grads);
void scatter_flat_range(const NamedTensors& params, const FlatParamLayout& layout, int64_t begin,
                        int64_t end, const void* in);

// dst[dst_at, dst_at + n) = src[src_at, src_at + n) over the flat elements of two contiguous
// tensors of one dtype, each on the CPU or a CUDA device (memcpy when both are on the host).
void copy_flat_elements(const Tensor& dst, int64_t dst_at, const Tensor& src, int64_t src_at,
                        int64_t n);

}  // namespace autotp
