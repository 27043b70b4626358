// next_token_loss (one cross entropy over all positions) and the evaluation loop.
#include "engine/evaluate.h"

#include <cmath>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops/nn.h"

namespace autotp {

Tensor next_token_loss(const Tensor& logits, const Tensor& labels) {
  AUTOTP_CHECK(logits.dim() == 3, "next_token_loss: logits must be [B, S, V], got {}",
               shape_str(logits.shape()));
  const int64_t b = logits.size(0), s = logits.size(1), v = logits.size(2);
  AUTOTP_CHECK(labels.dim() == 2 && labels.size(0) == b && labels.size(1) == s,
               "next_token_loss: labels {} do not match logits {}", shape_str(labels.shape()),
               shape_str(logits.shape()));
  return ops::cross_entropy(logits.reshape({b * s, v}), labels.reshape({b * s}));
}

EvalResult evaluate(CausalLM& model, const DataLoader& loader, int64_t batches) {
  AUTOTP_CHECK(batches >= 1, "evaluate: the number of batches must be >= 1, got {}", batches);
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  const std::vector<Tensor> params = model.parameters();
  const Device device = params.empty() ? Device::cpu() : params.front().device();
  EvalResult r;
  double sum = 0.0;
  for (int64_t i = 0; i < batches; ++i) {
    const Batch batch = loader.batch(i, 0);  // host tensors; the model's device computes
    // Labels stay on the host (checked there, uploaded without a wait); ids go to the model's
    // device, which any model accepts.
    const double loss =
        next_token_loss(model.forward(batch.input_ids.to(device)), batch.labels).item();
    AUTOTP_CHECK(std::isfinite(loss), "evaluate: the loss of batch {} is {}", i, loss);
    sum += loss;
    r.tokens += batch.labels.numel();
  }
  model.train(was_training);
  r.batches = batches;
  r.loss = sum / static_cast<double>(batches);
  r.perplexity = std::exp(r.loss);
  return r;
}

}  // namespace autotp
