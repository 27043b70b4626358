// RowParallelLinear (DeepSpeed's LinearAllreduce): weight [out, in_local] split on the input
// dim, bias replicated; forward = local GEMM on the sharded input, all-reduce, bias once.
#pragma once

#include "layers/parallel/tensor_parallel_layer.h"

namespace autotp {

class RowParallelLinear final : public TensorParallelLayer {
 public:
  // Takes this rank's columns of `full` (every rank must pass the same full Linear); the
  // bias is kept whole on every rank.
  RowParallelLinear(const Linear& full, std::shared_ptr<Communicator> tp,
                    TPLayerOptions options = {});

  std::string type_name() const override { return "RowParallelLinear"; }

  // x [..., in_local] (sharded exactly as input_partition_sizes() says, e.g. the output of a
  // column-parallel layer without gather) -> [..., out] on every rank.
  Tensor forward(const Tensor& x) override;

  int64_t out_features() const { return weight().size(0); }
  int64_t in_features() const { return weight().size(1); }
  std::vector<int64_t> input_partition_sizes() const { return weight_plan().rank_sizes(); }
};

}  // namespace autotp
