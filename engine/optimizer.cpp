// AdamW: per-parameter state, the fused CPU update, the tensor-op update for other devices,
// and the named state dictionary.
#include "engine/optimizer.h"

#include <cmath>
#include <map>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "core/autograd/grad_mode.h"
#include "core/dispatch.h"
#include "core/ops/elementwise.h"
#include "kernels/cpu/adamw.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/adamw.h"
#endif

namespace autotp {

namespace {

// The step constants of parameter step t, in double, as PyTorch computes them in Python.
kernels::cpu::AdamWStep step_constants(const AdamWOptions& o, int64_t t, bool apply_decay) {
  kernels::cpu::AdamWStep s{};
  s.lr = o.lr;
  s.beta1 = o.beta1;
  s.beta2 = o.beta2;
  s.eps = o.eps;
  s.weight_decay = apply_decay ? o.weight_decay : 0.0;
  s.decoupled_weight_decay = o.decoupled_weight_decay;
  const double td = static_cast<double>(t);
  const double bc1 = o.bias_correction ? 1.0 - std::pow(o.beta1, td) : 1.0;
  const double bc2 = o.bias_correction ? 1.0 - std::pow(o.beta2, td) : 1.0;
  s.step_size = o.lr / bc1;
  s.bias_correction2_sqrt = std::sqrt(bc2);
  return s;
}

void check_options(const AdamWOptions& o) {
  AUTOTP_CHECK(o.lr >= 0.0 && std::isfinite(o.lr), "AdamW: lr must be >= 0, got {}", o.lr);
  AUTOTP_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, "AdamW: beta1 must be in [0, 1), got {}", o.beta1);
  AUTOTP_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, "AdamW: beta2 must be in [0, 1), got {}", o.beta2);
  AUTOTP_CHECK(o.eps >= 0.0, "AdamW: eps must be >= 0, got {}", o.eps);
  AUTOTP_CHECK(o.weight_decay >= 0.0, "AdamW: weight_decay must be >= 0, got {}", o.weight_decay);
}

}  // namespace

kernels::cpu::AdamWStep adamw_step_constants(const AdamWOptions& options, int64_t t,
                                             bool apply_weight_decay) {
  return step_constants(options, t, apply_weight_decay);
}

bool exclude_bias_and_norm(const std::string& name) {
  const std::string bias = ".bias";
  const bool is_bias =
      name == "bias" || (name.size() > bias.size() &&
                         name.compare(name.size() - bias.size(), bias.size(), bias) == 0);
  return is_bias || name.find("norm") != std::string::npos;
}

AdamW::AdamW(NamedTensors params, AdamWOptions options)
    : params_(std::move(params)), state_(params_.size()), options_(std::move(options)) {
  check_options(options_);
  std::unordered_set<std::string> seen;
  for (const auto& [name, p] : params_) {
    AUTOTP_CHECK(p.defined(), "AdamW: parameter '{}' is undefined", name);
    AUTOTP_CHECK(seen.insert(name).second, "AdamW: parameter name '{}' appears twice", name);
    AUTOTP_CHECK(is_floating(p.dtype()), "AdamW: parameter '{}' has non-floating dtype {}", name,
                 dtype_name(p.dtype()));
    AUTOTP_CHECK(p.is_contiguous(), "AdamW: parameter '{}' (shape {}) is not contiguous", name,
                 shape_str(p.shape()));
  }
}

void AdamW::set_model_copies(std::vector<Tensor> copies) {
  AUTOTP_CHECK(copies.empty() || copies.size() == params_.size(),
               "AdamW: {} model copies for {} parameters (expected none or one per parameter)",
               copies.size(), params_.size());
  for (size_t i = 0; i < copies.size(); ++i) {
    const Tensor& c = copies[i];
    if (!c.defined()) continue;
    const auto& [name, p] = params_[i];
    AUTOTP_CHECK(c.shape() == p.shape() && c.device() == p.device(),
                 "AdamW: model copy of '{}' has shape {} on {}, expected {} on {}", name,
                 shape_str(c.shape()), c.device().str(), shape_str(p.shape()), p.device().str());
    AUTOTP_CHECK(is_floating(c.dtype()) && c.is_contiguous(),
                 "AdamW: model copy of '{}' must be a contiguous floating tensor (got {})", name,
                 dtype_name(c.dtype()));
    AUTOTP_CHECK(!c.shares_storage(p), "AdamW: model copy of '{}' aliases the parameter", name);
  }
  model_copies_ = std::move(copies);
}

