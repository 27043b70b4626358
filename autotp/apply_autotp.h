// apply_autotp: the replacement pass. Plans the model (specs / preset / HF tp_plan / parser),
// then swaps each planned Linear for its Column/RowParallelLinear, keeping only this rank's
// shard, and sets up the gradient all-reduce of replicated per-head parameters.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "autotp/autotp_config.h"
#include "autotp/model_dims.h"
#include "autotp/planner.h"
#include "core/comm/communicator.h"
#include "core/comm/parallel_grid.h"
#include "core/device.h"
#include "core/module.h"
#include "layers/parallel/grad_norm.h"
#include "models/causal_lm.h"

namespace autotp {

struct AutoTPResult {
  TPPlan plan;  // what was done to every module and parameter (the plan report)
  // The replicated parameters marked grad_allreduce (e.g. Qwen3's q_norm/k_norm); null when
  // there are none. Call grad_allreduce->all_reduce_grads() after every backward pass (before
  // gradient clipping and the optimizer step), so the replicas stay identical.
  std::shared_ptr<ReplicatedGradAllreduce> grad_allreduce;
  int64_t replaced_layers = 0;
};

struct ApplyOptions {
  // Print the plan's warnings (unmatched layers, tied heads, ...) to stderr on TP rank 0.
  bool print_warnings = true;
  // Where the sharded model is to live (e.g. this rank's GPU); unset: where it already is.
  // config.keep_module_on_host decides where the shards are taken:
  //   false (DeepSpeed's default): the full model moves to `device` first and is sharded
  //     there (the device briefly holds the full model);
  //   true: the full model stays where it is (the host), is sharded there, and only this
  //     rank's shards and the replicated parameters move to `device` (the device never holds
  //     more than the sharded model).
  // Moving makes new parameter tensors: build optimizers after the pass.
  std::optional<Device> device = std::nullopt;
};

// The AutoTP pass on `model` (the full model, identical on every rank of `tp_group`: built
// from the same seed or checkpoint). Collective over `tp_group`, whose size must equal
// config.effective_tp_size(). Steps:
//   1. make_plan(describe_modules(model), config, dims); an invalid plan (uneven sizes in
//      training, more ranks than KV heads, strict_mode misses, ...) is one Error listing every
//      problem and its fix, thrown before anything is replaced;
//   2. every rank checks that its plan equals rank 0's (a differing config or model is an
//      Error, instead of a hang or silent corruption later);
//   3. each column/row layer is replaced through Module::replace_module by a
//      ColumnParallelLinear / RowParallelLinear built from the full Linear (name = its path,
//      shard rules = num_key_value_heads and tp_grain_size, training / allow_uneven, fused
//      shape, partition_dim, gather_output, tp_overlap_comm for column layers); the full
//      weights are released as the old modules drop;
//   4. grad_allreduce parameters are registered in the result.
// With an effective TP size of 1 the plan is computed and nothing is replaced (the model
// still moves to options.device). Nothing moves before the plan is checked.
// The model's attention takes its local head counts from the shard widths, so q/k/v column
// splits and o_proj's row split follow whole KV heads (checked by the plan). When the TP size
// exceeds num_key_value_heads, the pass errors (it does not idle ranks as DeepSpeed does).
AutoTPResult apply_autotp(Module& model, const AutoTPConfig& config, const ModelDims& dims,
                          const std::shared_ptr<Communicator>& tp_group,
                          const ApplyOptions& options = {});
// The same for a built-in model on `grid`'s TP group, with the dims from its config.
AutoTPResult apply_autotp(CausalLM& model, const AutoTPConfig& config, const ParallelGrid& grid,
                          const ApplyOptions& options = {});

// A short fingerprint of the plan's decisions and shard sizes (equal plans, equal hashes).
uint64_t plan_fingerprint(const TPPlan& plan);

}  // namespace autotp
