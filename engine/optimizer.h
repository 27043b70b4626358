// AdamW (and coupled-decay Adam) with torch.optim.AdamW's semantics over named parameters,
// updating them in place; its per-parameter state is exposed by name for checkpoints.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace autotp {

namespace kernels::cpu {
struct AdamWStep;
}  // namespace kernels::cpu

using NamedTensor = std::pair<std::string, Tensor>;
using NamedTensors = std::vector<NamedTensor>;

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  // true: decoupled decay p -= lr*wd*p before the moments (torch.optim.AdamW; DeepSpeed's
  // "AdamW" and "Adam" with its default adam_w_mode). false: L2 decay g += wd*p folded into
  // the gradient (torch.optim.Adam; DeepSpeed "Adam" with adam_w_mode: false).
  bool decoupled_weight_decay = true;
  bool bias_correction = true;
  // When set, parameters whose name it accepts get no weight decay (DeepSpeed decays every
  // parameter, so the default is unset). See exclude_bias_and_norm below.
  std::function<bool(const std::string&)> no_weight_decay;
};

// A no_weight_decay predicate: biases ("....bias") and norm weights (a name containing "norm",
// e.g. "model.layers.0.input_layernorm.weight", "model.norm.weight", "...q_norm.weight").
bool exclude_bias_and_norm(const std::string& name);

// Per parameter, as in PyTorch: the step count t of that parameter (parameters skipped for a
// missing gradient do not advance), and the moments with the parameter's shape/dtype/device.
struct AdamWParamState {
  int64_t step = 0;
  Tensor exp_avg;     // m, same shape as the parameter (allocated on its first update)
  Tensor exp_avg_sq;  // v, same shape as the parameter
};

// One update of parameter p with gradient g at its step t (t counted from 1), in PyTorch's order:
//   p *= 1 - lr*wd                     (decoupled decay, when wd != 0)
//   m = lerp(m, g, 1 - beta1);  v = beta2*v + (1 - beta2)*g*g
//   bc1 = 1 - beta1^t;  bc2 = 1 - beta2^t          (1 and 1 without bias correction)
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
// CPU f32/f64 parameters go through the fused kernel kernels/cpu/adamw.h; CUDA f32/f64
// parameters through one multi-tensor launch per (device, dtype) group (kernels/cuda/adamw.h,
// bit-identical to the CPU kernel); anything else (e.g. bf16 parameters without master
// weights) through adamw_update_with_ops (the same formula as tensor ops).
class AdamW {
 public:
  // `params` are the trainable leaves with their (Hugging Face) names; names must be unique.
  AdamW(NamedTensors params, AdamWOptions options);

  // Updates every parameter that has a gradient, under NoGradGuard, using lr() as the rate.
  void step();
  // The same update from gradients the caller holds (the parameters' own grad() are not read):
  // `grads` is parallel to params(), an undefined entry skips its parameter (as a missing
  // gradient does), each defined one has its parameter's shape and device and any floating
  // dtype. Each gradient is converted to its parameter's dtype and, when grad_scale != 1,
  // multiplied by it in that dtype (as ops::mul(g, grad_scale) would), then the update runs as
  // in step(). On CUDA the conversion and the scale happen inside the fused kernel, with no
  // copy of the gradients: f32 masters are updated straight from bf16 model gradients, with a
  // clipping coefficient folded in.
  void step_with_grads(const std::vector<Tensor>& grads, double grad_scale = 1.0);
  // Drops every parameter's gradient (the next backward pass allocates fresh ones).
  void zero_grad();

  // Model copies for mixed precision (engine/mixed_precision.h): after parameter i is updated,
  // copies[i], when defined, receives its new value converted to the copy's dtype (on CUDA
  // inside the fused kernel, so f32 master weights write their bf16 model weights in the same
  // pass). `copies` is empty (none) or parallel to params(), each defined copy contiguous with
  // its parameter's shape and device.
  void set_model_copies(std::vector<Tensor> copies);

  double lr() const { return options_.lr; }
  void set_lr(double lr) { options_.lr = lr; }
  const AdamWOptions& options() const { return options_; }
  const NamedTensors& params() const { return params_; }
  const AdamWParamState& state(size_t index) const { return state_[index]; }

  // The state as named tensors: for each parameter that has taken a step, "<name>.exp_avg",
  // "<name>.exp_avg_sq" (the live buffers, not copies) and "<name>.step" (a 0-dim i64 tensor).
  NamedTensors state_dict() const;
  // Restores state_dict() output: copies the moments into this optimizer's buffers. Every
  // entry must name a known parameter with matching shapes; missing parameters start fresh.
  void load_state_dict(const NamedTensors& state);
  // Restores parameter `index`'s state alone (a checkpoint loaded one parameter at a time):
  // the moments are copied into new buffers shaped like the parameter; step >= 1.
  void load_param_state(size_t index, int64_t step, const Tensor& exp_avg,
                        const Tensor& exp_avg_sq);

 private:
  // Throws when the gradient's shape or device (or, unless any_dtype, its dtype) differs from
  // the parameter's.
  void check_grad(size_t index, const Tensor& grad, bool any_dtype) const;
  void update_all(const std::vector<Tensor>& grads, double grad_scale, bool any_dtype);
  // Allocates the moments on first use and advances the step count.
  void begin_update(size_t index);
  void update(size_t index, const Tensor& grad);
  // One multi-tensor CUDA launch over `indices` (same device, dtype and copy dtype).
  void update_fused_cuda(const std::vector<size_t>& indices, const std::vector<Tensor>& grads,
                         double grad_scale);
  bool fused_cuda_eligible(size_t index, const Tensor& grad) const;
  bool applies_decay(size_t index) const;  // false when no_weight_decay excludes its name

  NamedTensors params_;
  std::vector<AdamWParamState> state_;  // parallel to params_
  std::vector<Tensor> model_copies_;    // empty, or parallel to params_ (undefined: none)
  AdamWOptions options_;
};

// The update above with tensor ops (any device): param, exp_avg, exp_avg_sq updated in place
// through copy_. `step` is the parameter's step count after incrementing (>= 1).
// The kernel constants of step t (>= 1) as AdamW computes them (for flat ZeRO updates).
kernels::cpu::AdamWStep adamw_step_constants(const AdamWOptions& options, int64_t t,
                                             bool apply_weight_decay);

void adamw_update_with_ops(const Tensor& param, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                           const Tensor& grad, int64_t step, const AdamWOptions& options,
                           bool apply_weight_decay);

}  // namespace autotp