void AdamW::step() {
  std::vector<Tensor> grads(params_.size());
  for (size_t i = 0; i < params_.size(); ++i)
    grads[i] = params_[i].second.grad();
  update_all(grads, 1.0, /*any_dtype=*/false);
}

void AdamW::step_with_grads(const std::vector<Tensor>& grads, double grad_scale) {
  AUTOTP_CHECK(grads.size() == params_.size(), "AdamW: {} gradients given for {} parameters",
               grads.size(), params_.size());
  AUTOTP_CHECK(grad_scale > 0.0 && std::isfinite(grad_scale),
               "AdamW: the gradient scale must be positive and finite, got {}", grad_scale);
  update_all(grads, grad_scale, /*any_dtype=*/true);
}

void AdamW::update_all(const std::vector<Tensor>& grads, double grad_scale, bool any_dtype) {
  check_options(options_);
  NoGradGuard no_grad;
  // Every gradient is checked before any parameter changes.
  for (size_t i = 0; i < params_.size(); ++i) {
    if (grads[i].defined()) check_grad(i, grads[i], any_dtype);
  }
  // CUDA f32/f64 parameters: one multi-tensor launch per (device, dtype, grad dtype, copy
  // dtype).
  std::map<std::tuple<int, int, int, int>, std::vector<size_t>> fused_groups;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& grad = grads[i];
    if (!grad.defined()) continue;  // PyTorch skips parameters without a gradient
    const Tensor& p = params_[i].second;
    if (fused_cuda_eligible(i, grad)) {
      const Tensor copy = model_copies_.empty() ? Tensor() : model_copies_[i];
      const int copy_dtype = copy.defined() ? static_cast<int>(copy.dtype()) : -1;
      fused_groups[{p.device().index, static_cast<int>(p.dtype()), static_cast<int>(grad.dtype()),
                    copy_dtype}]
          .push_back(i);
    } else {
      Tensor g = grad.to(p.dtype());
      if (grad_scale != 1.0) g = ops::mul(g, grad_scale);
      update(i, g);
    }
  }
  for (const auto& [key, indices] : fused_groups)
    update_fused_cuda(indices, grads, grad_scale);
}

bool AdamW::applies_decay(size_t index) const {
  return !(options_.no_weight_decay && options_.no_weight_decay(params_[index].first));
}

void AdamW::check_grad(size_t index, const Tensor& grad, bool any_dtype) const {
  const auto& [name, param] = params_[index];
  AUTOTP_CHECK(grad.shape() == param.shape(), "AdamW: gradient of '{}' has shape {}, expected {}",
               name, shape_str(grad.shape()), shape_str(param.shape()));
  AUTOTP_CHECK(is_floating(grad.dtype()), "AdamW: gradient of '{}' has non-floating dtype {}", name,
               dtype_name(grad.dtype()));
  AUTOTP_CHECK((any_dtype || grad.dtype() == param.dtype()) && grad.device() == param.device(),
               "AdamW: gradient of '{}' is {} on {}, parameter is {} on {}", name,
               dtype_name(grad.dtype()), grad.device().str(), dtype_name(param.dtype()),
               param.device().str());
}

void AdamW::begin_update(size_t index) {
  const Tensor& param = params_[index].second;
  AdamWParamState& st = state_[index];
  if (!st.exp_avg.defined()) {
    st.exp_avg = Tensor::zeros(param.shape(), param.dtype(), param.device());
    st.exp_avg_sq = Tensor::zeros(param.shape(), param.dtype(), param.device());
  }
  st.step += 1;
}

void AdamW::update(size_t index, const Tensor& grad) {
  begin_update(index);
  const Tensor& param = params_[index].second;
  const AdamWParamState& st = state_[index];
  const bool apply_decay = applies_decay(index);
  if (param.device().is_cpu() && (param.dtype() == DType::F32 || param.dtype() == DType::F64)) {
    const Tensor g = grad.contiguous();
    const kernels::cpu::AdamWStep constants = step_constants(options_, st.step, apply_decay);
    dispatch_float(param.dtype(), "AdamW", [&]<typename T>(TypeTag<T>) {
      kernels::cpu::adamw_step<T>(param.data<T>(), st.exp_avg.data<T>(), st.exp_avg_sq.data<T>(),
                                  g.data<T>(), param.numel(), constants);
    });
  } else {
    adamw_update_with_ops(param, st.exp_avg, st.exp_avg_sq, grad, st.step, options_, apply_decay);
  }
  if (!model_copies_.empty() && model_copies_[index].defined()) model_copies_[index].copy_(param);
}

