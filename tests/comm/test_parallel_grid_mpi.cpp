// ParallelGrid under mpirun: for every tensor-parallel size dividing the world, the TP groups
// hold contiguous ranks and the DP groups strided ones; invalid sizes are errors; a
// user-built model-parallel unit is adopted; node-local ranks.
#include <gtest/gtest.h>

#include "core/comm/device_selection.h"
#include "core/comm/parallel_grid.h"
#include "tests/support/mpi_test_env.h"

namespace autotp {
namespace {

using testing::test_world;

std::vector<int64_t> members(Communicator& group, int world_rank) {
  return group.all_gather(Tensor::full({1}, world_rank, DType::I64), 0).to_vector_i64();
}

std::vector<int64_t> as_i64(const std::vector<int>& v) {
  return {v.begin(), v.end()};
}

TEST(ParallelGridMpi, GroupsAreContiguousForTpAndStridedForDpForEveryDivisor) {
  auto world = test_world();
  const int n = world->size(), rank = world->rank();
  for (int tp = 1; tp <= n; ++tp) {
    if (n % tp != 0) continue;
    ParallelGrid grid(world, tp);
    EXPECT_EQ(grid.tensor_model_parallel_world_size(), tp);
    EXPECT_EQ(grid.data_parallel_world_size(), n / tp);
    EXPECT_EQ(grid.tensor_model_parallel_rank(), rank % tp);
    EXPECT_EQ(grid.data_parallel_rank(), rank / tp);
    EXPECT_EQ(grid.model_parallel_rank(), grid.tensor_model_parallel_rank());
    EXPECT_EQ(grid.tensor_model_parallel_src_rank(), (rank / tp) * tp);
    const GridLayout layout = GridLayout::compute(n, rank, tp);
    EXPECT_EQ(members(*grid.tp(), rank), as_i64(layout.tp_group_ranks())) << "tp " << tp;
    EXPECT_EQ(members(*grid.dp(), rank), as_i64(layout.dp_group_ranks())) << "tp " << tp;
  }
}

TEST(ParallelGridMpi, SizesThatDoNotMultiplyToTheWorldAreErrors) {
  auto world = test_world();
  const int n = world->size();
  EXPECT_ERROR_CONTAINING(ParallelGrid(world, n + 1), {"does not divide the world size"});
  EXPECT_ERROR_CONTAINING(ParallelGrid(world, 1, n + 1),
                          {"does not equal the world size " + std::to_string(n)});
  EXPECT_ERROR_CONTAINING(ParallelGrid(world, 0), {"at least 1"});
}

// A model-parallel unit over groups the user built: TP = the whole world.
class UserMpu : public ModelParallelUnit {
 public:
  explicit UserMpu(const std::shared_ptr<Communicator>& world)
      : tp_(world->split(0, world->rank(), "user_tp")),
        dp_(world->split(world->rank(), 0, "user_dp")) {}
  int tensor_model_parallel_rank() const override { return tp_->rank(); }
  int tensor_model_parallel_world_size() const override { return tp_->size(); }
  std::shared_ptr<Communicator> tensor_model_parallel_group() const override { return tp_; }
  int data_parallel_rank() const override { return dp_->rank(); }
  int data_parallel_world_size() const override { return dp_->size(); }
  std::shared_ptr<Communicator> data_parallel_group() const override { return dp_; }

 private:
  std::shared_ptr<Communicator> tp_, dp_;
};

TEST(ParallelGridMpi, AdoptsTheGroupsOfAUserModelParallelUnit) {
  auto world = test_world();
  UserMpu mpu(world);
  auto grid = ParallelGrid::from_mpu(world, mpu);
  EXPECT_EQ(grid->tensor_model_parallel_group(), mpu.tensor_model_parallel_group());
  EXPECT_EQ(grid->tensor_model_parallel_world_size(), world->size());
  EXPECT_EQ(grid->data_parallel_world_size(), 1);
  EXPECT_EQ(grid->tensor_model_parallel_src_rank(), 0);
}

TEST(ParallelGridMpi, NodeLocalRanksOnOneNodeAreTheWorldRanks) {
  auto world = test_world();
  const NodeInfo node = node_local_info(world->mpi_comm());
  EXPECT_EQ(node.local_rank, world->rank());
  EXPECT_EQ(node.local_size, world->size());
  const DevicePlan plan = choose_devices(world->mpi_comm());
  EXPECT_TRUE(plan.device.is_cpu() || plan.device.is_cuda());
  if (cuda_device_count() == 0) {
    EXPECT_EQ(plan.backend, CommBackend::Mpi);
    EXPECT_TRUE(plan.device.is_cpu());
  }
}

}  // namespace
}  // namespace autotp
