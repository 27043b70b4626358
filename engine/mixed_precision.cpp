// DynamicLossScaler (DeepSpeed's update rule), the inf/NaN gradient check and
// MixedPrecisionOptimizer (f32 masters behind low-precision model parameters).
#include "engine/mixed_precision.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "engine/clip.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/grad_accumulate.h"
#endif

namespace autotp {

// ---- loss scaler ---------------------------------------------------------------------------

LossScalerOptions LossScalerOptions::from_config(const Fp16Config& fp16) {
  LossScalerOptions o;
  o.dynamic = fp16.loss_scale == 0.0;
  o.initial_scale =
      o.dynamic ? std::ldexp(1.0, static_cast<int>(fp16.initial_scale_power)) : fp16.loss_scale;
  o.scale_window = fp16.loss_scale_window;
  o.hysteresis = fp16.hysteresis;
  o.consecutive_hysteresis = fp16.consecutive_hysteresis;
  o.min_scale = fp16.min_loss_scale;
  return o;
}

DynamicLossScaler::DynamicLossScaler(LossScalerOptions options) : options_(options) {
  AUTOTP_CHECK(options_.initial_scale > 0.0 && std::isfinite(options_.initial_scale),
               "loss scaler: the initial scale must be positive and finite, got {}",
               options_.initial_scale);
  AUTOTP_CHECK(options_.scale_window >= 1, "loss scaler: loss_scale_window must be >= 1, got {}",
               options_.scale_window);
  AUTOTP_CHECK(options_.hysteresis >= 1, "loss scaler: hysteresis must be >= 1, got {}",
               options_.hysteresis);
  AUTOTP_CHECK(options_.min_scale > 0.0, "loss scaler: min_loss_scale must be > 0, got {}",
               options_.min_scale);
  state_.cur_scale = options_.initial_scale;
  state_.cur_hysteresis = options_.hysteresis;
}

void DynamicLossScaler::update(bool overflow) {
  if (!options_.dynamic) return;
  LossScalerState& s = state_;
  if (overflow) {
    if (options_.hysteresis == 1 || s.cur_hysteresis == 1) {
      AUTOTP_CHECK(!(s.cur_scale == options_.min_scale && options_.raise_error_at_min_scale),
                   "fp16 loss scale is already at min_loss_scale ({}) and the gradients still "
                   "overflow (inf/NaN) at iteration {}: training cannot continue",
                   options_.min_scale, s.cur_iter);
      s.cur_scale = std::max(s.cur_scale / 2.0, options_.min_scale);
    } else {
      s.cur_hysteresis -= 1;
    }
    s.last_overflow_iter = s.cur_iter;
  } else {
    if (options_.consecutive_hysteresis) s.cur_hysteresis = options_.hysteresis;
    if ((s.cur_iter - s.last_overflow_iter) % options_.scale_window == 0) {
      if (!options_.consecutive_hysteresis) s.cur_hysteresis = options_.hysteresis;
      s.cur_scale *= 2.0;
    }
  }
  s.cur_iter += 1;
}

void DynamicLossScaler::set_state(const LossScalerState& state) {
  AUTOTP_CHECK(state.cur_scale > 0.0 && std::isfinite(state.cur_scale),
               "loss scaler state: cur_scale must be positive and finite, got {}", state.cur_scale);
  AUTOTP_CHECK(state.cur_iter >= 0 && state.last_overflow_iter >= -1 &&
                   state.last_overflow_iter < state.cur_iter,
               "loss scaler state: iteration {} with last overflow at {} is inconsistent",
               state.cur_iter, state.last_overflow_iter);
  AUTOTP_CHECK(state.cur_hysteresis >= 1 && state.cur_hysteresis <= options_.hysteresis,
               "loss scaler state: cur_hysteresis {} is outside [1, {}]", state.cur_hysteresis,
               options_.hysteresis);
  state_ = state;
}

bool grads_have_inf_or_nan(const NamedTensors& params) {
  // Squares summed in f64 stay finite for every finite f32 (or narrower) value, so the sum is
  // finite exactly when no element is inf or NaN.
  return !std::isfinite(grad_sq_sum(params));
}

// ---- MixedPrecisionOptimizer --------------------------------------------------------------

namespace {

// An f32 leaf with the value of each model parameter, on the parameter's device.
NamedTensors make_masters(const NamedTensors& model_params) {
  NamedTensors masters;
  for (const auto& [name, p] : model_params) {
    AUTOTP_CHECK(p.defined() && is_floating(p.dtype()),
                 "mixed precision: parameter '{}' must be a defined floating tensor", name);
    Tensor master = Tensor::empty(p.shape(), DType::F32, p.device());
    master.copy_(p.detach());
    master.set_requires_grad(true);
    masters.emplace_back(name, master);
  }
  return masters;
}

std::vector<Tensor> tensors_of(const NamedTensors& named) {
  std::vector<Tensor> out;
  for (const auto& [name, t] : named)
    out.push_back(t);
  return out;
}

Tensor scalar_f64(double v) {
  return Tensor::from_vector({v}, {}, DType::F64);
}

}  // namespace

MixedPrecisionOptimizer::MixedPrecisionOptimizer(NamedTensors model_params, AdamWOptions options,
                                                 std::optional<LossScalerOptions> loss_scaling)
    : model_params_(std::move(model_params)),
      masters_(make_masters(model_params_)),
      adamw_(masters_, std::move(options)) {
  adamw_.set_model_copies(tensors_of(model_params_));
  if (loss_scaling) scaler_.emplace(*loss_scaling);
}

Tensor MixedPrecisionOptimizer::scale_loss(const Tensor& loss) const {
  return scaler_ ? ops::mul(loss, scaler_->scale()) : loss;
}

bool MixedPrecisionOptimizer::reads_model_grads() const {
  if (scaler_) return false;
  for (const auto& [name, m] : masters_) {
    if (m.grad().defined()) return false;
  }
  return true;
}

namespace {

#ifdef AUTOTP_WITH_CUDA
// The model gradients `indices` (CUDA, one dtype, contiguous f32 CUDA masters) added into the
// master gradients in one launch: master.grad (+)= (f32(g) * scale1) * scale2 with the tensor
// ops' roundings, allocating the master gradients that do not exist yet.
void accumulate_on_cuda(const NamedTensors& model_params, const NamedTensors& masters,
                        const std::vector<size_t>& indices, double scale1, double scale2) {
  std::vector<kernels::cuda::AccumulateTensor> table;
  std::vector<Tensor> sources;  // alive until the launch is enqueued
  const Tensor& first = model_params[indices.front()].second;
  for (size_t i : indices) {
    const Tensor g = model_params[i].second.grad().contiguous();
    const Tensor& master = masters[i].second;
    Tensor acc = master.grad();
    const bool add = acc.defined();
    if (!add) {
      acc = Tensor::empty(master.shape(), DType::F32, master.device());
      master.set_grad(acc);
    }
    table.push_back({static_cast<float*>(acc.raw_data()), g.raw_data(), g.numel(), add ? 1 : 0});
    sources.push_back(g);
  }
  const auto count = static_cast<int64_t>(table.size());
  const int64_t bytes = kernels::cuda::accumulate_workspace_bytes(table.data(), count);
  const Tensor workspace = Tensor::empty({(bytes + 7) / 8}, DType::I64, first.device());
  kernels::cuda::accumulate_widened_multi_tensor(static_cast<int>(first.grad().dtype()), scale1,
                                                 scale2, table.data(), count, workspace.raw_data(),
                                                 workspace.numel() * 8, nullptr);
}
#endif

}  // namespace

void MixedPrecisionOptimizer::accumulate_grads() {
  NoGradGuard no_grad;
  const double inv_scale = 1.0 / loss_scale();
  // A clipping coefficient taken from the model gradients applies to exactly these gradients
  // (the master gradients were empty when it was computed).
  const double clip_scale = pending_grad_scale_;
  pending_grad_scale_ = 1.0;
#ifdef AUTOTP_WITH_CUDA
  // CUDA gradients into CUDA f32 masters: one fused launch per (device, gradient dtype).
  std::map<std::pair<int, int>, std::vector<size_t>> fused;
#endif
  for (size_t i = 0; i < model_params_.size(); ++i) {
    const Tensor& p = model_params_[i].second;
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    const Tensor& master = masters_[i].second;
    const Tensor acc = master.grad();
#ifdef AUTOTP_WITH_CUDA
    const bool fusable = g.device().is_cuda() && master.device() == g.device() &&
                         (!acc.defined() || (acc.dtype() == DType::F32 && acc.is_contiguous() &&
                                             acc.device() == g.device()));
    if (fusable) {
      fused[{g.device().index, static_cast<int>(g.dtype())}].push_back(i);
      continue;
    }
#endif
    Tensor g32 = g.to(DType::F32);  // [shape of p]; g itself when already f32
    if (inv_scale != 1.0) g32 = ops::mul(g32, inv_scale);
    if (clip_scale != 1.0) g32 = ops::mul(g32, clip_scale);
    // The model's gradient record is dropped below, so g32 may alias it.
    master.set_grad(acc.defined() ? ops::add(acc, g32) : g32);
    p.zero_grad();
  }
#ifdef AUTOTP_WITH_CUDA
  for (const auto& [key, indices] : fused) {
    accumulate_on_cuda(model_params_, masters_, indices, inv_scale, clip_scale);
    for (size_t i : indices)
      model_params_[i].second.zero_grad();
  }
#endif
}

double MixedPrecisionOptimizer::grad_norm() {
  if (reads_model_grads() && pending_grad_scale_ == 1.0) return global_grad_norm(model_params_);
  accumulate_grads();
  return global_grad_norm(masters_);
}

double MixedPrecisionOptimizer::clip_grad_norm(double max_norm) {
  AUTOTP_CHECK(max_norm > 0.0, "gradient clipping: max_norm must be > 0, got {}", max_norm);
  if (reads_model_grads() && pending_grad_scale_ == 1.0) {
    // The model gradients widen to f32 exactly: the masters' norm, without the copy.
    const double norm = global_grad_norm(model_params_);
    if (std::isfinite(norm)) pending_grad_scale_ = clip_coefficient(norm, max_norm);
    return norm;
  }
  accumulate_grads();
  return autotp::clip_grad_norm(masters_, max_norm);
}

bool MixedPrecisionOptimizer::step(std::optional<bool> overflow_everywhere) {
  if (reads_model_grads()) {
    // No loss scaler, so no overflow to skip: AdamW reads the model gradients (16-bit on
    // CUDA) with the clipping coefficient folded in, then they are dropped.
    std::vector<Tensor> grads;
    for (const auto& [name, p] : model_params_)
      grads.push_back(p.grad());
    adamw_.step_with_grads(grads, pending_grad_scale_);
    pending_grad_scale_ = 1.0;
    for (const auto& [name, p] : model_params_)
      p.zero_grad();
    return true;
  }
  accumulate_grads();
  bool overflow = false;
  if (scaler_) {
    overflow =
        overflow_everywhere.has_value() ? *overflow_everywhere : grads_have_inf_or_nan(masters_);
    scaler_->update(overflow);
  }
  if (!overflow) adamw_.step();
  for (const auto& [name, m] : masters_)
    m.zero_grad();
  return !overflow;
}

bool MixedPrecisionOptimizer::record_overflow(bool overflow) {
  if (!scaler_) return true;
  scaler_->update(overflow);
  return !overflow;
}

void MixedPrecisionOptimizer::set_loss_scaler_state(const LossScalerState& state) {
  AUTOTP_CHECK(scaler_.has_value(),
               "a loss scaler state was given to a mixed-precision optimizer without loss "
               "scaling");
  scaler_->set_state(state);
}

void MixedPrecisionOptimizer::write_model_params() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < masters_.size(); ++i)
    model_params_[i].second.copy_(masters_[i].second);
}

