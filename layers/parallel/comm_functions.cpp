// copy_to_region, reduce_from_region and gather_from_region with their backwards.
#include "layers/parallel/comm_functions.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"

namespace autotp {

Tensor copy_to_region(const Tensor& x, const std::shared_ptr<Communicator>& tp) {
  AUTOTP_CHECK(x.defined(), "copy_to_region: the input is undefined");
  const Tensor out = Tensor::make_view_of(x, x.shape(), x.strides(), x.offset());
  return record_op(out, "CopyToRegionBackward", {&x}, [tp](const Tensor& g) {
    Tensor summed = g.contiguous();
    if (summed.shares_storage(g)) summed = g.clone();  // reduce in a buffer we own
    tp->all_reduce(summed);
    return std::vector<Tensor>{summed};
  });
}

Tensor reduce_from_region(const Tensor& x, const std::shared_ptr<Communicator>& tp) {
  AUTOTP_CHECK(x.defined(), "reduce_from_region: the input is undefined");
  Tensor summed;
  {
    NoGradGuard no_grad;
    summed = x.detach().clone();  // contiguous, owned: the reduction lands here
  }
  tp->all_reduce(summed);
  return record_op(summed, "ReduceFromRegionBackward", {&x},
                   [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor gather_from_region(const Tensor& x, const std::shared_ptr<Communicator>& tp,
                          const SplitPlan& features) {
  AUTOTP_CHECK(x.defined() && x.dim() >= 1,
               "gather_from_region: needs a tensor with a feature dim");
  AUTOTP_CHECK(features.world() == tp->size(),
               "gather_from_region on communicator '{}': the feature split is for {} ranks but "
               "the group has {}",
               tp->name(), features.world(), tp->size());
  const int64_t local_features = shape_numel(features.local_view(tp->rank()));
  AUTOTP_CHECK(x.size(-1) == local_features,
               "gather_from_region on communicator '{}': the input of shape {} has {} features "
               "but rank {} holds {} by the frozen split",
               tp->name(), shape_str(x.shape()), x.size(-1), tp->rank(), local_features);
  const Shape batch(x.shape().begin(), x.shape().end() - 1);
  const SplitPlan plan = features.with_batch(batch);
  Shape out_shape = batch;
  out_shape.push_back(shape_numel(features.view));
  const Tensor full = gather_full(*tp, x, plan).reshape(out_shape);
  const int64_t rank = tp->rank();
  Shape local_shape = batch;
  local_shape.push_back(local_features);
  return record_op(full, "GatherFromRegionBackward", {&x},
                   [plan, rank, local_shape](const Tensor& g) {
                     return std::vector<Tensor>{take_shard(g, plan, rank).reshape(local_shape)};
                   });
}

Tensor gather_from_region(const Tensor& x, const std::shared_ptr<Communicator>& tp,
                          const std::vector<int64_t>& sizes) {
  int64_t total = 0;
  for (int64_t s : sizes)
    total += s;
  return gather_from_region(x, tp, SplitPlan{{total}, 0, {sizes}});
}

}  // namespace autotp
