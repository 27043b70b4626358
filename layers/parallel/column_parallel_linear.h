// ColumnParallelLinear (DeepSpeed's LinearLayer): weight [out_local, in] and bias [out_local]
// split on the output dim; forward = copy_to_region, local GEMM, optionally gather_output.
#pragma once

#include "layers/parallel/tensor_parallel_layer.h"

namespace autotp {

class ColumnParallelLinear final : public TensorParallelLayer {
 public:
  // Takes this rank's rows of `full` (every rank must pass the same full Linear). With
  // options.shape, each sub-parameter is split on its own and the local pieces concatenated
  // in sub-parameter order ([Q_local | K_local | V_local]); the bias follows.
  ColumnParallelLinear(const Linear& full, std::shared_ptr<Communicator> tp,
                       TPLayerOptions options = {});

  std::string type_name() const override { return "ColumnParallelLinear"; }

  // x [..., in] (replicated over the TP group) -> [..., out_local], or [..., out] on every
  // rank with gather_output.
  Tensor forward(const Tensor& x) override;

  // This rank's output features, and every rank's (the frozen split of the output dim).
  int64_t out_features() const { return weight().size(0); }
  int64_t in_features() const { return weight().size(1); }
  std::vector<int64_t> output_partition_sizes() const;
};

// x [..., in] @ weight [out_local, in]^T + bias -> [..., out_local], whose backward starts
// the all-reduce of grad_x over `tp` asynchronously, computes grad_weight = g_flat^T x_flat
// and grad_bias = g summed over every leading dim meanwhile, then waits. The forward of
// copy_to_region + linear in one op (DeepSpeed's AsyncColumnParallel).
Tensor linear_with_async_input_grad_allreduce(const Tensor& x, const Tensor& weight,
                                              const Tensor& bias,
                                              const std::shared_ptr<Communicator>& tp);

}  // namespace autotp
