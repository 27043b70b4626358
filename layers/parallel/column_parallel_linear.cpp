// ColumnParallelLinear forward (plain, overlapped, gathered) and the overlapped linear op.
#include "layers/parallel/column_parallel_linear.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "layers/parallel/comm_functions.h"

namespace autotp {

ColumnParallelLinear::ColumnParallelLinear(const Linear& full, std::shared_ptr<Communicator> tp,
                                           TPLayerOptions options)
    : TensorParallelLayer(PartitionType::Column, full, std::move(tp), std::move(options)) {}

std::vector<int64_t> ColumnParallelLinear::output_partition_sizes() const {
  const SplitPlan out = output_split_plan(weight_plan());
  std::vector<int64_t> sizes;
  for (int64_t r = 0; r < out.world(); ++r)
    sizes.push_back(shape_numel(out.local_view(r)));
  return sizes;
}

Tensor ColumnParallelLinear::forward(const Tensor& x) {
  AUTOTP_CHECK(!params_gathered(), "{}: forward while the full parameters are gathered", label());
  const Tensor w = weight();
  AUTOTP_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == w.size(1),
               "{}: input of shape {} does not end in in_features {}", label(),
               x.defined() ? shape_str(x.shape()) : std::string("(undefined)"), w.size(1));
  Tensor y = options().overlap_comm
                 ? linear_with_async_input_grad_allreduce(x, w, bias(), tp_group())
                 : ops::linear(copy_to_region(x, tp_group()), w, bias());
  if (options().gather_output)
    y = gather_from_region(y, tp_group(), output_split_plan(weight_plan()));
  return y;
}

Tensor linear_with_async_input_grad_allreduce(const Tensor& x, const Tensor& weight,
                                              const Tensor& bias,
                                              const std::shared_ptr<Communicator>& tp) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = ops::linear(x.detach(), weight.detach(), bias.defined() ? bias.detach() : Tensor());
  }
  const Tensor xs = x.detach(), ws = weight.detach();
  const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  return record_op(
      y, "LinearAsyncInputGradAllreduceBackward", {&x, &weight, bias.defined() ? &bias : nullptr},
      [xs, ws, need_x, need_w, need_b, tp](const Tensor& g) {  // g [..., out_local]
        Tensor grad_x, grad_w, grad_b;
        WorkHandle pending;
        if (need_x) {
          grad_x = ops::matmul(g, ws).contiguous();  // [..., in]
          pending = tp->all_reduce_async(grad_x);
        }
        // Meanwhile: leading dims flattened, g2 [rows, out_local], x2 [rows, in].
        const int64_t out_local = g.size(-1), in = xs.size(-1);
        const int64_t rows = xs.numel() / std::max<int64_t>(in, 1);
        const Tensor g2 = g.reshape({rows, out_local});
        if (need_w)
          grad_w = ops::matmul(g2.transpose(0, 1), xs.reshape({rows, in}));  // [out_l, in]
        if (need_b) grad_b = ops::sum(g2, {0});  // [out_local], over every leading dim
        if (pending) pending->wait();
        return std::vector<Tensor>{grad_x, grad_w, grad_b};
      });
}

}  // namespace autotp
