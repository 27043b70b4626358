// Collectives under mpirun: every rank computes each result locally from the data every rank
// holds (a function of the rank) and compares exactly (small integers); sync and async,
// several dtypes, odd and uneven sizes, and the argument errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "core/ops.h"
#include "tests/support/mpi_test_env.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::test_world;

// Rank r's data: small integers in [-3, 3] that differ per rank and per element.
Tensor rank_data(const Shape& shape, int rank, DType dtype) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<double>((i * 3 + rank * 5) % 7) - 3.0;
  return Tensor::from_vector(v, shape, dtype);
}

// The sum (or max) over ranks, computed here in double.
std::vector<double> reduce_locally(const Shape& shape, int size, DType dtype, bool max) {
  std::vector<double> acc = rank_data(shape, 0, dtype).to_vector();
  for (int r = 1; r < size; ++r) {
    const std::vector<double> v = rank_data(shape, r, dtype).to_vector();
    for (size_t i = 0; i < acc.size(); ++i)
      acc[i] = max ? std::max(acc[i], v[i]) : acc[i] + v[i];
  }
  return acc;
}

const std::vector<DType> kAllDTypes = {DType::F32, DType::F64, DType::BF16,
                                       DType::F16, DType::I32, DType::I64};

TEST(Collectives, AllReduceSumEqualsTheLocallyComputedSumInEveryDtype) {
  auto world = test_world();
  for (DType dtype : kAllDTypes) {
    const Tensor t = rank_data({3, 5}, world->rank(), dtype);
    world->all_reduce(t);
    const std::vector<double> expected = reduce_locally({3, 5}, world->size(), dtype, false);
    EXPECT_EQ(t.to_vector(), expected) << dtype_name(dtype);
    EXPECT_NE(std::count(expected.begin(), expected.end(), 0.0),
              static_cast<long>(expected.size()));
  }
}

TEST(Collectives, AllReduceMaxEqualsTheLocallyComputedMaximum) {
  auto world = test_world();
  for (DType dtype : kAllDTypes) {
    const Tensor t = rank_data({7}, world->rank(), dtype);
    world->all_reduce(t, ReduceOp::Max);
    EXPECT_EQ(t.to_vector(), reduce_locally({7}, world->size(), dtype, true)) << dtype_name(dtype);
  }
}

TEST(Collectives, AllReduceAvgIsTheSumDividedByTheGroupSize) {
  auto world = test_world();
  for (DType dtype : {DType::F32, DType::F64}) {
    const Tensor t = rank_data({2, 3}, world->rank(), dtype);
    world->all_reduce(t, ReduceOp::Avg);
    std::vector<double> expected = reduce_locally({2, 3}, world->size(), dtype, false);
    for (double& e : expected)
      e /= world->size();
    // The sum is exact; the division rounds once.
    EXPECT_ALL_CLOSE(t, Tensor::from_vector(expected, {2, 3}, dtype),
                     testing::tolerance_for(dtype));
  }
}

TEST(Collectives, AsyncAllReducesCompleteInAnyWaitOrderAndReduceInPlace) {
  auto world = test_world();
  const Tensor a = rank_data({5}, world->rank(), DType::F32);
  const Tensor b = rank_data({2, 2}, world->rank() + 1, DType::I64);
  const void* a_data = a.raw_data();
  WorkHandle wa = world->all_reduce_async(a);
  WorkHandle wb = world->all_reduce_async(b, ReduceOp::Max);
  wb->wait();
  wa->wait();
  EXPECT_TRUE(wa->is_completed());
  EXPECT_EQ(wa->result().raw_data(), a_data);  // the buffer itself, not a copy
  EXPECT_EQ(a.to_vector(), reduce_locally({5}, world->size(), DType::F32, false));
  std::vector<double> expected_b = rank_data({2, 2}, 1, DType::I64).to_vector();
  for (int r = 1; r < world->size(); ++r) {
    const std::vector<double> v = rank_data({2, 2}, r + 1, DType::I64).to_vector();
    for (size_t i = 0; i < v.size(); ++i)
      expected_b[i] = std::max(expected_b[i], v[i]);
  }
  EXPECT_EQ(b.to_vector(), expected_b);
}

TEST(Collectives, AllReduceRejectsANonContiguousBufferAndAvgOnIntegers) {
  auto world = test_world();
  const Tensor t = Tensor::zeros({3, 4}).transpose(0, 1);
  EXPECT_ERROR_CONTAINING(world->all_reduce(t), {"all_reduce", "not contiguous", "[4, 3]"});
  EXPECT_ERROR_CONTAINING(world->all_reduce(Tensor::zeros({2}, DType::I32), ReduceOp::Avg),
                          {"avg", "i32"});
}

// Rank r's width in the uneven gathers: 1, 3, 1, 3, ... with the last rank holding 0.
std::vector<int64_t> uneven_widths(int size) {
  std::vector<int64_t> w;
  for (int r = 0; r < size; ++r)
    w.push_back(r == size - 1 ? 0 : (r % 2 == 0 ? 1 : 3));
  return w;
}

