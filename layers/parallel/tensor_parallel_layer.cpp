// TensorParallelLayer: building the frozen splits from a full Linear, the even-split rule of
// training mode, split metadata, and gather/re-partition of the parameters.
#include "layers/parallel/tensor_parallel_layer.h"

#include <algorithm>
#include <cstdio>

#include "core/autograd/grad_mode.h"

namespace autotp {

namespace {

std::string join_sizes(const std::vector<int64_t>& sizes) {
  std::string out;
  for (int64_t s : sizes)
    out += (out.empty() ? "" : ", ") + std::to_string(s);
  return out;
}

// A shard in the parameter's own rank: 2-D [rows, cols] for a weight, 1-D for a bias.
Tensor as_param_shape(const Tensor& shard_view, int64_t ndim) {
  if (ndim == 1) return shard_view.reshape({shard_view.numel()});
  const int64_t cols = shard_view.size(-1);
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < shard_view.dim(); ++d)
    rows *= shard_view.size(d);
  return shard_view.reshape({rows, cols});
}

}  // namespace

std::string partition_type_name(PartitionType type) {
  return type == PartitionType::Column ? "column" : "row";
}

TensorParallelLayer::TensorParallelLayer(PartitionType type, const Linear& full,
                                         std::shared_ptr<Communicator> tp, TPLayerOptions options)
    : type_(type), tp_(std::move(tp)), options_(std::move(options)) {
  const bool column = type_ == PartitionType::Column;
  AUTOTP_CHECK(tp_ != nullptr, "{}: the tensor-parallel group is null", label());
  AUTOTP_CHECK(column || (!options_.gather_output && !options_.overlap_comm),
               "{}: gather_output and overlap_comm apply to column-parallel layers only", label());
  const Tensor w = full.weight().detach();
  full_out_ = w.size(0);
  full_in_ = w.size(1);
  SubParamLayout layout;
  if (options_.shape) {
    const int64_t ndim = static_cast<int64_t>(options_.shape->size());
    const int64_t pd = options_.partition_dim.value_or(column ? 0 : ndim - 1);
    layout = infer_subparam_layout(w.shape(), *options_.shape, pd, options_.name);
  } else {
    const int64_t pd = options_.partition_dim.value_or(column ? 0 : 1);
    AUTOTP_CHECK(pd == 0 || pd == 1, "{}: partition_dim {} of an unfused weight must be 0 or 1",
                 label(), pd);
    layout = plain_layout(w.shape(), pd);
  }
  const int64_t last = static_cast<int64_t>(layout.logical_shape.size()) - 1;
  AUTOTP_CHECK(column ? layout.partition_dim < last : layout.partition_dim == last,
               "{}: a {}-parallel layer splits {} but partition_dim is {} of the view {}", label(),
               partition_type_name(type_),
               column ? "an output dim (not the last)" : "the input dim (the last)",
               layout.partition_dim, shape_str(layout.logical_shape));
  const SplitPlan plan = make_split_plan(layout, tp_->size(), options_.name, options_.rules);
  if (options_.training && !options_.allow_uneven && !plan.is_even()) {
    std::string detail;
    for (size_t j = 0; j < plan.widths.size(); ++j) {
      if (!detail.empty()) detail += "; ";
      detail += fmt::format("sub-parameter {} of size {} -> {}", j, layout.sub_sizes[j],
                            join_sizes(plan.widths[j]));
    }
    AUTOTP_FAIL(
        "{}: {} {} does not split evenly over tensor-parallel size {} ({}). Training mode "
        "needs even shards: allow uneven sharding in the config, or use inference mode",
        label(), column ? "out_features" : "in_features", column ? full_out_ : full_in_,
        tp_->size(), detail);
  }
  warn_about_idle_ranks(plan, layout);

  NoGradGuard no_grad;
  const int rank = tp_->rank();
  const bool trainable = options_.training && full.weight().requires_grad();
  auto own = [](const Tensor& shard, const Tensor& source) {
    return shard.shares_storage(source) ? shard.clone() : shard;
  };
  register_parameter("weight", own(as_param_shape(take_shard(w, plan, rank), 2), w));
  parameter("weight").set_requires_grad(trainable);
  split_info_["weight"] = {type_, true, w.shape(), plan};
  if (full.has_bias()) {
    const Tensor b = full.bias().detach();
    if (layout.bias_partitioned) {
      const SplitPlan bias_plan = output_split_plan(plan);
      register_parameter("bias", own(as_param_shape(take_shard(b, bias_plan, rank), 1), b));
      split_info_["bias"] = {type_, true, b.shape(), bias_plan};
    } else {
      register_parameter("bias", b.clone());
      // Replicated: one "piece" holding everything on every rank.
      split_info_["bias"] = {type_, false, b.shape(), SplitPlan{b.shape(), 0, {}}};
    }
    parameter("bias").set_requires_grad(options_.training && full.bias().requires_grad());
  }
}

