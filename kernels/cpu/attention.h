// CPU reference scaled-dot-product attention with grouped-query heads: forward saving the
// per-row logsumexp, and backward recomputing the probabilities from it. Straight loops.
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// q, out [batch, hq, seq, dim]; k, v [batch, hkv, seq, dim] (contiguous); hq % hkv == 0 and
// query head h reads kv head h / (hq / hkv). For each query row i:
//   s[j] = scale * q[i] . k[j] over visible keys j (j <= i when causal, all j otherwise),
//   lse[i] = log(sum_j exp(s[j])), out[i] = sum_j exp(s[j] - lse[i]) * v[j].
// lse [batch, hq, seq] is saved for the backward. Accumulates in double.
template <typename T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t batch,
                       int64_t hq, int64_t hkv, int64_t seq, int64_t dim, double scale,
                       bool causal);

// Gradients from dout [batch, hq, seq, dim], with p[i, j] = exp(s[i, j] - lse[i]):
//   dv[j] += p[i, j] * dout[i],  dp[i, j] = dout[i] . v[j],
//   ds[i, j] = p[i, j] * (dp[i, j] - sum_j' p[i, j'] * dp[i, j']),
//   dq[i] = scale * sum_j ds[i, j] * k[j],  dk[j] += scale * ds[i, j] * q[i],
// where dk, dv [batch, hkv, seq, dim] sum over every query head sharing the kv head (in head
// order, then row order: deterministic).
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* q, const T* k, const T* v, const T* lse,
                        const T* dout, int64_t batch, int64_t hq, int64_t hkv, int64_t seq,
                        int64_t dim, double scale, bool causal);

}  // namespace autotp::kernels::cpu
