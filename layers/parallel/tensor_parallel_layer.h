// TensorParallelLayer: the common base of the column- and row-parallel Linear layers: the
// frozen split of each parameter (queried by name), the TP group, and gathering the full
// parameters and restoring the shards.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/comm/communicator.h"
#include "core/module.h"
#include "layers/linear.h"
#include "layers/parallel/fused_shape.h"
#include "layers/parallel/shard_sizes.h"
#include "layers/parallel/split_plan.h"

namespace autotp {

enum class PartitionType { Column, Row };
std::string partition_type_name(PartitionType type);  // "column" / "row"

struct TPLayerOptions {
  // The layer's dotted path ("model.layers.0.mlp.up_proj"): the shard rules read it (KV-head
  // rule exclusions) and messages show it.
  std::string name;
  ShardRules rules;  // copied: the layer's split is frozen when it is built
  // Training mode splits evenly (an Error names the layer and sizes otherwise) unless
  // allow_uneven; parameters keep their requires_grad. Inference mode always allows uneven
  // shards and its parameters do not require gradients.
  bool training = true;
  bool allow_uneven = false;
  // Fused sub-parameters (reference 5.10): `shape` views the weight, e.g. (3, -1) or
  // ((q, kv, kv), -1); partition_dim is a dim of that view (default: 0 for column layers,
  // the last dim for row layers).
  std::optional<FusedShape> shape;
  std::optional<int64_t> partition_dim;
  // Column-parallel only: all-gather the output features (a full output on every rank).
  bool gather_output = false;
  // Column-parallel only (DeepSpeed's tp_overlap_comm): backward starts the input-gradient
  // all-reduce asynchronously and computes the weight and bias gradients meanwhile.
  bool overlap_comm = false;
};

// The split metadata of one parameter of a TP layer.
struct ParamSplitInfo {
  PartitionType partition_type = PartitionType::Column;
  // Sharded over the TP group (weights; column biases). False: replicated (row biases).
  bool tensor_model_parallel = false;
  Shape original_shape;  // the full, unsharded shape
  SplitPlan plan;        // view of the full tensor, split dim, widths[sub-parameter][rank]
  // Each rank's extent along the split dim (the sum of its sub-parameter widths).
  std::vector<int64_t> partition_sizes() const { return plan.rank_sizes(); }
  std::vector<int64_t> sub_sizes() const { return plan.sub_sizes(); }
};

class TensorParallelLayer : public UnaryModule {
 public:
  PartitionType partition_type() const { return type_; }
  const std::string& layer_name() const { return options_.name; }
  const TPLayerOptions& options() const { return options_; }
  const std::shared_ptr<Communicator>& tp_group() const { return tp_; }
  int tp_rank() const { return tp_->rank(); }
  int tp_world_size() const { return tp_->size(); }

  // Registry lookups, as in Linear: the local shards (or, while gathered, the full tensors).
  Tensor weight() const { return parameter("weight"); }
  Tensor bias() const { return has_parameter("bias") ? parameter("bias") : Tensor(); }
  bool has_bias() const { return has_parameter("bias"); }
  int64_t full_in_features() const { return full_in_; }
  int64_t full_out_features() const { return full_out_; }

  // The split of parameter `name` ("weight" or "bias"); an Error lists the known names.
  const ParamSplitInfo& split_info(const std::string& name) const;
  bool is_tensor_model_parallel(const std::string& name) const {
    return split_info(name).tensor_model_parallel;
  }

  // Collective over the TP group: replaces each sharded parameter with its full tensor
  // (gathered per sub-parameter). partition_params() re-slices the full tensors with the
  // frozen sizes into the original shard tensors (same tensors, so optimizers keep them)
  // and registers those again; edits made to the full tensors meanwhile carry over.
  void gather_params();
  void partition_params();
  bool params_gathered() const { return !saved_shards_.empty(); }

  std::string extra_repr() const override;

 protected:
  // Takes this rank's shards of `full`'s weight and bias. Errors name the layer.
  TensorParallelLayer(PartitionType type, const Linear& full, std::shared_ptr<Communicator> tp,
                      TPLayerOptions options);
  const SplitPlan& weight_plan() const { return split_info_.at("weight").plan; }
  // "ColumnParallelLinear 'model.layers.0.mlp.up_proj'" for messages.
  std::string label() const;

 private:
  // A notice on TP rank 0 when some rank gets a zero-width shard (e.g. more ranks than KV
  // heads), as DeepSpeed logs.
  void warn_about_idle_ranks(const SplitPlan& plan, const SubParamLayout& layout) const;

  PartitionType type_;
  std::shared_ptr<Communicator> tp_;
  TPLayerOptions options_;
  int64_t full_in_ = 0, full_out_ = 0;
  std::map<std::string, ParamSplitInfo> split_info_;
  std::map<std::string, Tensor> saved_shards_;  // the shard tensors while gathered
};

// Every TP-sharded parameter below `root` (tensor_model_parallel: weights and column biases),
// keyed by its dotted name as root.named_parameters() spells it, with its split and the
// owning layer's TP rank. Replicated parameters are absent.
struct ShardedParameter {
  ParamSplitInfo split;
  int tp_rank = 0;
};
std::map<std::string, ShardedParameter> sharded_parameters(const Module& root);

}  // namespace autotp
