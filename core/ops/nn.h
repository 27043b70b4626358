// Differentiable neural-network ops: softmax family, cross entropy, embedding, norms,
// rotary position embedding, causal masking and scaled-dot-product attention.
#pragma once

#include "core/tensor.h"

namespace autotp::ops {

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// Mean negative log-likelihood of `targets` under softmax(logits) over the non-ignored rows.
// logits [N, C] (f32/f64), targets [N] (i64/i32). Rows whose target equals ignore_index count
// neither in the sum nor in the mean; all rows ignored gives 0 (gradient 0). A target outside
// [0, C) that is not ignore_index is an error naming the row.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);

// weight [V, D] looked up at ids (i64/i32, any shape) -> ids.shape + [D]. Out-of-range ids
// are an error naming the id. Gradient: rows scatter-added into a [V, D] tensor.
Tensor embedding(const Tensor& weight, const Tensor& ids);

// x [..., D] * rsqrt(mean(x^2, -1) + eps) * weight [D] (HF LlamaRMSNorm, computed in x's dtype).
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);
// (x - mean) * rsqrt(var + eps) * weight + bias over the last dim; weight/bias may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);

// Rotary position embedding, HF rotate-half convention:
//   out = x * cos + rotate_half(x) * sin, rotate_half([x1, x2]) = [-x2, x1]
// x [B, H, S, D], cos/sin [S, D] (or broadcastable to x). Differentiable w.r.t. x.
Tensor apply_rotary(const Tensor& x, const Tensor& cos, const Tensor& sin);
// The cos/sin tables HF's rotary embedding computes for positions 0..seq_len-1:
// inv_freq[i] = 1 / theta^(2i/D), freqs = pos * inv_freq, emb = cat(freqs, freqs) -> [S, D].
std::pair<Tensor, Tensor> rotary_tables(int64_t seq_len, int64_t head_dim, double theta,
                                        DType dtype = DType::F32, Device device = Device::cpu());

// Scores [..., Sq, Sk] with entries above the causal diagonal set to `value` (-inf by
// default). Query i (aligned to the end: offset Sk - Sq) may see keys j <= i + Sk - Sq.
Tensor causal_mask(const Tensor& scores, double value = -INFINITY);

// softmax(q k^T * scale [+ causal mask]) v with grouped-query heads:
// q [B, Hq, S, D], k and v [B, Hkv, S, D], Hq a multiple of Hkv (query head h uses kv head
// h / (Hq / Hkv)). scale <= 0 means 1/sqrt(D). Output [B, Hq, S, D].
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal = true, double scale = 0.0);

}  // namespace autotp::ops
