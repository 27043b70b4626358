// Mixed precision as DeepSpeed's `bf16` and `fp16` sections describe it: f32 master weights
// and AdamW state behind low-precision model parameters, and the dynamic fp16 loss scaler.
#pragma once

#include <cstdint>
#include <optional>

#include "engine/config.h"
#include "engine/optimizer.h"

namespace autotp {

// DeepSpeed's fp16 section as the scaler uses it.
struct LossScalerOptions {
  bool dynamic = true;             // false: a static scale (fp16.loss_scale > 0)
  double initial_scale = 65536.0;  // 2^initial_scale_power, or the static loss_scale
  int64_t scale_window = 1000;     // loss_scale_window
  int64_t hysteresis = 2;          // hysteresis (DeepSpeed's delayed_shift)
  bool consecutive_hysteresis = false;
  double min_scale = 1.0;  // min_loss_scale
  // DeepSpeed's raise_error_at_min_scale: an overflow while the scale already is min_scale
  // ends the run with an error instead of retrying at the same scale forever.
  bool raise_error_at_min_scale = true;

  // From the YAML fp16 section: loss_scale 0 means dynamic, starting at 2^initial_scale_power.
  static LossScalerOptions from_config(const Fp16Config& fp16);
};

// The scaler's variables, for checkpoints (names as in DeepSpeed's DynamicLossScaler).
struct LossScalerState {
  double cur_scale = 1.0;
  int64_t cur_iter = 0;
  int64_t last_overflow_iter = -1;
  int64_t cur_hysteresis = 1;
};

// DeepSpeed's DynamicLossScaler.update_scale, one call per iteration (scale factor 2):
//   overflow: when hysteresis is 1 or the remaining hysteresis is 1, the scale halves (not
//     below min_scale; already at min_scale: an error when raise_error_at_min_scale);
//     otherwise only the remaining hysteresis drops by one. The iteration is remembered.
//   no overflow: with consecutive_hysteresis the remaining hysteresis refills; when
//     (iteration - last overflow iteration) is a multiple of scale_window the scale doubles
//     (and, without consecutive_hysteresis, the hysteresis refills).
// So a run without overflows doubles the scale after every scale_window iterations. (This is
// DeepSpeed's long-standing rule; its newest release waits one iteration longer.)
// A static scaler never changes its scale.
class DynamicLossScaler {
 public:
  explicit DynamicLossScaler(LossScalerOptions options = {});

  double scale() const { return state_.cur_scale; }
  // Records one iteration: `overflow` is true when its gradients held an inf or a NaN (the
  // caller skips that update).
  void update(bool overflow);

  const LossScalerOptions& options() const { return options_; }
  const LossScalerState& state() const { return state_; }
  void set_state(const LossScalerState& state);

 private:
  LossScalerOptions options_;
  LossScalerState state_;
};

// True when a defined gradient of `params` holds an inf or a NaN: their f64 sum of squares
// (engine/clip.h's grad_sq_sum; one multi-tensor launch and one read on CUDA) is not finite.
// f64 gradients of magnitude above ~1e154 would overflow it too (no training produces them).
bool grads_have_inf_or_nan(const NamedTensors& params);

// AdamW over f32 master weights for model parameters of any floating dtype D (bf16 on CUDA
// for `bf16.enabled`, f16 with loss scaling for `fp16.enabled`; f32 works anywhere, which is
// how the CPU tests it: CPU ops do not compute in bf16).
//
// Each step: the model gradients (dtype D, from backward) are added into f32 master
// gradients (divided by the loss scale) and dropped; with a loss scaler, a step whose master
// gradients hold an inf/NaN is skipped; AdamW updates the masters and, in the same pass,
// writes each model parameter as its master rounded to D (one fused launch on CUDA).
// Clipping and norms run on master_params() (f32 gradients).
//
// Without a loss scaler, while no master gradient has been accumulated (one backward per
// step), grad_norm, clip_grad_norm and step read the model gradients directly instead: the
// norm from them (they widen to f32 exactly, and ops::sum_of_squares adds in an order set by
// the tensors' sizes alone, not their dtypes: the same bits), the clipping coefficient kept
// and folded into the AdamW update, which reads the 16-bit gradients itself (no f32 copy of
// the gradients is written or read). The result is bit-identical to the master-gradient path.
class MixedPrecisionOptimizer {
 public:
  // `model_params`: the model's trainable leaves. The masters start as their f32 values (as
  // DeepSpeed builds them from the low-precision model); set_master_weights can load exact
  // f32 values instead.
  MixedPrecisionOptimizer(NamedTensors model_params, AdamWOptions options,
                          std::optional<LossScalerOptions> loss_scaling = std::nullopt);