void TensorParallelLayer::warn_about_idle_ranks(const SplitPlan& plan,
                                                const SubParamLayout& layout) const {
  if (tp_->rank() != 0) return;
  for (size_t j = 0; j < plan.widths.size(); ++j) {
    const auto& w = plan.widths[j];
    if (std::find(w.begin(), w.end(), 0) == w.end()) continue;
    std::fprintf(stderr,
                 "autotp: notice: %s: some tensor-parallel ranks get no part of sub-parameter %zu "
                 "(size %lld split as %s); they idle for it (results stay correct)\n",
                 label().c_str(), j, static_cast<long long>(layout.sub_sizes[j]),
                 join_sizes(w).c_str());
    return;
  }
}

std::string TensorParallelLayer::label() const {
  // No virtual calls: the constructor reports errors through this too.
  const char* cls = type_ == PartitionType::Column ? "ColumnParallelLinear" : "RowParallelLinear";
  return options_.name.empty() ? fmt::format("{} (unnamed)", cls)
                               : fmt::format("{} '{}'", cls, options_.name);
}

const ParamSplitInfo& TensorParallelLayer::split_info(const std::string& name) const {
  auto it = split_info_.find(name);
  AUTOTP_CHECK(it != split_info_.end(), "{}: no split information for parameter '{}' (it has {})",
               label(), name, has_bias() ? "weight, bias" : "weight");
  return it->second;
}

void TensorParallelLayer::gather_params() {
  AUTOTP_CHECK(!params_gathered(), "{}: the parameters are already gathered", label());
  NoGradGuard no_grad;
  std::map<std::string, Tensor> full;
  for (const auto& [name, info] : split_info_) {
    if (!info.tensor_model_parallel) continue;
    full[name] = gather_full(*tp_, parameter(name), info.plan).reshape(info.original_shape);
  }
  for (auto& [name, tensor] : full) {
    const Tensor shard = parameter(name);
    saved_shards_[name] = shard;
    set_parameter(name, tensor);
    parameter(name).set_requires_grad(shard.requires_grad());
  }
}

void TensorParallelLayer::partition_params() {
  AUTOTP_CHECK(params_gathered(), "{}: the parameters are not gathered", label());
  NoGradGuard no_grad;
  for (auto& [name, shard] : saved_shards_) {
    const ParamSplitInfo& info = split_info_.at(name);
    shard.copy_(take_shard(parameter(name), info.plan, tp_->rank()).reshape(shard.shape()));
    const bool requires_grad = shard.requires_grad();
    set_parameter(name, shard);
    shard.set_requires_grad(requires_grad);
  }
  saved_shards_.clear();
}

std::string TensorParallelLayer::extra_repr() const {
  const Tensor w = weight();
  std::string out = fmt::format("in_features={}, out_features={}, bias={}, tp={}/{}", w.size(1),
                                w.size(0), has_bias(), tp_->rank(), tp_->size());
  if (!options_.name.empty()) out += fmt::format(", name={}", options_.name);
  out += fmt::format(", split=[{}]", join_sizes(weight_plan().rank_sizes()));
  if (options_.shape) out += ", shape=" + fused_shape_str(*options_.shape);
  if (options_.gather_output) out += ", gather_output";
  if (options_.overlap_comm) out += ", overlap_comm";
  return out;
}

}  // namespace autotp

namespace autotp {

std::map<std::string, ShardedParameter> sharded_parameters(const Module& root) {
  std::map<std::string, ShardedParameter> out;
  const auto visit = [&](const std::string& path, const Module& m) {
    const auto* layer = dynamic_cast<const TensorParallelLayer*>(&m);
    if (layer == nullptr) return;
    for (const char* name : {"weight", "bias"}) {
      if (!layer->has_parameter(name) || !layer->is_tensor_model_parallel(name)) continue;
      out[path.empty() ? std::string(name) : path + "." + name] = {layer->split_info(name),
                                                                   layer->tp_rank()};
    }
  };
  visit("", root);
  for (const auto& [path, module] : root.named_modules())
    visit(path, *module);
  return out;
}

}  // namespace autotp