bool AdamW::fused_cuda_eligible(size_t index, const Tensor& grad) const {
#ifdef AUTOTP_WITH_CUDA
  const Tensor& p = params_[index].second;
  const bool grad_readable =
      grad.dtype() == p.dtype() || grad.dtype() == DType::BF16 || grad.dtype() == DType::F16;
  return p.device().is_cuda() && (p.dtype() == DType::F32 || p.dtype() == DType::F64) &&
         grad_readable;
#else
  (void)index;
  (void)grad;
  return false;
#endif
}

void AdamW::update_fused_cuda(const std::vector<size_t>& indices, const std::vector<Tensor>& grads,
                              double grad_scale) {
#ifdef AUTOTP_WITH_CUDA
  AUTOTP_ASSERT(!indices.empty(), "update_fused_cuda without parameters");
  const Tensor& first = params_[indices[0]].second;
  int copy_dtype = kernels::cuda::kAdamWNoCopy;
  std::vector<kernels::cuda::AdamWTensor> table;
  std::vector<Tensor> contiguous_grads;  // alive until the launch is enqueued
  for (size_t i : indices) {
    begin_update(i);
    const Tensor& p = params_[i].second;
    const AdamWParamState& st = state_[i];
    const Tensor g = grads[i].contiguous();
    contiguous_grads.push_back(g);
    const Tensor copy = model_copies_.empty() ? Tensor() : model_copies_[i];
    if (copy.defined()) copy_dtype = static_cast<int>(copy.dtype());
    table.push_back({p.raw_data(), st.exp_avg.raw_data(), st.exp_avg_sq.raw_data(), g.raw_data(),
                     copy.defined() ? copy.raw_data() : nullptr, p.numel(),
                     step_constants(options_, st.step, applies_decay(i))});
  }
  const auto count = static_cast<int64_t>(table.size());
  const int64_t bytes = kernels::cuda::adamw_workspace_bytes(table.data(), count);
  const Tensor workspace = Tensor::empty({(bytes + 7) / 8}, DType::I64, first.device());
  kernels::cuda::adamw_multi_tensor(
      static_cast<int>(first.dtype()), static_cast<int>(grads[indices[0]].dtype()), copy_dtype,
      grad_scale, table.data(), count, workspace.raw_data(), workspace.numel() * 8, nullptr);
#else
  (void)indices;
  (void)grads;
  (void)grad_scale;
  AUTOTP_FAIL("AdamW: CUDA parameters need a build with the CUDA backend");
#endif
}

void AdamW::zero_grad() {
  for (const auto& [name, p] : params_)
    p.zero_grad();
}

NamedTensors AdamW::state_dict() const {
  NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    const AdamWParamState& st = state_[i];
    if (st.step == 0) continue;
    const std::string& name = params_[i].first;
    out.emplace_back(name + ".exp_avg", st.exp_avg);
    out.emplace_back(name + ".exp_avg_sq", st.exp_avg_sq);
    out.emplace_back(name + ".step", Tensor::from_vector_i64({st.step}, {}));
  }
  return out;
}

