// SplitPlan: the frozen per-rank split of one tensor viewed logically (sub-parameters along
// one dim, each cut by the shard-size rules), with taking a rank's shard and gathering back.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/comm/communicator.h"
#include "layers/parallel/fused_shape.h"
#include "layers/parallel/shard_sizes.h"

namespace autotp {

struct SplitPlan {
  Shape view;                                // the full tensor viewed logically
  int64_t dim = 0;                           // the split dim of `view`
  std::vector<std::vector<int64_t>> widths;  // widths[j][r]: rank r's part of sub-parameter j

  int64_t world() const { return widths.empty() ? 0 : static_cast<int64_t>(widths[0].size()); }
  // Sub-parameter sizes along `dim` (sum over ranks), in order.
  std::vector<int64_t> sub_sizes() const;
  // Each rank's extent along `dim` (sum over sub-parameters).
  std::vector<int64_t> rank_sizes() const;
  // `view` with `dim` cut to rank `rank`'s extent: the shape of its shard.
  Shape local_view(int64_t rank) const;
  // True when every sub-parameter splits into equal widths.
  bool is_even() const;
  // The same split with `batch` dims in front of the view (for activations [..., features]).
  SplitPlan with_batch(const Shape& batch) const;
};

// The split of a weight from its layout: every sub-parameter cut over `world` ranks by the
// shard-size rules for layer `name`.
SplitPlan make_split_plan(const SubParamLayout& layout, int64_t world, const std::string& name,
                          const ShardRules& rules);
// The split of the output features (and of a partitioned bias): the weight's plan without
// the last (in_features) dim. Requires the weight's split dim to be an output dim.
SplitPlan output_split_plan(const SplitPlan& weight_plan);

// Rank `rank`'s shard of `full` (numel = prod(plan.view)): its slice of every sub-parameter,
// concatenated in sub-parameter order along plan.dim; shape plan.local_view(rank). Built
// from views and cat, so it is differentiable; no communication.
Tensor take_shard(const Tensor& full, const SplitPlan& plan, int64_t rank);

// Collective over `comm` (whose size is plan.world()): the full tensor (shape plan.view)
// from every rank's shard `local` (numel = prod(plan.local_view(rank))). Each sub-parameter
// is all-gathered on its own and the full sub-parameters are concatenated in order, never
// the shards in rank order. No autograd.
Tensor gather_full(Communicator& comm, const Tensor& local, const SplitPlan& plan);

// The full tensor (shape plan.view) from every rank's shard, without communication (e.g.
// shards read back from a checkpoint): shards[r] holds rank r's shard (numel =
// prod(plan.local_view(r))); each sub-parameter is rebuilt from its per-rank slices in rank
// order and the sub-parameters concatenated, as gather_full does. No autograd.
Tensor assemble_full(const std::vector<Tensor>& shards, const SplitPlan& plan);

}  // namespace autotp
