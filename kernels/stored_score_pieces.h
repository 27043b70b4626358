// How the stored-score attention backward (kernels/tensor_core_attention.h: dk/dv stores dS,
// dq reads it back) splits a problem whose dS buffer would pass a memory limit: the buffer grows
// as B Hq S^2, so long sequences run in pieces that reuse one buffer, each piece either a run of
// whole batch entries or one batch entry's run of kv heads (with their query heads). Pieces
// are independent: every (batch entry, kv head) belongs to exactly one, and its results do not
// depend on the piece it runs in.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/tensor_core_attention.h"

namespace autotp::kernels {

struct StoredScorePiece {
  int64_t first_batch, batches;     // batch entries [first_batch, first_batch + batches)
  int64_t first_kv_head, kv_heads;  // kv heads [first_kv_head, first_kv_head + kv_heads)
};

// 16-bit dS elements one kv head of one batch entry needs (its group of query heads).
inline int64_t stored_scores_per_kv_head(int64_t hq, int64_t hkv, int64_t seq, bool causal) {
  return (hq / hkv) * tc_attention::score_tiles_per_head(seq, causal) *
         tc_attention::kScoreTileElements;
}

// The pieces of a [batch, hq | hkv, seq] problem whose dS buffers hold at most `max_elements`
// each: the whole problem when it fits; else as many whole batch entries as fit; else one batch
// entry's kv heads in runs that fit, at least one kv head each (so a piece may need more than
// max_elements when a single kv head does: stored_score_buffer_elements says how much).
inline std::vector<StoredScorePiece> stored_score_pieces(int64_t batch, int64_t hq, int64_t hkv,
                                                         int64_t seq, bool causal,
                                                         int64_t max_elements) {
  std::vector<StoredScorePiece> pieces;
  if (batch <= 0 || hkv <= 0) return pieces;
  const int64_t per_kv = stored_scores_per_kv_head(hq, hkv, seq, causal);
  const int64_t per_batch = hkv * per_kv;
  if (per_batch <= max_elements) {
    const int64_t batches = std::min(batch, max_elements / per_batch);
    for (int64_t b = 0; b < batch; b += batches)
      pieces.push_back({b, std::min(batches, batch - b), 0, hkv});
    return pieces;
  }
  const int64_t kv_heads = std::max<int64_t>(1, max_elements / per_kv);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t kv = 0; kv < hkv; kv += kv_heads)
      pieces.push_back({b, 1, kv, std::min(kv_heads, hkv - kv)});
  }
  return pieces;
}

// The dS buffer the pieces need: that of the largest.
inline int64_t stored_score_buffer_elements(const std::vector<StoredScorePiece>& pieces, int64_t hq,
                                            int64_t hkv, int64_t seq, bool causal) {
  int64_t largest = 0;
  for (const StoredScorePiece& piece : pieces)
    largest = std::max(largest, piece.batches * piece.kv_heads);
  return largest * stored_scores_per_kv_head(hq, hkv, seq, causal);
}

}  // namespace autotp::kernels
