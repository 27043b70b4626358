// The tensor-parallel autograd functions: copy_to_region (identity forward, gradient
// all-reduce backward), reduce_from_region (all-reduce forward, identity backward), and
// gather_from_region (all-gather of uneven feature shards forward, a narrow backward).
#pragma once

#include <memory>
#include <vector>

#include "core/comm/communicator.h"
#include "layers/parallel/split_plan.h"

namespace autotp {

// x [...] -> the same values [...]. Backward sums the gradient over `tp` (into a fresh
// contiguous buffer), so the replicated input's gradient is complete on every rank.
Tensor copy_to_region(const Tensor& x, const std::shared_ptr<Communicator>& tp);

// x [...] partial sums -> their sum over `tp` [...] (a new contiguous tensor; x is not
// modified). Backward passes the gradient through.
Tensor reduce_from_region(const Tensor& x, const std::shared_ptr<Communicator>& tp);

// x [..., local features] -> [..., all features] on every rank. `features` is the split
// of the feature dim (as SplitPlan over the feature view, e.g. output_split_plan of a
// column-parallel weight): each sub-part is gathered with its uneven widths and the full
// sub-parts concatenated in order. Backward narrows the (replicated) gradient to this
// rank's features; no communication.
Tensor gather_from_region(const Tensor& x, const std::shared_ptr<Communicator>& tp,
                          const SplitPlan& features);
// The plain case: rank r holds sizes[r] consecutive features.
Tensor gather_from_region(const Tensor& x, const std::shared_ptr<Communicator>& tp,
                          const std::vector<int64_t>& sizes);

}  // namespace autotp
