// GatherReplacedLayerParams: a scoped guard that all-gathers the full weights of the given
// tensor-parallel layers on entry and restores their identical shards on exit.
#pragma once

#include <vector>

#include "core/module.h"
#include "layers/parallel/tensor_parallel_layer.h"

namespace autotp {

// On entry, every TensorParallelLayer among `modules` gathers its full parameters (per
// sub-parameter for fused ones; collective over its TP group, so every rank must pass the
// same layers in the same order). On exit each is re-sliced with its frozen sizes into its
// original shard tensors, so unchanged parameters come back bit-identical and edits made to
// the full tensors inside the scope carry over. Other modules are left alone (a no-op), and
// children are not visited: pass each module whose own parameters you need, as DeepSpeed
// does per module. `enabled` false makes the whole guard a no-op.
class GatherReplacedLayerParams {
 public:
  explicit GatherReplacedLayerParams(const std::vector<Module*>& modules, bool enabled = true);
  explicit GatherReplacedLayerParams(Module& module, bool enabled = true)
      : GatherReplacedLayerParams(std::vector<Module*>{&module}, enabled) {}
  ~GatherReplacedLayerParams();
  GatherReplacedLayerParams(const GatherReplacedLayerParams&) = delete;
  GatherReplacedLayerParams& operator=(const GatherReplacedLayerParams&) = delete;

  // The layers gathered (empty for a no-op).
  const std::vector<TensorParallelLayer*>& layers() const { return gathered_; }

 private:
  void restore() noexcept;
  std::vector<TensorParallelLayer*> gathered_;
};

}  // namespace autotp
