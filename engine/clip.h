// Global gradient norm (L2 over every gradient, accumulated in f64) and clipping by it with
// PyTorch's clip_grad_norm_ formula.
#pragma once

#include <vector>

#include "engine/optimizer.h"

namespace autotp {

// sum over parameters with a gradient of sum(g^2), in double. Parameters whose gradient is
// undefined are skipped. With sharded parameters (TP, ZeRO) each rank computes its partial sum
// and the engine all-reduces it before taking the square root.
double grad_sq_sum(const NamedTensors& params);
// sqrt(grad_sq_sum(params)).
double global_grad_norm(const NamedTensors& params);

// PyTorch's coefficient: max_norm / (total_norm + 1e-6), clamped to at most 1.
double clip_coefficient(double total_norm, double max_norm);

// Multiplies every defined gradient by `coef` in place (under NoGradGuard).
void scale_grads(const NamedTensors& params, double coef);

// torch.nn.utils.clip_grad_norm_: computes the global norm, and when the coefficient
// max_norm / (norm + 1e-6) is below 1 scales every gradient by it. Returns the norm before
// clipping. max_norm must be > 0. A non-finite norm leaves the gradients untouched (unlike
// PyTorch, which would multiply them by NaN); the caller sees it in the returned value.
double clip_grad_norm(const NamedTensors& params, double max_norm);
// Same with a norm computed elsewhere (e.g. all-reduced over ranks).
void clip_grads_to_norm(const NamedTensors& params, double total_norm, double max_norm);

}  // namespace autotp
