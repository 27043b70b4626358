// The block order of the tensor-core attention grids (tc_attention::detail::grid_cell): every
// (head, tile) cell exactly once in either order, and longest first means every head's tile 0
// before any head's tile 1 (the tile with the most causal work, see the kernels' block bodies).
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <utility>

#include "kernels/tensor_core_attention.h"

namespace autotp {
namespace {

using tc_attention::detail::grid_cell;
using tc_attention::detail::GridCell;

TEST(AttentionGridOrder, EveryCellOnceInEitherOrder) {
  for (const auto& [heads, tiles] :
       {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {5, 1}, {3, 4}, {128, 32}, {32, 16}}) {
    for (const bool longest_first : {true, false}) {
      std::set<std::pair<int64_t, int64_t>> seen;
      for (int64_t block = 0; block < heads * tiles; ++block) {
        const GridCell cell = grid_cell(block, heads, tiles, longest_first);
        ASSERT_GE(cell.head, 0);
        ASSERT_LT(cell.head, heads);
        ASSERT_GE(cell.tile, 0);
        ASSERT_LT(cell.tile, tiles);
        EXPECT_TRUE(seen.insert({cell.head, cell.tile}).second)
            << "block " << block << " repeats head " << cell.head << " tile " << cell.tile;
      }
      EXPECT_EQ(static_cast<int64_t>(seen.size()), heads * tiles)
          << heads << " heads x " << tiles << " tiles, longest first " << longest_first;
    }
  }
}

TEST(AttentionGridOrder, LongestFirstStartsEveryHeadsTileBeforeAnyLaterTile) {
  const int64_t heads = 32, tiles = 32;
  int64_t last_tile = 0;
  for (int64_t block = 0; block < heads * tiles; ++block) {
    const GridCell cell = grid_cell(block, heads, tiles, /*longest_first=*/true);
    EXPECT_GE(cell.tile, last_tile) << "block " << block;  // tiles never go back
    last_tile = cell.tile;
    EXPECT_EQ(cell.tile, block / heads);
  }
  // By head: a head's tiles are consecutive blocks (the order before session 14).
  for (int64_t block = 0; block < heads * tiles; ++block) {
    const GridCell cell = grid_cell(block, heads, tiles, /*longest_first=*/false);
    EXPECT_EQ(cell.head, block / tiles);
    EXPECT_EQ(cell.tile, block % tiles);
  }
}

}  // namespace
}  // namespace autotp
