// causal_lm_loss (labels shifted on the host, then one cross entropy over all positions, its
// targets uploaded without a host wait) and CausalLM::forward_loss.
#include "models/causal_lm.h"

#include <vector>

#include "core/ops/nn.h"

namespace autotp {

Tensor causal_lm_loss(const Tensor& logits, const Tensor& labels, int64_t ignore_index) {
  AUTOTP_CHECK(logits.defined() && labels.defined(), "causal_lm_loss: undefined logits or labels");
  AUTOTP_CHECK(logits.dim() == 3, "causal_lm_loss: logits must be [B, S, V], got shape {}",
               shape_str(logits.shape()));
  const int64_t batch = logits.size(0), seq = logits.size(1), vocab = logits.size(2);
  AUTOTP_CHECK(labels.dim() == 2 && labels.size(0) == batch && labels.size(1) == seq,
               "causal_lm_loss: labels of shape {} do not match logits of shape {} (expected "
               "[{}, {}])",
               shape_str(labels.shape()), shape_str(logits.shape()), batch, seq);
  AUTOTP_CHECK(labels.dtype() == DType::I64 || labels.dtype() == DType::I32,
               "causal_lm_loss: labels must be i64 or i32, got {}", dtype_name(labels.dtype()));
  AUTOTP_CHECK(labels.device().is_cpu() || labels.device() == logits.device(),
               "causal_lm_loss: labels are on {} but logits on {} (labels may be on the host "
               "or on the logits' device)",
               labels.device().str(), logits.device().str());
  // shifted[b, t] = labels[b, t + 1]; the last position has nothing to predict. On the host:
  // host labels are read in place, device labels with one copy back (which waits for the
  // device); cross_entropy checks the shifted targets there and uploads them without a wait.
  const std::vector<int64_t> host = labels.to_vector_i64();
  std::vector<int64_t> shifted(host.size(), ignore_index);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t + 1 < seq; ++t)
      shifted[b * seq + t] = host[b * seq + t + 1];
  }
  const Tensor targets = Tensor::from_vector_i64(shifted, {batch * seq});  // [B*S], host
  return ops::cross_entropy(logits.reshape({batch * seq, vocab}), targets, ignore_index);
}

Tensor CausalLM::forward_loss(const Tensor& input_ids, const Tensor& labels, int64_t ignore_index) {
  return causal_lm_loss(forward(input_ids), labels, ignore_index);
}

}  // namespace autotp
