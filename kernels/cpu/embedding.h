// CPU reference embedding: row gather from a [vocab, dim] table and the scatter-add that is
// its gradient.
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// out[i, :] = weight[ids[i], :] for i < n_ids; ids must lie in [0, vocab) (caller validates).
template <typename T, typename Index>
void embedding_forward(T* out, const T* weight, const Index* ids, int64_t n_ids, int64_t dim);

// dweight = 0, then dweight[ids[i], :] += dout[i, :] for i = 0, 1, ... in order (sequential,
// so repeated ids always sum in the same order: deterministic).
template <typename T, typename Index>
void embedding_backward(T* dweight, const Index* ids, const T* dout, int64_t n_ids, int64_t vocab,
                        int64_t dim);

}  // namespace autotp::kernels::cpu
