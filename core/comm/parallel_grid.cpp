// ParallelGrid: grid arithmetic, the TP/DP splits, and adoption of user-built groups.
#include "core/comm/parallel_grid.h"

namespace autotp {

GridLayout GridLayout::compute(int world_size, int rank, int tp_size, int dp_size) {
  AUTOTP_CHECK(world_size >= 1, "parallel grid: world size {} must be positive", world_size);
  AUTOTP_CHECK(rank >= 0 && rank < world_size, "parallel grid: rank {} is outside the world of {}",
               rank, world_size);
  AUTOTP_CHECK(tp_size >= 1, "parallel grid: tensor-parallel size {} must be at least 1", tp_size);
  AUTOTP_CHECK(dp_size >= 0,
               "parallel grid: data-parallel size {} must be positive (or 0 to "
               "derive it)",
               dp_size);
  if (dp_size == 0) {
    AUTOTP_CHECK(world_size % tp_size == 0,
                 "parallel grid: tensor-parallel size {} does not divide the world size {} "
                 "(the world is data-parallel × tensor-parallel)",
                 tp_size, world_size);
    dp_size = world_size / tp_size;
  }
  AUTOTP_CHECK(static_cast<int64_t>(tp_size) * dp_size == world_size,
               "parallel grid: tensor-parallel size {} × data-parallel size {} = {} does not "
               "equal the world size {}",
               tp_size, dp_size, static_cast<int64_t>(tp_size) * dp_size, world_size);
  GridLayout g;
  g.world_size = world_size;
  g.rank = rank;
  g.tp_size = tp_size;
  g.dp_size = dp_size;
  g.tp_rank = rank % tp_size;
  g.dp_rank = rank / tp_size;
  return g;
}

std::vector<int> GridLayout::tp_group_ranks() const {
  std::vector<int> ranks;
  for (int i = 0; i < tp_size; ++i)
    ranks.push_back(dp_rank * tp_size + i);
  return ranks;
}

std::vector<int> GridLayout::dp_group_ranks() const {
  std::vector<int> ranks;
  for (int i = 0; i < dp_size; ++i)
    ranks.push_back(tp_rank + i * tp_size);
  return ranks;
}

ParallelGrid::ParallelGrid(std::shared_ptr<Communicator> world, std::shared_ptr<Communicator> tp,
                           std::shared_ptr<Communicator> dp, int tp_src_rank)
    : world_(std::move(world)), tp_(std::move(tp)), dp_(std::move(dp)), tp_src_rank_(tp_src_rank) {}

ParallelGrid::ParallelGrid(std::shared_ptr<Communicator> world, int tp_size, int dp_size) {
  AUTOTP_CHECK(world != nullptr, "parallel grid: the world communicator is null");
  const GridLayout g = GridLayout::compute(world->size(), world->rank(), tp_size, dp_size);
  // Every rank creates both groups (splits are collective over the world).
  tp_ = world->split(g.dp_rank, g.tp_rank, "tp");
  dp_ = world->split(g.tp_rank, g.dp_rank, "dp");
  AUTOTP_ASSERT(tp_->size() == g.tp_size && tp_->rank() == g.tp_rank && dp_->size() == g.dp_size &&
                    dp_->rank() == g.dp_rank,
                "grid split gave tp {}/{} dp {}/{} for rank {}", tp_->rank(), tp_->size(),
                dp_->rank(), dp_->size(), g.rank);
  world_ = std::move(world);
  tp_src_rank_ = g.tp_src_rank();
}

std::shared_ptr<ParallelGrid> ParallelGrid::from_mpu(std::shared_ptr<Communicator> world,
                                                     const ModelParallelUnit& mpu) {
  AUTOTP_CHECK(world != nullptr, "parallel grid: the world communicator is null");
  std::shared_ptr<Communicator> tp = mpu.tensor_model_parallel_group();
  std::shared_ptr<Communicator> dp = mpu.data_parallel_group();
  AUTOTP_CHECK(tp != nullptr && dp != nullptr,
               "parallel grid: the model-parallel unit returned a null group");
  AUTOTP_CHECK(tp->rank() == mpu.tensor_model_parallel_rank() &&
                   tp->size() == mpu.tensor_model_parallel_world_size() &&
                   dp->rank() == mpu.data_parallel_rank() &&
                   dp->size() == mpu.data_parallel_world_size(),
               "parallel grid: the model-parallel unit's ranks/sizes (tp {}/{}, dp {}/{}) "
               "disagree with its groups (tp {}/{}, dp {}/{})",
               mpu.tensor_model_parallel_rank(), mpu.tensor_model_parallel_world_size(),
               mpu.data_parallel_rank(), mpu.data_parallel_world_size(), tp->rank(), tp->size(),
               dp->rank(), dp->size());
  AUTOTP_CHECK(static_cast<int64_t>(tp->size()) * dp->size() == world->size(),
               "parallel grid: the model-parallel unit's tensor-parallel size {} × data-parallel "
               "size {} does not equal the world size {}",
               tp->size(), dp->size(), world->size());
  // The world rank of TP rank 0: broadcast within the TP group.
  Tensor src = Tensor::full({1}, static_cast<double>(world->rank()), DType::I64);
  tp->broadcast(src, 0);
  const int src_rank = static_cast<int>(src.to_vector_i64()[0]);
  return std::shared_ptr<ParallelGrid>(new ParallelGrid(std::move(world), tp, dp, src_rank));
}

}  // namespace autotp