  // loss * loss_scale() for backward (the loss itself without loss scaling).
  Tensor scale_loss(const Tensor& loss) const;
  // The current loss scale: 1 without loss scaling.
  double loss_scale() const { return scaler_ ? scaler_->scale() : 1.0; }

  // master.grad += f32(model.grad) / loss_scale() for each model gradient, then drops it.
  // Call after each backward of an accumulation window, or leave it to step().
  void accumulate_grads();
  // accumulate_grads(), then clip_grad_norm (engine/clip.h) on the master gradients; returns
  // the norm of the unscaled gradients before clipping. max_norm must be > 0. (Read from the
  // model gradients and applied inside step() when the class comment's conditions hold.)
  double clip_grad_norm(double max_norm);
  // The global norm of the unscaled gradients clip_grad_norm would compute, without clipping.
  double grad_norm();
  // accumulate_grads(); with a loss scaler, records whether the gradients overflowed
  // (`overflow` when the caller decided it for the whole job, e.g. from the global gradient
  // norm so that every rank skips together; else these master gradients are checked for
  // inf/NaN) and updates the scaler; unless they overflowed, the AdamW update of masters and
  // model parameters. Master gradients are dropped either way. Returns true when it updated.
  bool step(std::optional<bool> overflow = std::nullopt);
  // For updates made elsewhere (ZeroAdamW over master_params()): with a loss scaler, records
  // one iteration whose gradients did or did not overflow (decided for the whole job) and
  // returns whether to update; without one, true.
  bool record_overflow(bool overflow);
  // Restores the loss scaler's state (a checkpoint's); an error without loss scaling.
  void set_loss_scaler_state(const LossScalerState& state);
  // Drops the model and master gradients.
  void zero_grad();

  // The f32 masters (named as the model parameters); their grad() are the master gradients.
  const NamedTensors& master_params() const { return masters_; }
  const NamedTensors& model_params() const { return model_params_; }
  // Copies `weights` (named as the parameters, any dtype/device, every name required) into
  // the masters and writes the model parameters from them.
  void set_master_weights(const NamedTensors& weights);

  // Writes each model parameter as its master rounded to the model dtype: after the masters
  // were updated elsewhere (e.g. by ZeroAdamW over master_params()).
  void write_model_params();

  double lr() const { return adamw_.lr(); }
  void set_lr(double lr) { adamw_.set_lr(lr); }
  const AdamW& adamw() const { return adamw_; }
  // The AdamW over the masters (its params() are master_params()), e.g. for checkpoints.
  AdamW& adamw() { return adamw_; }
  const DynamicLossScaler* loss_scaler() const { return scaler_ ? &*scaler_ : nullptr; }

  // AdamW's state of the masters ("<name>.exp_avg", ".exp_avg_sq", ".step"), every master
  // weight ("<name>.master_weight", f32, the live tensor) and, with a loss scaler, its state
  // ("loss_scaler.cur_scale", ".cur_iter", ".last_overflow_iter", ".cur_hysteresis", 0-dim f64).
  NamedTensors state_dict() const;
  // Restores state_dict() output; master weights given are loaded as set_master_weights does.
  void load_state_dict(const NamedTensors& state);

 private:
  NamedTensors model_params_;
  NamedTensors masters_;  // f32, parallel to model_params_
  AdamW adamw_;           // over masters_, writing model_params_ as its model copies
  std::optional<DynamicLossScaler> scaler_;
  // A clipping coefficient computed from the model gradients, not yet applied (1: none).
  double pending_grad_scale_ = 1.0;

  // True when the norm and the update may read the model gradients directly.
  bool reads_model_grads() const;
};

}  // namespace autotp
