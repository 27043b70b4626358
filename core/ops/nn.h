// Differentiable neural-network ops: softmax family, cross entropy, embedding, norms,
// rotary position embedding, causal masking and scaled-dot-product attention.
// Implemented in softmax.cpp, norms.cpp, embedding.cpp, rotary.cpp and attention.cpp over the
// CPU kernels in kernels/cpu/ (f32/f64) and the CUDA kernels in kernels/cuda/ (f32, f64, bf16,
// f16; 16-bit floats computed in f32 and rounded once on store). All operands of one call must
// live on one device (index tensors too). On CUDA, row statistics saved for the backward (norm
// mean/rstd, attention logsumexp) are kept in f32 for 16-bit inputs.
#pragma once

#include <cmath>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace autotp::ops {

// Softmax / log-softmax over `dim` (negative counts from the end), max-subtracted for
// stability. A row that is entirely -inf gives NaN, as in PyTorch.
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// Mean negative log-likelihood of `targets` under softmax(logits) over the non-ignored rows.
// logits [N, C] (f32/f64; on CUDA also bf16/f16), targets [N] (i64/i32). Rows whose target
// equals ignore_index count neither in the sum nor in the mean; all rows ignored gives 0
// (gradient 0). A target outside [0, C) that is not ignore_index is an error naming the row
// (targets are checked on the host: targets may live there, also for CUDA logits, and are then
// uploaded without a host wait; targets on the logits' device cost a copy back, which waits
// for the device). The loss has the logits' dtype, except that bf16/f16 logits on CUDA give
// an f32 loss (computed in f32, fused over each vocabulary row without a probability matrix).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);

// weight [V, D] looked up at ids (i64/i32, any shape) -> ids.shape + [D]. Out-of-range ids
// are an error naming the id (checked on the host: ids may live there, also for a CUDA table,
// and are then uploaded without a host wait; ids on the table's device cost a copy back, which
// waits for the device). Gradient: rows scatter-added into a [V, D] tensor (in id order,
// so repeated ids sum deterministically; on CUDA without atomics: the positions are grouped by
// id on the host and each gradient row is summed by one thread per column, in position order).
Tensor embedding(const Tensor& weight, const Tensor& ids);

// x [..., D] * rsqrt(mean(x^2, -1) + eps) * weight [D] (HF LlamaRMSNorm); weight may be
// undefined (no scaling). Precision: the CPU kernels (f32/f64 only) accumulate the row
// statistics in double and round once to x's dtype, so f32 matches HF's f32 computation to
// rounding. HF computes bf16/f16 inputs in f32 and rounds the normalized x to the input dtype
// before multiplying by the weight; the CUDA kernel does the same for bf16/f16. Other dtypes
// are rejected on the CPU (convert with .to(DType::F32)). The weight gradient on CUDA is a
// two-stage deterministic reduction (per chunk of rows, then over the chunks in order).
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);
// (x - mean) * rsqrt(var + eps) * weight + bias over the last dim (biased variance, as
// torch.nn.LayerNorm); weight/bias may be undefined. Same precision notes as rms_norm, except
// that for bf16/f16 on CUDA everything is computed in f32 and rounded once (as torch's kernel).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);

// Rotary position embedding, HF rotate-half convention:
//   out = x * cos + rotate_half(x) * sin, rotate_half([x1, x2]) = [-x2, x1]
// x [B, H, S, D], cos/sin [S, D] (or broadcastable to x, e.g. [B, 1, S, D]), D even.
// Differentiable w.r.t. x only: cos/sin that require grad (in grad mode) are an error.
Tensor apply_rotary(const Tensor& x, const Tensor& cos, const Tensor& sin);
// The cos/sin tables HF's rotary embedding computes for positions 0..seq_len-1:
// inv_freq[i] = 1 / theta^(2i/D), freqs = pos * inv_freq, emb = cat(freqs, freqs) -> [S, D].
// Computed in double and rounded once to `dtype` (HF computes the angles in f32, so for long
// sequences HF's own tables differ from these by f32 rounding of pos * inv_freq).
std::pair<Tensor, Tensor> rotary_tables(int64_t seq_len, int64_t head_dim, double theta,
                                        DType dtype = DType::F32, Device device = Device::cpu());
// HF's default inverse frequencies in double: inv_freq[i] = 1 / theta^(2i/D), i < D/2.
std::vector<double> rope_inv_freq(int64_t head_dim, double theta);
// The cos/sin tables for arbitrary inverse frequencies (e.g. a scaled rope such as Llama 3's):
// freqs = pos * inv_freq, emb = cat(freqs, freqs) -> [S, 2 * inv_freq.size()], computed in
// double and rounded once to `dtype`. rotary_tables(S, D, theta) equals
// rotary_tables_from_inv_freq(S, rope_inv_freq(D, theta)).
std::pair<Tensor, Tensor> rotary_tables_from_inv_freq(int64_t seq_len,
                                                      const std::vector<double>& inv_freq,
                                                      DType dtype = DType::F32,
                                                      Device device = Device::cpu());

// Scores [..., Sq, Sk] with entries above the causal diagonal set to `value` (-inf by
// default). Query i (aligned to the end: offset Sk - Sq) may see keys j <= i + Sk - Sq.
// The gradient is zero at masked positions.
Tensor causal_mask(const Tensor& scores, double value = -INFINITY);

// Variants of the CUDA tensor-core attention kernels (bf16/f16): bit-identical results, speed
// only. Other kernels (the CPU, f32/f64 on CUDA) have no variants and ignore them; 128-row
// blocks or K/V fragments in registers with a head dim above 64 are an error.
struct AttentionKernels {
  int row_tiles_per_warp = 1;         // 1 or 2: 64- or 128-row blocks in the forward and dq
  bool dkdv_kv_in_registers = false;  // the dk/dv kernel keeps its K/V fragments in registers
  bool longest_first = true;          // blocks ordered longest first across heads, or by head
  // The backward stores dS from the dk/dv pass (16-bit, a transient buffer of about
  // B Hq S^2 / 2 elements when causal) and reads it back for dq instead of recomputing
  // S = Q K^T and dP = dO V^T; not with dkdv_kv_in_registers. The buffer stays within
  // stored_scores_max_bytes (longer problems run in pieces: batch entries, then kv heads), except
  // that one kv head's dS always fits.
  bool dq_from_stored_scores = false;
  int64_t stored_scores_max_bytes = int64_t{1} << 30;
  bool needs_small_head_dim() const { return row_tiles_per_warp != 1 || dkdv_kv_in_registers; }
};

// softmax(q k^T * scale [+ causal mask]) v with grouped-query heads:
// q [B, Hq, S, D], k and v [B, Hkv, S, D], Hq a multiple of Hkv (query head h uses kv head
// h / (Hq / Hkv)). scale <= 0 means 1/sqrt(D). Output [B, Hq, S, D]. With causal, query i
// sees keys j <= i. Batch, S and D must match across q, k, v, and k and v share a shape.
// The forward saves only the per-row logsumexp [B, Hq, S]; the backward recomputes the
// probabilities and sums dk/dv over the query heads that share a kv head. On CUDA the head dim
// is at most 256 and the kernels are tiled with an online softmax (no [S, S] matrix).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal = true, double scale = 0.0,
                                    const AttentionKernels& variant = {});

}  // namespace autotp::ops
