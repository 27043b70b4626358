// SplitPlan arithmetic, shard slicing and per-sub-parameter gathering.
#include "layers/parallel/split_plan.h"

#include "core/autograd/grad_mode.h"
#include "core/ops/shape_ops.h"

namespace autotp {

std::vector<int64_t> SplitPlan::sub_sizes() const {
  std::vector<int64_t> out;
  for (const auto& w : widths) {
    int64_t s = 0;
    for (int64_t v : w)
      s += v;
    out.push_back(s);
  }
  return out;
}

std::vector<int64_t> SplitPlan::rank_sizes() const {
  std::vector<int64_t> out(static_cast<size_t>(world()), 0);
  for (const auto& w : widths) {
    for (size_t r = 0; r < w.size(); ++r)
      out[r] += w[r];
  }
  return out;
}

Shape SplitPlan::local_view(int64_t rank) const {
  Shape s = view;
  s[static_cast<size_t>(dim)] = rank_sizes()[static_cast<size_t>(rank)];
  return s;
}

bool SplitPlan::is_even() const {
  for (const auto& w : widths) {
    for (int64_t v : w) {
      if (v != w[0]) return false;
    }
  }
  return true;
}

SplitPlan SplitPlan::with_batch(const Shape& batch) const {
  SplitPlan p = *this;
  p.view.insert(p.view.begin(), batch.begin(), batch.end());
  p.dim += static_cast<int64_t>(batch.size());
  return p;
}

SplitPlan make_split_plan(const SubParamLayout& layout, int64_t world, const std::string& name,
                          const ShardRules& rules) {
  SplitPlan plan{layout.logical_shape, layout.partition_dim, {}};
  for (int64_t s : layout.sub_sizes)
    plan.widths.push_back(shard_sizes(s, world, name, rules));
  return plan;
}

SplitPlan output_split_plan(const SplitPlan& weight_plan) {
  AUTOTP_ASSERT(weight_plan.dim + 1 < static_cast<int64_t>(weight_plan.view.size()),
                "output split of a plan split on its last dim ({})", shape_str(weight_plan.view));
  SplitPlan p = weight_plan;
  p.view.pop_back();
  return p;
}

Tensor take_shard(const Tensor& full, const SplitPlan& plan, int64_t rank) {
  AUTOTP_ASSERT(full.numel() == shape_numel(plan.view), "shard of {} from a view {}",
                shape_str(full.shape()), shape_str(plan.view));
  const Tensor v = full.reshape(plan.view);
  std::vector<Tensor> pieces;
  int64_t sub_start = 0;
  for (const auto& w : plan.widths) {
    int64_t start = sub_start;
    for (int64_t r = 0; r < rank; ++r)
      start += w[static_cast<size_t>(r)];
    pieces.push_back(v.narrow(plan.dim, start, w[static_cast<size_t>(rank)]));
    for (int64_t width : w)
      sub_start += width;
  }
  return pieces.size() == 1 ? pieces[0].contiguous() : ops::cat(pieces, plan.dim);
}

Tensor gather_full(Communicator& comm, const Tensor& local, const SplitPlan& plan) {
  AUTOTP_ASSERT(comm.size() == plan.world(), "gather over {} ranks of a plan for {}", comm.size(),
                plan.world());
  NoGradGuard no_grad;
  const Shape local_view = plan.local_view(comm.rank());
  AUTOTP_ASSERT(local.numel() == shape_numel(local_view), "gather of a shard {} with local view {}",
                shape_str(local.shape()), shape_str(local_view));
  const Tensor v = local.detach().reshape(local_view);
  // One gather per sub-parameter, all in flight at once.
  std::vector<WorkHandle> works;
  int64_t at = 0;
  for (const auto& w : plan.widths) {
    const int64_t mine = w[static_cast<size_t>(comm.rank())];
    works.push_back(comm.all_gather_async(v.narrow(plan.dim, at, mine), plan.dim, w));
    at += mine;
  }
  std::vector<Tensor> subs;
  for (const WorkHandle& work : works) {
    work->wait();
    subs.push_back(work->result());
  }
  return subs.size() == 1 ? subs[0] : ops::cat(subs, plan.dim);
}

Tensor assemble_full(const std::vector<Tensor>& shards, const SplitPlan& plan) {
  AUTOTP_CHECK(static_cast<int64_t>(shards.size()) == plan.world(),
               "assemble_full: {} shards for a split over {} ranks", shards.size(), plan.world());
  NoGradGuard no_grad;
  std::vector<Tensor> views;  // each rank's shard in its local view
  for (size_t r = 0; r < shards.size(); ++r) {
    const Shape local_view = plan.local_view(static_cast<int64_t>(r));
    AUTOTP_CHECK(shards[r].numel() == shape_numel(local_view),
                 "assemble_full: rank {}'s shard has shape {}, its split expects {} elements "
                 "(view {})",
                 r, shape_str(shards[r].shape()), shape_numel(local_view), shape_str(local_view));
    views.push_back(shards[r].detach().reshape(local_view));
  }
  std::vector<Tensor> subs;
  std::vector<int64_t> at(shards.size(), 0);  // per rank: where its next sub-parameter starts
  for (const auto& w : plan.widths) {
    std::vector<Tensor> pieces;
    for (size_t r = 0; r < shards.size(); ++r) {
      if (w[r] > 0) pieces.push_back(views[r].narrow(plan.dim, at[r], w[r]));
      at[r] += w[r];
    }
    AUTOTP_ASSERT(!pieces.empty(), "a sub-parameter of width 0 on every rank");
    subs.push_back(pieces.size() == 1 ? pieces[0].contiguous() : ops::cat(pieces, plan.dim));
  }
  return subs.size() == 1 ? subs[0] : ops::cat(subs, plan.dim);
}

}  // namespace autotp
