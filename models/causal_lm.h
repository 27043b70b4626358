// CausalLM: the interface of every built-in language model (ids -> logits, HF's shifted
// causal-LM loss), and causal_lm_loss, the loss itself for any logits.
#pragma once

#include <cstdint>
#include <utility>

#include "core/module.h"
#include "models/model_config.h"

namespace autotp {

// Mean cross entropy of HF's causal-LM loss (labels given as `labels=input_ids`): position t
// predicts labels[:, t + 1]; labels are shifted inside (the last position gets ignore_index),
// and positions whose shifted label is ignore_index count neither in the sum nor the mean.
// logits [B, S, V] (f32/f64; on CUDA also bf16/f16), labels [B, S] (i64/i32) -> scalar. Labels
// may live on the host (also for CUDA logits: no host wait) or on the logits' device (one copy
// back to the host, which waits for the device).
Tensor causal_lm_loss(const Tensor& logits, const Tensor& labels, int64_t ignore_index = -100);

// A decoder-only language model as a Module tree with HF parameter names.
class CausalLM : public Module {
 public:
  explicit CausalLM(ModelConfig config) : config_(std::move(config)) {}

  const ModelConfig& config() const { return config_; }

  // input_ids [B, S] (i64/i32) -> logits [B, S, vocab_size]. The built-in models take ids on
  // the host also for parameters on a GPU (ops::embedding uploads them without a host wait).
  virtual Tensor forward(const Tensor& input_ids) = 0;
  // HF's `model(input_ids, labels=labels).loss`: causal_lm_loss(forward(input_ids), labels).
  Tensor forward_loss(const Tensor& input_ids, const Tensor& labels, int64_t ignore_index = -100);

 private:
  ModelConfig config_;
};

}  // namespace autotp
