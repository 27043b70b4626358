// The training loss of one micro-batch (cross entropy of logits against already-shifted
// labels) and evaluation: mean loss and perplexity over a fixed stream of batches.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "engine/data.h"
#include "models/causal_lm.h"

namespace autotp {

// Mean cross entropy of logits [B, S, V] against labels [B, S] (i64; labels[b, s] is the
// token that follows input_ids[b, s], as DataLoader builds them, so no further shift) -> a
// scalar. Labels may stay on the host (DataLoader's): ops::cross_entropy checks them there and
// uploads them without a host wait. Not CausalLM::forward_loss, which shifts the labels again.
Tensor next_token_loss(const Tensor& logits, const Tensor& labels);

// The seed offset of the evaluation stream: evaluation reads the windows the data source
// yields for seed data.seed + kEvalSeedOffset, a stream disjoint from training's.
inline constexpr uint64_t kEvalSeedOffset = 1;

struct EvalResult {
  double loss = 0.0;        // mean over the batches (each batch's mean token loss)
  double perplexity = 0.0;  // exp(loss)
  int64_t batches = 0;
  int64_t tokens = 0;  // tokens scored
};

// Runs `batches` batches loader.batch(i, 0), i = 0 .. batches - 1, under NoGradGuard (the
// model is put in eval mode and back) on the device of the model's parameters. Errors when a loss
// is not finite, naming the batch.
EvalResult evaluate(CausalLM& model, const DataLoader& loader, int64_t batches);

}  // namespace autotp
