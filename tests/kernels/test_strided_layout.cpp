// The CUDA kernels' index walk (kernels/cuda/strided_layout.cuh) run on the CPU: merged and
// vectorized layouts give every operand's offsets as the unmerged view's strides say, the
// 32-bit walk equals the 64-bit one wherever the layout allows it, and the layouts whose
// indices or offsets reach 2^31 (or that step backwards) keep the 64-bit walk.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/strided_layout.cuh"

namespace autotp::kernels::cuda {
namespace {

// Offsets of linear index i of a row-major `shape` walked with each operand's own strides.
std::array<int64_t, 3> naive_offsets(const std::vector<int64_t>& shape,
                                     const std::array<std::vector<int64_t>, 3>& strides,
                                     int64_t i) {
  std::array<int64_t, 3> out{};
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    const int64_t c = i % shape[d];
    i /= shape[d];
    for (int k = 0; k < 3; ++k)
      out[k] += c * strides[k][d];
  }
  return out;
}

StridedLayout<3> layout_of(const std::vector<int64_t>& shape,
                           const std::array<std::vector<int64_t>, 3>& strides) {
  const int64_t* const pointers[3] = {strides[0].data(), strides[1].data(), strides[2].data()};
  return make_strided_layout<3>("test", shape.data(), static_cast<int>(shape.size()), pointers);
}

TEST(StridedLayout, ThirtyTwoBitWalkGivesTheViewsOffsetsForRandomViews) {
  std::mt19937 gen(5);
  std::uniform_int_distribution<int> dims(1, 4), size(1, 7), kind(0, 3);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<int64_t> shape(static_cast<size_t>(dims(gen)));
    for (int64_t& s : shape)
      s = size(gen);
    std::array<std::vector<int64_t>, 3> strides;
    for (auto& st : strides) {
      // Contiguous, padded rows (a narrowed view), broadcast along the first dim, or reversed
      // dims (a transpose).
      st.assign(shape.size(), 0);
      const int k = kind(gen);
      int64_t running = 1;
      for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
        st[d] = running;
        running *= shape[d] + (k == 1 ? 3 : 0);
      }
      if (k == 2) st[0] = 0;
      if (k == 3) {
        running = 1;
        for (size_t d = 0; d < shape.size(); ++d) {
          st[d] = running;
          running *= shape[d];
        }
      }
    }
    const StridedLayout<3> layout = layout_of(shape, strides);
    ASSERT_TRUE(layout.index32) << "trial " << trial;
    for (int64_t i = 0; i < layout.numel; ++i) {
      int64_t wide[3], narrow[3];
      strided_offsets64(layout, i, wide);
      strided_offsets32(layout, i, narrow);
      const std::array<int64_t, 3> expected = naive_offsets(shape, strides, i);
      for (int k = 0; k < 3; ++k) {
        ASSERT_EQ(wide[k], expected[k]) << "trial " << trial << " index " << i;
        ASSERT_EQ(narrow[k], expected[k]) << "trial " << trial << " index " << i;
      }
    }
    // In units of 2 elements where every operand allows it: vector v starts at element 2 v.
    StridedLayout<3> vectors = layout;
    if (vectorize_layout(vectors, 2)) {
      ASSERT_TRUE(vectors.index32);
      for (int64_t v = 0; v < vectors.numel; ++v) {
        int64_t narrow[3];
        strided_offsets32(vectors, v, narrow);
        const std::array<int64_t, 3> expected = naive_offsets(shape, strides, 2 * v);
        for (int k = 0; k < 3; ++k)
          ASSERT_EQ(narrow[k], expected[k]) << "trial " << trial << " vector " << v;
      }
    }
  }
}

TEST(StridedLayout, IndicesOrOffsetsReaching2To31KeepThe64BitWalk) {
  // Just below the limit: the last element's offsets are exact in 32 bits.
  const int64_t cols = (int64_t{1} << 30) - 1;
  StridedLayout<3> near = layout_of(
      {2, cols},
      {std::vector<int64_t>{cols, 1}, std::vector<int64_t>{0, 1}, std::vector<int64_t>{cols, 1}});
  ASSERT_TRUE(near.index32);
  int64_t wide[3], narrow[3];
  strided_offsets64(near, near.numel - 1, wide);
  strided_offsets32(near, near.numel - 1, narrow);
  for (int k = 0; k < 3; ++k)
    EXPECT_EQ(narrow[k], wide[k]);
  // 2^32 elements; offsets past 2^31 from a padded stride; a negative stride.
  const int64_t big = int64_t{1} << 16;
  EXPECT_FALSE(layout_of({big, big}, {std::vector<int64_t>{big, 1}, std::vector<int64_t>{big, 1},
                                      std::vector<int64_t>{big, 1}})
                   .index32);
  EXPECT_FALSE(layout_of({4, 8}, {std::vector<int64_t>{int64_t{1} << 30, 1},
                                  std::vector<int64_t>{8, 1}, std::vector<int64_t>{8, 1}})
                   .index32);
  EXPECT_FALSE(layout_of({4, 8}, {std::vector<int64_t>{-8, 1}, std::vector<int64_t>{8, 1},
                                  std::vector<int64_t>{8, 1}})
                   .index32);
}

}  // namespace
}  // namespace autotp::kernels::cuda