void MixedPrecisionOptimizer::zero_grad() {
  pending_grad_scale_ = 1.0;
  for (const auto& [name, p] : model_params_)
    p.zero_grad();
  for (const auto& [name, m] : masters_)
    m.zero_grad();
}

namespace {

// Each master's value in `weights` by name; every master needs exactly one of the right shape.
std::vector<const Tensor*> match_master_weights(const NamedTensors& masters,
                                                const NamedTensors& weights) {
  std::unordered_map<std::string, const Tensor*> by_name;
  for (const auto& [name, w] : weights) {
    AUTOTP_CHECK(by_name.emplace(name, &w).second, "master weights: '{}' appears twice", name);
  }
  std::vector<const Tensor*> matched;
  for (const auto& [name, m] : masters) {
    const auto it = by_name.find(name);
    AUTOTP_CHECK(it != by_name.end(), "master weights: no value for parameter '{}'", name);
    AUTOTP_CHECK(it->second->shape() == m.shape(), "master weights: '{}' has shape {}, expected {}",
                 name, shape_str(it->second->shape()), shape_str(m.shape()));
    matched.push_back(it->second);
  }
  AUTOTP_CHECK(weights.size() == masters.size(),
               "master weights: {} tensors given for {} parameters (unknown names among them)",
               weights.size(), masters.size());
  return matched;
}

}  // namespace

