// The CPU index_select / index_add kernels on a [outer, n, inner] layout, including the fixed
// summation order that makes index_add deterministic.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/cpu/index.h"

namespace autotp {
namespace {

TEST(IndexSelectKernel, CopiesTheIndexedRowsOfEveryOuterBlock) {
  // x [2, 3, 2] -> out [2, 2, 2] at rows {2, 0}
  const std::vector<float> x{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  const std::vector<int32_t> index{2, 0};
  std::vector<float> out(8, -1.0f);
  kernels::cpu::index_select<float, int32_t>(out.data(), x.data(), index.data(), 2, 3, 2, 2);
  EXPECT_EQ(out, (std::vector<float>{4, 5, 0, 1, 10, 11, 6, 7}));
}

TEST(IndexAddKernel, SumsRepeatedIndicesInIncreasingOrder) {
  // out [1, 3, 2] += src [1, 4, 2] at rows {2, 0, 2, 2}
  std::vector<double> out{1, 1, 1, 1, 1, 1};
  const std::vector<double> src{1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<int64_t> index{2, 0, 2, 2};
  kernels::cpu::index_add<double, int64_t>(out.data(), src.data(), index.data(), 1, 3, 2, 4);
  EXPECT_EQ(out, (std::vector<double>{4, 5, 1, 1, 1 + 1 + 5 + 7, 1 + 2 + 6 + 8}));
  // f32 rounding shows the order: ((0 + 1) + 1e8) - 1e8 is 0 (the 1 is lost in 1e8),
  // while the reverse order, (0 - 1e8 + 1e8) + 1, would give 1.
  std::vector<float> acc{0.0f};
  const std::vector<float> vals{1.0f, 1e8f, -1e8f};
  const std::vector<int32_t> zeros{0, 0, 0};
  kernels::cpu::index_add<float, int32_t>(acc.data(), vals.data(), zeros.data(), 1, 1, 1, 3);
  EXPECT_EQ(acc[0], 0.0f);
}

}  // namespace
}  // namespace autotp
