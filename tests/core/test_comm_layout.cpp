// Communication arithmetic without MPI: grid placement for worlds of 1-4 ranks and invalid
// sizes, the device/backend plan from node-local ranks, and the recorder's counts and hash.
#include <gtest/gtest.h>

#include "core/comm/device_selection.h"
#include "core/comm/nccl_communicator.h"
#include "core/comm/parallel_grid.h"
#include "core/comm/recorder.h"

namespace autotp {
namespace {

TEST(GridLayout, PlacesEveryRankOfWorldsOfOneToFourForEveryDivisor) {
  for (int world = 1; world <= 4; ++world) {
    for (int tp = 1; tp <= world; ++tp) {
      if (world % tp != 0) continue;
      for (int rank = 0; rank < world; ++rank) {
        const GridLayout g = GridLayout::compute(world, rank, tp);
        EXPECT_EQ(g.dp_size * g.tp_size, world);
        EXPECT_EQ(g.tp_rank, rank % tp);
        EXPECT_EQ(g.dp_rank, rank / tp);
        EXPECT_EQ(g.tp_src_rank(), (rank / tp) * tp);
        // TP: [k*tp, (k+1)*tp); DP: {r, r+tp, ...}; this rank sits in both at its index.
        const std::vector<int> tp_ranks = g.tp_group_ranks(), dp_ranks = g.dp_group_ranks();
        ASSERT_EQ(static_cast<int>(tp_ranks.size()), tp);
        ASSERT_EQ(static_cast<int>(dp_ranks.size()), world / tp);
        for (int i = 0; i < tp; ++i)
          EXPECT_EQ(tp_ranks[i], g.dp_rank * tp + i);
        for (int i = 0; i < world / tp; ++i)
          EXPECT_EQ(dp_ranks[i], g.tp_rank + i * tp);
        EXPECT_EQ(tp_ranks[g.tp_rank], rank);
        EXPECT_EQ(dp_ranks[g.dp_rank], rank);
      }
    }
  }
}

TEST(GridLayout, WorldOfFourWithTpTwoGroupsZeroOneAndZeroTwo) {
  const GridLayout g = GridLayout::compute(4, 2, 2);
  EXPECT_EQ(g.tp_group_ranks(), (std::vector<int>{2, 3}));
  EXPECT_EQ(g.dp_group_ranks(), (std::vector<int>{0, 2}));
  EXPECT_EQ(g.tp_src_rank(), 2);
}

TEST(GridLayout, RejectsSizesThatDoNotMultiplyToTheWorld) {
  EXPECT_THROW(GridLayout::compute(4, 0, 3), Error);
  EXPECT_THROW(GridLayout::compute(3, 0, 2), Error);
  EXPECT_THROW(GridLayout::compute(2, 0, 0), Error);
  EXPECT_THROW(GridLayout::compute(4, 0, 2, 3), Error);
  EXPECT_THROW(GridLayout::compute(4, 4, 2), Error);
  try {
    GridLayout::compute(4, 0, 2, 3);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor-parallel size 2 × data-parallel size 3 = 6 "
                                         "does not equal the world size 4"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(GridLayout::compute(4, 3, 2, 2).dp_rank, 1);
}

TEST(DevicePlan, UsesTheCpuAndMpiWithoutGpus) {
  const DevicePlan plan = plan_devices(1, 2, 0);
  EXPECT_TRUE(plan.device.is_cpu());
  EXPECT_EQ(plan.backend, CommBackend::Mpi);
  EXPECT_TRUE(plan.notice.empty());
}

TEST(DevicePlan, PicksTheGpuOfTheNodeLocalRankAndNcclWhenEachRankHasOne) {
  const DevicePlan plan = plan_devices(3, 4, 8);
  EXPECT_EQ(plan.device, Device::cuda(3));
  EXPECT_FALSE(plan.shares_gpu);
  EXPECT_EQ(plan.backend, nccl_available() ? CommBackend::Nccl : CommBackend::Mpi);
}

TEST(DevicePlan, RoutesRanksSharingAGpuToMpiWithANotice) {
  const DevicePlan plan = plan_devices(3, 4, 2);
  EXPECT_EQ(plan.device, Device::cuda(1));
  EXPECT_TRUE(plan.shares_gpu);
  EXPECT_EQ(plan.backend, CommBackend::Mpi);
  EXPECT_NE(plan.notice.find("4 ranks on this node share 2 GPUs"), std::string::npos)
      << plan.notice;
  EXPECT_THROW(plan_devices(2, 2, 1), Error);
}

TEST(CollectiveRecorder, CountsByKindAndHashesTheSequenceOrderSensitively) {
  const CollectiveDesc reduce{CollectiveKind::AllReduce, ReduceOp::Sum, DType::F32, 10, -1, 0};
  const CollectiveDesc gather{CollectiveKind::AllGather, ReduceOp::Sum, DType::BF16, 6, 1, 7};
  CollectiveRecorder a({}), b({});
  a.record(reduce);
  a.record(gather);
  b.record(gather);
  b.record(reduce);
  EXPECT_EQ(a.current()[CollectiveKind::AllReduce].bytes, 40);
  EXPECT_EQ(a.current()[CollectiveKind::AllGather].bytes, 12);
  EXPECT_EQ(a.current().total_calls(), 2);
  EXPECT_NE(a.sequence_hash(), b.sequence_hash());
  EXPECT_EQ(a.current().str(), "all_reduce 1 call / 40 B, all_gather 1 call / 12 B");
  EXPECT_EQ(gather.str(), "all_gather(bf16, 6 elements, dim 1, layout 7)");
  a.mark_checked();
  EXPECT_EQ(a.sequence_number(), 2);
  EXPECT_TRUE(a.log().empty());
}

}  // namespace
}  // namespace autotp