TEST(Collectives, AllGatherConcatenatesUnevenWidthsAlongEachDimInRankOrder) {
  auto world = test_world();
  const std::vector<int64_t> widths = uneven_widths(world->size());
  for (int64_t dim = 0; dim < 3; ++dim) {
    for (DType dtype : {DType::F32, DType::I64, DType::BF16}) {
      auto local_shape = [&](int r) {
        Shape s{2, 3, 2};
        s[static_cast<size_t>(dim)] = widths[static_cast<size_t>(r)];
        return s;
      };
      std::vector<Tensor> pieces;
      for (int r = 0; r < world->size(); ++r)
        pieces.push_back(rank_data(local_shape(r), r, dtype));
      const Tensor expected = ops::cat(pieces, dim);
      const Tensor got = world->all_gather(
          rank_data(local_shape(world->rank()), world->rank(), dtype), dim, widths);
      ASSERT_EQ(got.shape(), expected.shape()) << "dim " << dim;
      EXPECT_EQ(got.to_vector(), expected.to_vector()) << "dim " << dim << " " << dtype_name(dtype);
    }
  }
}

TEST(Collectives, AsyncAllGatherOfEqualWidthsMatchesTheLocalConcatenation) {
  auto world = test_world();
  const Tensor local = rank_data({3, 5}, world->rank(), DType::F64);
  WorkHandle work = world->all_gather_async(local, -1);
  work->wait();
  std::vector<Tensor> pieces;
  for (int r = 0; r < world->size(); ++r)
    pieces.push_back(rank_data({3, 5}, r, DType::F64));
  EXPECT_EQ(work->result().to_vector(), ops::cat(pieces, 1).to_vector());
}

TEST(Collectives, AllGatherRejectsSizesThatDisagreeWithTheLocalTensor) {
  auto world = test_world();
  std::vector<int64_t> sizes(static_cast<size_t>(world->size()), 2);
  EXPECT_ERROR_CONTAINING(world->all_gather(Tensor::zeros({3, 4}), 1, sizes),
                          {"all_gather", "[3, 4]", "dim 1"});
  EXPECT_ERROR_CONTAINING(world->all_gather(Tensor::zeros({3, 2}), 1, {2}), {"1 sizes"});
}

TEST(Collectives, ReduceScatterGivesEachRankTheSumOfItsUnevenPiece) {
  auto world = test_world();
  const int n = world->size();
  // 7 columns split near-evenly, the remainder on the low ranks.
  std::vector<int64_t> sizes;
  for (int r = 0; r < n; ++r)
    sizes.push_back(7 / n + (r < 7 % n ? 1 : 0));
  for (int64_t dim : {0, 1}) {
    const Shape shape = dim == 0 ? Shape{7, 3} : Shape{3, 7};
    for (DType dtype : {DType::F32, DType::I32, DType::F16}) {
      const Tensor got = world->reduce_scatter(rank_data(shape, world->rank(), dtype), dim, sizes);
      const Tensor total =
          Tensor::from_vector(reduce_locally(shape, n, dtype, false), shape, DType::F64);
      int64_t offset = 0;
      for (int r = 0; r < world->rank(); ++r)
        offset += sizes[static_cast<size_t>(r)];
      const Tensor expected = total.narrow(dim, offset, sizes[static_cast<size_t>(world->rank())]);
      ASSERT_EQ(got.shape(), expected.shape());
      EXPECT_EQ(got.to_vector(), expected.to_vector()) << "dim " << dim << " " << dtype_name(dtype);
    }
  }
}

TEST(Collectives, AsyncReduceScatterSplitsEvenlyByDefault) {
  auto world = test_world();
  const int n = world->size();
  const Shape shape{2, 2 * n};
  WorkHandle work = world->reduce_scatter_async(rank_data(shape, world->rank(), DType::F64), 1);
  work->wait();
  const Tensor total =
      Tensor::from_vector(reduce_locally(shape, n, DType::F64, false), shape, DType::F64);
  EXPECT_EQ(work->result().to_vector(), total.narrow(1, 2 * world->rank(), 2).to_vector());
  EXPECT_ERROR_CONTAINING(world->reduce_scatter(Tensor::zeros({2, 2 * n + 1}), 1),
                          {"reduce_scatter", "does not split evenly"});
}

TEST(Collectives, BroadcastCopiesTheRootBufferToEveryRankFromEachRoot) {
  auto world = test_world();
  for (int root = 0; root < world->size(); ++root) {
    for (DType dtype : {DType::F32, DType::I64, DType::BF16}) {
      const Tensor t = rank_data({3, 3}, world->rank(), dtype);
      if (root % 2 == 0) {
        world->broadcast(t, root);
      } else {
        WorkHandle work = world->broadcast_async(t, root);
        work->wait();
      }
      EXPECT_EQ(t.to_vector(), rank_data({3, 3}, root, dtype).to_vector()) << "root " << root;
    }
  }
  EXPECT_ERROR_CONTAINING(world->broadcast(Tensor::zeros({1}), world->size()), {"root"});
}

TEST(Collectives, BarrierCompletesSyncAndAsync) {
  auto world = test_world();
  world->barrier();
  WorkHandle work = world->barrier_async();
  work->wait();
  EXPECT_TRUE(work->is_completed());
}

TEST(Collectives, SplitBuildsGroupsByColorOrderedByKey) {
  auto world = test_world();
  // Even and odd ranks, each group ordered by descending world rank.
  auto group = world->split(world->rank() % 2, -world->rank(), "parity");
  const int members = (world->size() + 1 - world->rank() % 2) / 2;
  EXPECT_EQ(group->size(), members);
  EXPECT_EQ(group->name(), "parity");
  Tensor mine = Tensor::full({1}, world->rank(), DType::I64);
  const std::vector<int64_t> ranks = group->all_gather(mine, 0).to_vector_i64();
  std::vector<int64_t> expected;
  for (int r = world->size() - 1; r >= 0; --r) {
    if (r % 2 == world->rank() % 2) expected.push_back(r);
  }
  EXPECT_EQ(ranks, expected);
}

}  // namespace
}  // namespace autotp
