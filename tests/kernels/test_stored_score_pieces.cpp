// The pieces a stored-score attention backward runs in under a memory limit
// (kernels/stored_score_pieces.h): every (batch entry, kv head) exactly once, each piece within
// the limit unless one kv head alone passes it, and no splitting when the problem fits.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "kernels/stored_score_pieces.h"

namespace autotp {
namespace {

using kernels::StoredScorePiece;

struct Problem {
  int64_t batch, hq, hkv, seq;
  bool causal;
};

// Tiles of 64 x 64 values a kv head's group needs, computed from the mask's definition.
int64_t tiles_per_kv_head(const Problem& p) {
  const int64_t tiles = (p.seq + 63) / 64;
  int64_t visible = 0;
  for (int64_t i = 0; i < tiles; ++i)
    for (int64_t j = 0; j < tiles; ++j)
      visible += !p.causal || j <= i;
  return (p.hq / p.hkv) * visible;
}

// Checks coverage and sizes; returns the pieces.
std::vector<StoredScorePiece> checked_pieces(const Problem& p, int64_t max_elements) {
  SCOPED_TRACE("batch " + std::to_string(p.batch) + " hq " + std::to_string(p.hq) + " hkv " +
               std::to_string(p.hkv) + " seq " + std::to_string(p.seq) + " limit " +
               std::to_string(max_elements));
  const std::vector<StoredScorePiece> pieces =
      kernels::stored_score_pieces(p.batch, p.hq, p.hkv, p.seq, p.causal, max_elements);
  const int64_t per_kv = tiles_per_kv_head(p) * 64 * 64;
  EXPECT_EQ(kernels::stored_scores_per_kv_head(p.hq, p.hkv, p.seq, p.causal), per_kv);
  std::map<std::pair<int64_t, int64_t>, int> seen;
  int64_t largest = 0;
  for (const StoredScorePiece& piece : pieces) {
    EXPECT_GT(piece.batches, 0);
    EXPECT_GT(piece.kv_heads, 0);
    // A piece is whole batch entries or a run of one entry's kv heads.
    EXPECT_TRUE(piece.kv_heads == p.hkv || piece.batches == 1);
    for (int64_t b = piece.first_batch; b < piece.first_batch + piece.batches; ++b)
      for (int64_t kv = piece.first_kv_head; kv < piece.first_kv_head + piece.kv_heads; ++kv)
        ++seen[{b, kv}];
    const int64_t need = piece.batches * piece.kv_heads * per_kv;
    largest = std::max(largest, need);
    if (piece.batches * piece.kv_heads > 1) {
      EXPECT_LE(need, max_elements) << "a piece of several kv heads passes the limit";
    }
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), p.batch * p.hkv) << "(batch, kv head) left out";
  for (const auto& [cell, count] : seen)
    EXPECT_EQ(count, 1) << "batch " << cell.first << " kv head " << cell.second << " repeated";
  EXPECT_EQ(kernels::stored_score_buffer_elements(pieces, p.hq, p.hkv, p.seq, p.causal), largest);
  return pieces;
}

TEST(StoredScorePieces, AProblemThatFitsRunsWhole) {
  const Problem llama{4, 32, 8, 2048, true};  // 528 causal tiles per query head
  EXPECT_EQ(tiles_per_kv_head(llama), 4 * 528);
  const int64_t total = 4 * 8 * tiles_per_kv_head(llama) * 4096;
  const auto pieces = checked_pieces(llama, total);
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0].batches, 4);
  EXPECT_EQ(pieces[0].kv_heads, 8);
  EXPECT_EQ(kernels::stored_score_buffer_elements(pieces, 32, 8, 2048, true),
            tc_attention::stored_score_elements(4, 32, 2048, true));
}

TEST(StoredScorePieces, PastTheLimitWholeBatchEntriesFirstThenRunsOfKvHeads) {
  const Problem p{3, 12, 4, 300, true};
  const int64_t per_batch = 4 * tiles_per_kv_head(p) * 4096;
  // Two entries fit: pieces of two and one.
  auto pieces = checked_pieces(p, 2 * per_batch + 1);
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0].batches, 2);
  EXPECT_EQ(pieces[1].batches, 1);
  // Less than one entry: runs of kv heads within each entry (3 of 4 fit: runs of 3 and 1).
  pieces = checked_pieces(p, per_batch * 3 / 4);
  ASSERT_EQ(pieces.size(), 6u);
  EXPECT_EQ(pieces[0].kv_heads, 3);
  EXPECT_EQ(pieces[1].kv_heads, 1);
  // Below one kv head: one kv head per piece, and the buffer is that head's, above the limit.
  pieces = checked_pieces(p, 10);
  EXPECT_EQ(pieces.size(), 12u);
  EXPECT_EQ(kernels::stored_score_buffer_elements(pieces, 12, 4, 300, true),
            tiles_per_kv_head(p) * 4096);
}

TEST(StoredScorePieces, NonCausalProblemsCountEveryTile) {
  for (const int64_t seq : {1, 64, 65, 200}) {
    const Problem p{2, 4, 2, seq, false};
    checked_pieces(p, tiles_per_kv_head(p) * 4096 * 3);
    checked_pieces(p, 1);
  }
}

}  // namespace
}  // namespace autotp
