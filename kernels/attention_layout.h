// Where the tensor-core attention kernels find each operand: every operand is viewed as
// [batch, heads, seq, dim] with its dim elements contiguous, at any batch, head and row strides.
// Contiguous [B, H, S, D] tensors are one case; the [B, S, H, D] outputs of the q/k/v
// projections, read as they are, are another (no transposed copy before or after attention).
#pragma once

#include <cstdint>

namespace autotp::kernels {

// Element strides of one operand.
struct HeadStrides {
  int64_t batch, head, row;
};

// A contiguous [batch, heads, seq, dim] operand.
constexpr HeadStrides contiguous_head_strides(int64_t heads, int64_t seq, int64_t dim) {
  return {heads * seq * dim, seq * dim, dim};
}

// Element offset of the (batch b, head h) matrix.
constexpr int64_t head_start(const HeadStrides& s, int64_t b, int64_t h) {
  return b * s.batch + h * s.head;
}

// q, out, dout, dq have the query heads; k, v, dk, dv the kv heads.
struct AttentionLayouts {
  HeadStrides q, k, v, out, dout, dq, dk, dv;
};

constexpr AttentionLayouts contiguous_attention_layouts(int64_t hq, int64_t hkv, int64_t seq,
                                                        int64_t dim) {
  const HeadStrides query = contiguous_head_strides(hq, seq, dim);
  const HeadStrides key = contiguous_head_strides(hkv, seq, dim);
  return {query, key, key, query, query, query, key, key};
}

}  // namespace autotp::kernels