void MixedPrecisionOptimizer::set_master_weights(const NamedTensors& weights) {
  const std::vector<const Tensor*> values = match_master_weights(masters_, weights);
  NoGradGuard no_grad;
  for (size_t i = 0; i < masters_.size(); ++i) {
    const Tensor& m = masters_[i].second;
    m.copy_(values[i]->detach());
    model_params_[i].second.copy_(m);
  }
}

NamedTensors MixedPrecisionOptimizer::state_dict() const {
  NamedTensors out = adamw_.state_dict();
  for (const auto& [name, m] : masters_)
    out.emplace_back(name + ".master_weight", m);
  if (scaler_) {
    const LossScalerState& s = scaler_->state();
    out.emplace_back("loss_scaler.cur_scale", scalar_f64(s.cur_scale));
    out.emplace_back("loss_scaler.cur_iter", scalar_f64(static_cast<double>(s.cur_iter)));
    out.emplace_back("loss_scaler.last_overflow_iter",
                     scalar_f64(static_cast<double>(s.last_overflow_iter)));
    out.emplace_back("loss_scaler.cur_hysteresis",
                     scalar_f64(static_cast<double>(s.cur_hysteresis)));
  }
  return out;
}

void MixedPrecisionOptimizer::load_state_dict(const NamedTensors& state) {
  const std::string master_suffix = ".master_weight", scaler_prefix = "loss_scaler.";
  NamedTensors adamw_state, master_weights;
  std::unordered_map<std::string, double> scaler_values;
  for (const auto& [key, value] : state) {
    if (key.size() > master_suffix.size() &&
        key.compare(key.size() - master_suffix.size(), master_suffix.size(), master_suffix) == 0) {
      master_weights.emplace_back(key.substr(0, key.size() - master_suffix.size()), value);
    } else if (scaler_ && key.rfind(scaler_prefix, 0) == 0) {
      AUTOTP_CHECK(value.numel() == 1, "mixed precision state: '{}' must hold one value", key);
      scaler_values[key.substr(scaler_prefix.size())] = value.to_vector()[0];
    } else {
      adamw_state.emplace_back(key, value);
    }
  }
  // Everything is checked before anything changes.
  std::optional<DynamicLossScaler> scaler = scaler_;
  if (scaler) {
    for (const char* field : {"cur_scale", "cur_iter", "last_overflow_iter", "cur_hysteresis"}) {
      AUTOTP_CHECK(scaler_values.count(field) == 1,
                   "mixed precision state: 'loss_scaler.{}' is missing", field);
    }
    AUTOTP_CHECK(scaler_values.size() == 4,
                 "mixed precision state: unknown loss_scaler.* entries ({} given, 4 expected)",
                 scaler_values.size());
    LossScalerState s;
    s.cur_scale = scaler_values.at("cur_scale");
    s.cur_iter = static_cast<int64_t>(scaler_values.at("cur_iter"));
    s.last_overflow_iter = static_cast<int64_t>(scaler_values.at("last_overflow_iter"));
    s.cur_hysteresis = static_cast<int64_t>(scaler_values.at("cur_hysteresis"));
    scaler->set_state(s);
  }
  if (!master_weights.empty()) match_master_weights(masters_, master_weights);
  adamw_.load_state_dict(adamw_state);  // checks, then replaces the state
  scaler_ = scaler;
  if (!master_weights.empty()) set_master_weights(master_weights);
}

}  // namespace autotp
