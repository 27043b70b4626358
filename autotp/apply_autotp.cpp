// apply_autotp: plan, cross-rank plan check, replace_module with the parallel layers, and the
// grad_allreduce registration.
#include "autotp/apply_autotp.h"

#include <cstdio>

#include "core/comm/recorder.h"
#include "core/error.h"
#include "layers/linear.h"
#include "layers/parallel/column_parallel_linear.h"
#include "layers/parallel/row_parallel_linear.h"

namespace autotp {

uint64_t plan_fingerprint(const TPPlan& plan) {
  std::string text = std::to_string(plan.tp_size);
  for (const ParamPlan& p : plan.params) {
    text += '|' + p.name + ':' + layer_action_name(p.action) + (p.grad_allreduce ? "+g" : "");
    for (const Shape& s : p.rank_shapes)
      text += shape_str(s);
  }
  return hash_bytes(text.data(), text.size());
}

namespace {

void check_same_plan_on_every_rank(const TPPlan& plan, Communicator& tp) {
  const uint64_t mine = plan_fingerprint(plan);
  std::vector<uint8_t> bytes(sizeof(mine));
  for (size_t i = 0; i < sizeof(mine); ++i)
    bytes[i] = static_cast<uint8_t>(mine >> (8 * i));
  const auto all = tp.exchange_bytes(bytes);
  for (size_t r = 0; r < all.size(); ++r) {
    AUTOTP_CHECK(all[r] == all[0],
                 "AutoTP: tensor-parallel rank {} computed a different plan than rank 0 (rank {} "
                 "of group '{}'): every rank of a TP group must build the same model from the same "
                 "config",
                 r, tp.rank(), tp.name());
  }
}

// Moves every parameter and buffer of `model` to `device`, unless all already live there
// (Module::to would copy them anyway).
void move_to(Module& model, Device device) {
  bool there = true;
  for (const auto& [name, p] : model.named_parameters())
    there = there && p.device() == device;
  for (const auto& [name, b] : model.named_buffers())
    there = there && b.device() == device;
  if (!there) model.to(device);
}

}  // namespace

AutoTPResult apply_autotp(Module& model, const AutoTPConfig& config, const ModelDims& dims,
                          const std::shared_ptr<Communicator>& tp_group,
                          const ApplyOptions& options) {
  AUTOTP_CHECK(tp_group != nullptr, "apply_autotp: the tensor-parallel group is null");
  const int64_t tp = config.effective_tp_size();
  AUTOTP_CHECK(tp_group->size() == tp,
               "apply_autotp: tensor_parallel.autotp_size is {} but the tensor-parallel group has "
               "{} ranks (build the ParallelGrid with tp_size = autotp_size)",
               config.tp_size, tp_group->size());
  AutoTPResult result;
  result.plan = make_plan(describe_modules(model), config, dims);
  throw_if_invalid(result.plan);
  if (tp > 1) check_same_plan_on_every_rank(result.plan, *tp_group);
  const bool report = options.print_warnings && tp_group->rank() == 0;
  if (report) {
    for (const std::string& w : result.plan.warnings)
      std::fprintf(stderr, "autotp: warning: %s\n", w.c_str());
  }
  if (tp <= 1) {
    if (options.device) move_to(model, *options.device);
    return result;
  }
  // DeepSpeed's default: shard on the device. keep_module_on_host: shard where the model is.
  if (options.device && !config.keep_module_on_host) move_to(model, *options.device);

  for (const LayerPlan& lp : result.plan.layers) {
    if (lp.action == LayerAction::Replicated) continue;
    TPLayerOptions layer;
    layer.name = lp.path;
    layer.rules = result.plan.rules;
    layer.training = config.training;
    layer.allow_uneven = config.allow_uneven;
    layer.shape = lp.shape;
    layer.partition_dim = lp.partition_dim;
    const bool column = lp.action == LayerAction::Column;
    layer.gather_output = column && lp.gather_output;
    layer.overlap_comm = column && config.tp_overlap_comm;
    std::shared_ptr<Module> parallel;
    {
      // The full Linear lives only inside this scope once replaced.
      const std::shared_ptr<Module> full = model.get_submodule(lp.path);
      const auto* linear = dynamic_cast<const Linear*>(full.get());
      AUTOTP_ASSERT(linear != nullptr, "planned layer '{}' is a {}, not a Linear", lp.path,
                    full->type_name());
      if (column) {
        parallel = std::make_shared<ColumnParallelLinear>(*linear, tp_group, layer);
      } else {
        parallel = std::make_shared<RowParallelLinear>(*linear, tp_group, layer);
      }
      parallel->train(full->is_training());
    }
    model.replace_module(lp.path, parallel);
    ++result.replaced_layers;
  }
  // keep_module_on_host: the shards (and replicated parameters) move now, before anything
  // (the grad_allreduce marks below) holds a parameter tensor.
  if (options.device) move_to(model, *options.device);
  const std::vector<std::string> marked = result.plan.grad_allreduce_params();
  if (!marked.empty()) {
    result.grad_allreduce = std::make_shared<ReplicatedGradAllreduce>(tp_group);
    for (const std::string& name : marked)
      result.grad_allreduce->mark(model, name);
  }
  if (report) {
    std::fprintf(stderr,
                 "autotp: tensor parallel over %lld ranks from %s: %lld layers sharded, %zu "
                 "replicated parameters with gradient all-reduce\n",
                 static_cast<long long>(tp), result.plan.selection.description.c_str(),
                 static_cast<long long>(result.replaced_layers), marked.size());
  }
  return result;
}

AutoTPResult apply_autotp(CausalLM& model, const AutoTPConfig& config, const ParallelGrid& grid,
                          const ApplyOptions& options) {
  return apply_autotp(model, config, model_dims(model.config()), grid.tp(), options);
}

}  // namespace autotp
