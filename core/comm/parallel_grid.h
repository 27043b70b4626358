// The tp × dp process grid: TP groups of contiguous ranks [k·tp, (k+1)·tp), DP groups of
// strided ranks {r, r+tp, ...}; and ModelParallelUnit, the group accessors (DeepSpeed's mpu).
#pragma once

#include <memory>
#include <vector>

#include "core/comm/communicator.h"

namespace autotp {

// Where one rank sits in the grid: arithmetic only, no communication.
struct GridLayout {
  int world_size = 1;
  int rank = 0;
  int tp_size = 1;
  int dp_size = 1;
  int tp_rank = 0;  // rank % tp_size
  int dp_rank = 0;  // rank / tp_size

  // Checks the sizes (tp_size >= 1 dividing world_size; dp_size, when given (> 0), with
  // tp_size * dp_size == world_size) and places `rank`.
  static GridLayout compute(int world_size, int rank, int tp_size, int dp_size = 0);
  // The world rank of TP rank 0 in this rank's TP group: (rank / tp) * tp.
  int tp_src_rank() const { return dp_rank * tp_size; }
  // World ranks of this rank's TP group and DP group, in group-rank order.
  std::vector<int> tp_group_ranks() const;
  std::vector<int> dp_group_ranks() const;
};

// The accessors a model needs to find its groups. Implement it to hand autotp groups built
// elsewhere (as DeepSpeed's `mpu` argument allows); ParallelGrid implements it too.
class ModelParallelUnit {
 public:
  virtual ~ModelParallelUnit() = default;
  virtual int tensor_model_parallel_rank() const = 0;
  virtual int tensor_model_parallel_world_size() const = 0;
  virtual std::shared_ptr<Communicator> tensor_model_parallel_group() const = 0;
  virtual int data_parallel_rank() const = 0;
  virtual int data_parallel_world_size() const = 0;
  virtual std::shared_ptr<Communicator> data_parallel_group() const = 0;

  // DeepSpeed's model-parallel aliases: in a 2-D grid they are the tensor-parallel group.
  int model_parallel_rank() const { return tensor_model_parallel_rank(); }
  int model_parallel_world_size() const { return tensor_model_parallel_world_size(); }
  std::shared_ptr<Communicator> model_parallel_group() const {
    return tensor_model_parallel_group();
  }
};

class ParallelGrid final : public ModelParallelUnit {
 public:
  // Collective over `world`: splits it into TP and DP groups. dp_size 0 means world / tp.
  // An Error names the sizes when they do not multiply to the world size.
  ParallelGrid(std::shared_ptr<Communicator> world, int tp_size, int dp_size = 0);
  // Collective over `world`: adopts the groups of `mpu` (built by the caller), checking that
  // tp × dp equals the world size and that the group sizes agree on every rank.
  static std::shared_ptr<ParallelGrid> from_mpu(std::shared_ptr<Communicator> world,
                                                const ModelParallelUnit& mpu);

  int tensor_model_parallel_rank() const override { return tp_->rank(); }
  int tensor_model_parallel_world_size() const override { return tp_->size(); }
  std::shared_ptr<Communicator> tensor_model_parallel_group() const override { return tp_; }
  int data_parallel_rank() const override { return dp_->rank(); }
  int data_parallel_world_size() const override { return dp_->size(); }
  std::shared_ptr<Communicator> data_parallel_group() const override { return dp_; }
  // The world rank of TP rank 0 of this rank's TP group (the source of TP broadcasts).
  int tensor_model_parallel_src_rank() const { return tp_src_rank_; }

  const std::shared_ptr<Communicator>& world() const { return world_; }
  const std::shared_ptr<Communicator>& tp() const { return tp_; }
  const std::shared_ptr<Communicator>& dp() const { return dp_; }

 private:
  ParallelGrid(std::shared_ptr<Communicator> world, std::shared_ptr<Communicator> tp,
               std::shared_ptr<Communicator> dp, int tp_src_rank);

  std::shared_ptr<Communicator> world_;
  std::shared_ptr<Communicator> tp_;
  std::shared_ptr<Communicator> dp_;
  int tp_src_rank_ = 0;
};

}  // namespace autotp