void AdamW::load_state_dict(const NamedTensors& state) {
  std::unordered_map<std::string, size_t> index_of;
  for (size_t i = 0; i < params_.size(); ++i)
    index_of.emplace(params_[i].first, i);
  std::vector<AdamWParamState> loaded(params_.size());
  std::vector<int> parts(params_.size(), 0);
  for (const auto& [key, value] : state) {
    const size_t dot = key.rfind('.');
    AUTOTP_CHECK(dot != std::string::npos, "AdamW state: key '{}' has no '.<field>' suffix", key);
    const std::string param_name = key.substr(0, dot), field = key.substr(dot + 1);
    const auto it = index_of.find(param_name);
    AUTOTP_CHECK(it != index_of.end(), "AdamW state: '{}' names no parameter of this optimizer",
                 key);
    const Tensor& param = params_[it->second].second;
    AdamWParamState& st = loaded[it->second];
    if (field == "step") {
      AUTOTP_CHECK(value.numel() == 1, "AdamW state: '{}' must hold one value, has {}", key,
                   value.numel());
      const double step = value.to_vector()[0];
      AUTOTP_CHECK(step >= 1 && step == std::floor(step),
                   "AdamW state: '{}' must be a positive integer, got {}", key, step);
      st.step = static_cast<int64_t>(step);
    } else if (field == "exp_avg" || field == "exp_avg_sq") {
      AUTOTP_CHECK(value.shape() == param.shape(), "AdamW state: '{}' has shape {}, expected {}",
                   key, shape_str(value.shape()), shape_str(param.shape()));
      Tensor buffer = Tensor::empty(param.shape(), param.dtype(), param.device());
      buffer.copy_(value);
      (field == "exp_avg" ? st.exp_avg : st.exp_avg_sq) = buffer;
    } else {
      AUTOTP_FAIL(
          "AdamW state: unknown field '{}' in key '{}' (expected exp_avg, exp_avg_sq "
          "or step)",
          field, key);
    }
    ++parts[it->second];
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    AUTOTP_CHECK(parts[i] == 0 || (parts[i] == 3 && loaded[i].exp_avg.defined() &&
                                   loaded[i].exp_avg_sq.defined() && loaded[i].step > 0),
                 "AdamW state: parameter '{}' needs exp_avg, exp_avg_sq and step together",
                 params_[i].first);
  }
  state_ = std::move(loaded);
}

void AdamW::load_param_state(size_t index, int64_t step, const Tensor& exp_avg,
                             const Tensor& exp_avg_sq) {
  AUTOTP_ASSERT(index < params_.size(), "parameter {} of {}", index, params_.size());
  const std::string& name = params_[index].first;
  const Tensor& param = params_[index].second;
  AUTOTP_CHECK(step >= 1, "AdamW state: '{}.step' must be a positive integer, got {}", name, step);
  const auto buffer = [&](const char* field, const Tensor& value) {
    AUTOTP_CHECK(value.shape() == param.shape(), "AdamW state: '{}.{}' has shape {}, expected {}",
                 name, field, shape_str(value.shape()), shape_str(param.shape()));
    Tensor out = Tensor::empty(param.shape(), param.dtype(), param.device());
    out.copy_(value);
    return out;
  };
  AdamWParamState st;
  st.step = step;
  st.exp_avg = buffer("exp_avg", exp_avg);
  st.exp_avg_sq = buffer("exp_avg_sq", exp_avg_sq);
  state_[index] = std::move(st);
}

void adamw_update_with_ops(const Tensor& param, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                           const Tensor& grad, int64_t step, const AdamWOptions& options,
                           bool apply_weight_decay) {
  AUTOTP_CHECK(step >= 1, "adamw_update_with_ops: step must be >= 1, got {}", step);
  NoGradGuard no_grad;
  const kernels::cpu::AdamWStep c = step_constants(options, step, apply_weight_decay);
  Tensor g = grad;
  if (c.weight_decay != 0.0) {
    if (c.decoupled_weight_decay) {
      param.copy_(ops::mul(param, 1.0 - c.lr * c.weight_decay));
    } else {
      g = ops::add(g, ops::mul(param, c.weight_decay));
    }
  }
  // lerp(m, g, w) with w = 1 - beta1, in the same two branches as the kernel.
  const double w = 1.0 - c.beta1;
  const Tensor diff = ops::sub(g, exp_avg);
  exp_avg.copy_(std::abs(w) < 0.5 ? ops::add(exp_avg, ops::mul(diff, w))
                                  : ops::sub(g, ops::mul(diff, 1.0 - w)));
  exp_avg_sq.copy_(
      ops::add(ops::mul(exp_avg_sq, c.beta2), ops::mul(ops::mul(g, 1.0 - c.beta2), g)));
  const Tensor denom = ops::add(ops::div(ops::sqrt(exp_avg_sq), c.bias_correction2_sqrt), c.eps);
  param.copy_(ops::add(param, ops::div(ops::mul(exp_avg, -c.step_size), denom)));
}

}  // namespace autotp
