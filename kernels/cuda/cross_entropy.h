// CUDA cross entropy of logits [rows, classes] against integer targets [rows], fused over each
// vocabulary row (no probability matrix): mean loss, per-row logsumexp, and the logits gradient.
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// Logits dtypes (DTypeCode): f32, f64, bf16, f16; targets i32 or i64. The loss, lse and
// row_loss are in the compute type: f32 for f32 and the 16-bit floats, f64 for f64. Every row
// reduction and the mean are taken in a fixed order (deterministic; the mean sums the row
// losses in f64). Targets must lie in [0, classes) or equal ignore_index, and `count` must be
// the number of rows not ignored (the caller validates and counts on the host).

// *loss = sum over counted rows of (lse[r] - logits[r, targets[r]]) / count (0 when count is
// 0); lse[r] = logsumexp(logits[r]) for counted rows (0 for ignored ones), saved for the
// backward. row_loss [rows] is scratch.
void cross_entropy_forward(int dtype, int index_dtype, void* loss, void* lse, void* row_loss,
                           const void* logits, const void* targets, int64_t rows, int64_t classes,
                           int64_t ignore_index, int64_t count, cudaStream_t stream);

// dlogits[r, c] = dloss / count * (exp(logits[r, c] - lse[r]) - [c == targets[r]]) for counted
// rows, 0 for ignored ones; dloss is one element of the compute type, dlogits has the logits'
// dtype. dlogits may be logits itself (the op reuses the logits' memory on their last use):
// each element is read before it is written, by the same thread, and nothing is read twice.
void cross_entropy_backward(int dtype, int index_dtype, void* dlogits, const void* logits,
                            const void* targets, const void* lse, const void* dloss, int64_t rows,
                            int64_t classes, int64_t ignore_index, int64_t count,
                            cudaStream_t stream);

}  // namespace autotp::kernels::cuda
