// Parameter gathering under mpirun: the guard's round trip restores bit-identical shards,
// fused layers gather per sub-parameter (not in rank order), edits inside the scope carry
// over, other modules are untouched, and frozen sizes ignore later rule changes.
#include <gtest/gtest.h>

#include "layers/parallel/column_parallel_linear.h"
#include "layers/parallel/gather_params.h"
#include "layers/parallel/row_parallel_linear.h"
#include "tests/layers/parallel/tp_test_helpers.h"

namespace autotp {
namespace {

using testing::int_linear;
using testing::test_world;

TPLayerOptions uneven_options(const std::string& name) {
  TPLayerOptions o;
  o.name = name;
  o.allow_uneven = true;
  return o;
}

TEST(GatherParams, GuardGathersFullFusedWeightsAndRestoresBitIdenticalShards) {
  auto tp = test_world();
  const auto full = int_linear(5, 3 * 7, true, 1);  // q|k|v of 7 rows each: uneven for 2, 3, 4
  TPLayerOptions o = uneven_options("model.layers.0.self_attn.qkv_proj");
  o.shape = parse_fused_shape("(3, -1)");
  ColumnParallelLinear col(*full, tp, o);
  const Tensor shard = col.weight();
  const std::vector<double> shard_values = shard.to_vector();
  const std::vector<double> bias_values = col.bias().to_vector();
  {
    GatherReplacedLayerParams guard(col);
    ASSERT_EQ(guard.layers().size(), 1u);
    EXPECT_TRUE(col.params_gathered());
    // Per sub-parameter: the original weight, not the shards concatenated in rank order.
    EXPECT_IDENTICAL(col.weight(), full->weight());
    EXPECT_IDENTICAL(col.bias(), full->bias());
    const Tensor rank_order = tp->all_gather(shard, 0, col.split_info("weight").partition_sizes());
    EXPECT_NE(rank_order.to_vector(), full->weight().to_vector());
  }
  EXPECT_FALSE(col.params_gathered());
  // The very tensor the optimizer holds, with its values unchanged.
  EXPECT_EQ(col.weight().autograd_meta(), shard.autograd_meta());
  EXPECT_EQ(col.weight().raw_data(), shard.raw_data());
  EXPECT_EQ(col.weight().to_vector(), shard_values);
  EXPECT_EQ(col.bias().to_vector(), bias_values);
  EXPECT_TRUE(col.weight().requires_grad());
}

TEST(GatherParams, RowLayersGatherTheInputDimAndLeaveTheReplicatedBias) {
  auto tp = test_world();
  const auto full = int_linear(10, 4, true, 2);  // 10 inputs: 5/5, 4/3/3, 3/3/2/2
  RowParallelLinear row(*full, tp, uneven_options("model.layers.0.mlp.down_proj"));
  const Tensor bias = row.bias();
  {
    GatherReplacedLayerParams guard(std::vector<Module*>{&row});
    EXPECT_IDENTICAL(row.weight(), full->weight());
    EXPECT_EQ(row.bias().autograd_meta(), bias.autograd_meta());  // never swapped
  }
  EXPECT_EQ(row.weight().shape(), (Shape{4, shard_sizes(10, tp->size(), "mlp", {})[tp->rank()]}));
}

TEST(GatherParams, EditsToTheFullWeightsInsideTheScopeCarryOverToTheShards) {
  auto tp = test_world();
  const auto full = int_linear(3, 16, false, 3);
  TPLayerOptions o = uneven_options("qkv");
  o.shape = parse_fused_shape("((8, 4, 4), -1)");
  ColumnParallelLinear col(*full, tp, o);
  const Tensor replacement = Tensor::arange(0.0, 48.0, 1.0).reshape({16, 3});
  {
    GatherReplacedLayerParams guard(col);
    col.weight().copy_(replacement);  // e.g. a checkpoint loaded into the full weights
  }
  const Tensor expected = take_shard(replacement, col.split_info("weight").plan, tp->rank());
  EXPECT_EQ(col.weight().to_vector(), expected.to_vector());
}

TEST(GatherParams, OtherModulesAndDisabledGuardsAreNoOps) {
  auto tp = test_world();
  const auto plain = int_linear(3, 4, true, 1);
  const Tensor w = plain->weight();
  ColumnParallelLinear col(*int_linear(3, 4 * tp->size(), true, 2), tp);
  {
    GatherReplacedLayerParams guard(std::vector<Module*>{plain.get(), &col}, /*enabled=*/false);
    EXPECT_TRUE(guard.layers().empty());
    EXPECT_FALSE(col.params_gathered());
  }
  {
    GatherReplacedLayerParams guard(*plain);
    EXPECT_TRUE(guard.layers().empty());
    EXPECT_EQ(plain->weight().autograd_meta(), w.autograd_meta());
  }
}

TEST(GatherParams, FrozenSizesDoNotChangeWhenTheGrainChangesLater) {
  auto tp = test_world();
  ShardRules rules{.grain_size = 4};
  const auto full = int_linear(3, 4 * tp->size() + 2, true, 4);
  TPLayerOptions o = uneven_options("model.layers.0.mlp.up_proj");
  o.rules = rules;
  ColumnParallelLinear col(*full, tp, o);
  // Grain 4: four rows per rank, the last rank also takes the remainder 2.
  std::vector<int64_t> expected(static_cast<size_t>(tp->size()), 4);
  expected.back() += 2;
  EXPECT_EQ(col.split_info("weight").partition_sizes(), expected);
  // A later model with another grain (DeepSpeed's process-wide setting) changes nothing here.
  o.rules.grain_size = 1;
  ColumnParallelLinear other(*full, tp, o);
  EXPECT_NE(other.split_info("weight").partition_sizes(), expected);
  EXPECT_EQ(col.split_info("weight").partition_sizes(), expected);
  EXPECT_EQ(col.weight().size(0), expected[static_cast<size_t>(tp->rank())]);
  GatherReplacedLayerParams guard(col);
  EXPECT_IDENTICAL(col.weight(), full->weight());
}

TEST(GatherParams, SplitMetadataDescribesEachParameter) {
  auto tp = test_world();
  const auto full = int_linear(5, 16, true, 1);
  TPLayerOptions o = uneven_options("qkv");
  o.shape = parse_fused_shape("((8, 4, 4), -1)");
  ColumnParallelLinear col(*full, tp, o);
  const ParamSplitInfo& w = col.split_info("weight");
  EXPECT_EQ(w.partition_type, PartitionType::Column);
  EXPECT_TRUE(w.tensor_model_parallel);
  EXPECT_EQ(w.original_shape, (Shape{16, 5}));
  EXPECT_EQ(w.plan.dim, 0);
  EXPECT_EQ(w.sub_sizes(), (std::vector<int64_t>{8, 4, 4}));
  EXPECT_EQ(w.plan.widths[1], shard_sizes(4, tp->size(), "qkv", {}));
  EXPECT_TRUE(col.is_tensor_model_parallel("bias"));
  RowParallelLinear row(*int_linear(4 * tp->size(), 3, true, 1), tp);
  EXPECT_TRUE(row.is_tensor_model_parallel("weight"));
  EXPECT_FALSE(row.is_tensor_model_parallel("bias"));
  EXPECT_EQ(row.split_info("weight").plan.dim, 1);
  EXPECT_ERROR_CONTAINING(row.split_info("scale"), {"no split information", "'scale'"});
}

}  // namespace
}  // namespace autotp
