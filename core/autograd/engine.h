// The backward engine's entry point with a summary of how gradients that met were summed.
// Tensor::backward() runs it; tests read the summary to see which sums were folded.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace autotp {

// How the gradients that reached one tensor from several consumers were combined.
struct BackwardSummary {
  int64_t engine_sums = 0;  // sums the engine computed with a separate add
  int64_t folded_sums = 0;  // sums a node computed inside its own kernels (PendingGradients)
};

// Backpropagates from `root` with seed `grad_output` (undefined: 1 for a scalar root), exactly
// as root.backward(grad_output, retain_graph), and reports what it did.
BackwardSummary run_backward(const Tensor& root, const Tensor& grad_output, bool retain_graph);

}  // namespace autotp
