// RowParallelLinear forward: partial GEMM, reduce_from_region, replicated bias.
#include "layers/parallel/row_parallel_linear.h"

#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "layers/parallel/comm_functions.h"

namespace autotp {

RowParallelLinear::RowParallelLinear(const Linear& full, std::shared_ptr<Communicator> tp,
                                     TPLayerOptions options)
    : TensorParallelLayer(PartitionType::Row, full, std::move(tp), std::move(options)) {}

Tensor RowParallelLinear::forward(const Tensor& x) {
  AUTOTP_CHECK(!params_gathered(), "{}: forward while the full parameters are gathered", label());
  const Tensor w = weight();
  AUTOTP_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == w.size(1),
               "{}: input of shape {} does not end in this rank's {} input features (rank {} of "
               "the split {})",
               label(), x.defined() ? shape_str(x.shape()) : std::string("(undefined)"), w.size(1),
               tp_rank(), shape_str(input_partition_sizes()));
  Tensor y = reduce_from_region(ops::linear(x, w), tp_group());  // [..., out]
  return has_bias() ? ops::add(y, bias()) : y;
}

}  // namespace autotp
