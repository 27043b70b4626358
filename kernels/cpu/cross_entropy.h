// CPU reference cross entropy of logits [rows, classes] against integer targets [rows]:
// the mean loss and its gradient w.r.t. the logits, without intermediate tensors.
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// *loss = mean over rows with targets[r] != ignore_index of logsumexp(logits[r]) -
// logits[r, targets[r]]; 0 when every row is ignored. Targets must be in [0, classes) or
// equal ignore_index (the caller validates). Accumulates in double, rows in order.
template <typename T, typename Index>
void cross_entropy_forward(T* loss, const T* logits, const Index* targets, int64_t rows,
                           int64_t classes, int64_t ignore_index);

// dlogits[r, c] = dloss / count * (softmax(logits[r])[c] - [c == targets[r]]) for counted
// rows and 0 for ignored ones (count = number of non-ignored rows). dloss is one element.
// dlogits may be logits itself: a row's logsumexp is taken before any of it is written, and
// each element is read before it is overwritten.
template <typename T, typename Index>
void cross_entropy_backward(T* dlogits, const T* logits, const Index* targets, const T* dloss,
                            int64_t rows, int64_t classes, int64_t ignore_index);

}  // namespace autotp::kernels::cpu
