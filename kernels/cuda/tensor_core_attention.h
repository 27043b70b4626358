// The tensor-core path of kernels/cuda/attention.h: bf16/f16 attention with head dims 32, 64,
// 96 or 128 through the flash-style block bodies of kernels/tensor_core_attention.h (mma.sync,
// f32 accumulation, probabilities rounded to the input type before the second products).
#pragma once

#include <cstdint>

#include "kernels/attention_layout.h"
#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// True when attention of this dtype code and head dim runs on the tensor-core kernels.
bool tensor_core_attention_applies(int dtype, int64_t dim);

// Same contract as attention_forward (sizes already validated), except that every operand
// may have any strides `layouts` gives (kernels/attention_layout.h: dim contiguous, strides in
// multiples of 8 elements, else std::invalid_argument); lse stays contiguous.
// row_tiles_per_warp (1, or 2 for head dims up to 64): 16-row tiles each warp owns, i.e. 64-
// or 128-row blocks (forward_block's M); both give identical results. attention_forward uses
// 1; `autotp bench-ops` times both. longest_first: the grid's block order (tc::Problem's
// longest_first, tc::detail::grid_cell): longest blocks first across all heads, or by head.
void tensor_core_attention_forward(int dtype, void* out, void* lse, const void* q, const void* k,
                                   const void* v, int64_t batch, int64_t hq, int64_t hkv,
                                   int64_t seq, int64_t dim, double scale, bool causal,
                                   const AttentionLayouts& layouts, cudaStream_t stream,
                                   int row_tiles_per_warp = 1, bool longest_first = true);

// Choices of the tensor-core backward; identical results, only speed and memory differ.
struct TensorCoreBackwardOptions {
  // The recomputing dq kernel's row tiles per warp (1, or 2 for head dims up to 64), as
  // row_tiles_per_warp above.
  int dq_row_tiles_per_warp = 1;
  // The dk/dv kernel keeps each warp's K and V fragments in registers (head dims up to 64;
  // dkdv_block's kKvInRegisters). Not with stored_scores.
  bool dkdv_kv_in_registers = false;
  bool longest_first = true;  // grid order, as above
  // Non-null: the stored-score backward. delta is computed alone, the dk/dv kernel writes every
  // dS tile into this buffer of stored_scores_elements 16-bit values (of the dtype) and the dq
  // kernel reads them back instead of recomputing S and dP. Null: dq recomputes them. A buffer
  // smaller than the problem's dS (causal: the tiles on and below the diagonal, about
  // B Hq S^2 / 2) runs it in the pieces of kernels/stored_score_pieces.h, which says how large
  // a buffer a limit allows (stored_score_buffer_elements); smaller than one kv head's dS is an
  // error.
  void* stored_scores = nullptr;
  int64_t stored_scores_elements = 0;
};

// Same contract as attention_backward, with strided operands as above (lse and delta
// contiguous); delta comes from dout . out (one row each) instead of a pass over the keys.
// attention_backward uses the default options; `autotp bench-ops` times the others.
void tensor_core_attention_backward(int dtype, void* dq, void* dk, void* dv, const void* q,
                                    const void* k, const void* v, const void* out, const void* lse,
                                    const void* dout, void* delta, int64_t batch, int64_t hq,
                                    int64_t hkv, int64_t seq, int64_t dim, double scale,
                                    bool causal, const AttentionLayouts& layouts,
                                    cudaStream_t stream,
                                    const TensorCoreBackwardOptions& options = {});

}  // namespace autotp::kernels::cuda
