// CUDA scaled-dot-product attention with grouped-query heads (the contract of
// kernels/cpu/attention.h): tiled, online softmax, no [seq, seq] matrix in memory; the backward
// recomputes the probabilities from the saved logsumexp.
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// The largest head dim the kernels take (each lane of a warp holds dim / 32 elements).
constexpr int64_t kAttentionMaxHeadDim = 256;

// Dtypes (DTypeCode): f32, f64, bf16, f16 for q, k, v, out, dout, dq, dk, dv; lse and delta
// are in the compute type (f32 for f32 and the 16-bit floats, f64 for f64), which every dot
// product, softmax and accumulation uses. 16-bit outputs are rounded once. Layouts are
// contiguous: q, out, dout, dq [batch, hq, seq, dim]; k, v, dk, dv [batch, hkv, seq, dim];
// lse, delta [batch, hq, seq]. hq % hkv == 0; query head h reads kv head h / (hq / hkv).
// 1 <= dim <= kAttentionMaxHeadDim (else std::invalid_argument). With causal, query i sees
// keys j <= i. Deterministic: no atomics, and every sum runs in a fixed order. All async.
// bf16/f16 with head dim 32, 64, 96 or 128 run on tensor cores (kernels/cuda/
// tensor_core_attention.h: flash-style tiles of 64 rows, the probabilities and dS rounded to
// the input type before their second products, as FlashAttention does); the other cases on
// the row-per-warp kernels below, which round only the outputs.

// For each query row i: s[j] = scale * q[i] . k[j] over visible keys, lse[i] = log(sum_j
// exp(s[j])), out[i] = sum_j exp(s[j] - lse[i]) v[j]. Row-per-warp kernel: one block per
// (batch, head, tile of 8 query rows), a warp per row; key/value tiles in shared memory.
void attention_forward(int dtype, void* out, void* lse, const void* q, const void* k, const void* v,
                       int64_t batch, int64_t hq, int64_t hkv, int64_t seq, int64_t dim,
                       double scale, bool causal, cudaStream_t stream);

// Gradients from dout, with p[i, j] = exp(s[i, j] - lse[i]), dp[i, j] = dout[i] . v[j],
// delta[i] = sum_j p[i, j] dp[i, j] and ds = p (dp - delta):
//   dq[i] = scale * sum_j ds[i, j] k[j]                      (a block per query tile)
//   dk[j] = scale * sum_{h, i} ds[i, j] q[i], dv[j] = sum_{h, i} p[i, j] dout[i]
//                                            (a block per kv head and key tile; the query
//                                             heads sharing the kv head in order, then rows)
// delta [batch, hq, seq] is scratch written by the first kernel and read by the second (the
// tensor-core path takes it as dout[i] . out[i], `out` being the forward's output; the
// row-per-warp kernels sum p dp over the keys and do not read `out`).
void attention_backward(int dtype, void* dq, void* dk, void* dv, const void* q, const void* k,
                        const void* v, const void* out, const void* lse, const void* dout,
                        void* delta, int64_t batch, int64_t hq, int64_t hkv, int64_t seq,
                        int64_t dim, double scale, bool causal, cudaStream_t stream);

}  // namespace autotp::kernels::cuda
