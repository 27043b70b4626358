// Tensor-parallel split arithmetic without communication: DeepSpeed's shard sizes (the
// reference's worked examples), fused-shape parsing and inference, and which rows of a fused
// weight each rank takes.
#include <gtest/gtest.h>

#include <vector>

#include "core/ops.h"
#include "layers/parallel/fused_shape.h"
#include "layers/parallel/shard_sizes.h"
#include "layers/parallel/split_plan.h"

namespace autotp {
namespace {

using Sizes = std::vector<int64_t>;

Sizes near_even(int64_t total, int64_t world) {
  return shard_sizes(total, world, "", {});
}

TEST(ShardSizes, NearEvenPutsTheRemainderOnTheLowRanks) {
  EXPECT_EQ(near_even(10, 4), (Sizes{3, 3, 2, 2}));  // not torch.chunk's 3, 3, 3, 1
  EXPECT_EQ(near_even(129, 4), (Sizes{33, 32, 32, 32}));
  EXPECT_EQ(near_even(10, 3), (Sizes{4, 3, 3}));
  EXPECT_EQ(near_even(101, 2), (Sizes{51, 50}));
  EXPECT_EQ(near_even(2, 3), (Sizes{1, 1, 0}));
  EXPECT_EQ(near_even(12, 4), (Sizes{3, 3, 3, 3}));
}

TEST(ShardSizes, KvHeadRuleGivesWholeKvGroupsToTheLowRanksFirst) {
  const std::string q = "model.layers.0.self_attn.q_proj";
  // 6 KV heads over 4: 2/2/1/1 groups, head_dim 64.
  EXPECT_EQ(shard_sizes(6 * 64, 4, q, {.num_kv_heads = 6}), (Sizes{128, 128, 64, 64}));
  // Qwen3 shapes, 8 KV heads over 3 (3/3/2 groups): q 2048 -> 768/768/512, kv 1024 -> 384/384/256.
  EXPECT_EQ(shard_sizes(2048, 3, q, {.num_kv_heads = 8}), (Sizes{768, 768, 512}));
  EXPECT_EQ(shard_sizes(1024, 3, "self_attn.k_proj", {.num_kv_heads = 8}), (Sizes{384, 384, 256}));
  // 2 KV heads over 3: the last rank gets nothing.
  EXPECT_EQ(shard_sizes(2048, 3, q, {.num_kv_heads = 2}), (Sizes{1024, 1024, 0}));
  // 4 heads over 3 (TestUnevenTp3RowParallelGQA): [2, 1, 1] heads, so [6, 3, 3] dims.
  EXPECT_EQ(shard_sizes(12, 3, "self_attn.o_proj", {.num_kv_heads = 4}), (Sizes{6, 3, 3}));
}

TEST(ShardSizes, KvHeadRuleSkipsMlpNamesLmHeadAndDimsItDoesNotDivide) {
  const ShardRules kv{.num_kv_heads = 2};
  EXPECT_TRUE(uses_kv_head_rule(8, "model.layers.0.self_attn.o_proj", kv));
  for (const char* name : {"model.layers.0.mlp.fc", "lm_head", "embed_out", "x.gate_proj",
                           "x.up_proj", "x.down_proj", "experts.w1", "experts.w2", "experts.w3"}) {
    EXPECT_FALSE(uses_kv_head_rule(8, name, kv)) << name;
  }
  // Only the exact names lm_head / embed_out are excluded (as in DeepSpeed).
  EXPECT_TRUE(uses_kv_head_rule(8, "model.lm_head", kv));
  EXPECT_FALSE(uses_kv_head_rule(9, "self_attn.q_proj", kv));
  EXPECT_FALSE(uses_kv_head_rule(8, "self_attn.q_proj", {}));
  // An MLP dim of 10 over 3 stays near-even although 10 % 2 == 0.
  EXPECT_EQ(shard_sizes(10, 3, "mlp.up_proj", kv), (Sizes{4, 3, 3}));
  EXPECT_EQ(shard_sizes(10, 3, "self_attn.q_proj", kv), (Sizes{5, 5, 0}));
}

TEST(ShardSizes, GrainRuleSplitsWholeGrainsAndGivesTheRemainderToTheLastRank) {
  EXPECT_EQ(shard_sizes(200, 2, "", {.grain_size = 64}), (Sizes{128, 72}));
  EXPECT_EQ(shard_sizes(256, 3, "", {.grain_size = 64}), (Sizes{128, 64, 64}));
  // Below the grain the small-dimension rule applies.
  EXPECT_EQ(shard_sizes(10, 4, "", {.grain_size = 64}), (Sizes{3, 3, 2, 2}));
  EXPECT_THROW(shard_sizes(10, 2, "", {.grain_size = 0}), Error);
  EXPECT_THROW(shard_size(10, 2, 2, "", {}), Error);
}

TEST(ShardSizes, OffsetsAreExclusivePrefixSums) {
  EXPECT_EQ(shard_offsets({3, 3, 2, 2}), (Sizes{0, 3, 6, 8}));
}

TEST(FusedShape, ParsesSizesInferredDimsAndTuplesWithEitherBracket) {
  EXPECT_EQ(parse_fused_shape("(3, -1)"), (FusedShape{FusedDim::of(3), FusedDim::infer()}));
  EXPECT_EQ(parse_fused_shape(" ( (8,4, 4) ,-1 ) "),
            (FusedShape{FusedDim::of_parts({8, 4, 4}), FusedDim::infer()}));
  EXPECT_EQ(parse_fused_shape("[4, -1, 16]"),
            (FusedShape{FusedDim::of(4), FusedDim::infer(), FusedDim::of(16)}));
  EXPECT_EQ(fused_shape_str(parse_fused_shape("((8,4,4),-1)")), "((8, 4, 4), -1)");
}

TEST(FusedShape, ParseErrorsQuoteTheText) {
  for (const char* bad :
       {"(3, -2)", "(3,", "(3, -1) x", "3, -1", "(3, 0)", "(a, -1)", "((), -1)"}) {
    try {
      parse_fused_shape(bad);
      ADD_FAILURE() << bad << " parsed";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos)
          << e.what();
    }
  }
}

TEST(FusedShape, InfersEqualPartsExplicitPartsAndStackedExperts) {
  SubParamLayout qkv = infer_subparam_layout({12, 8}, parse_fused_shape("(3, -1)"), 0, "qkv");
  EXPECT_EQ(qkv.logical_shape, (Shape{12, 8}));
  EXPECT_EQ(qkv.sub_sizes, (Sizes{4, 4, 4}));
  EXPECT_TRUE(qkv.bias_partitioned);

  SubParamLayout gqa =
      infer_subparam_layout({16, 8}, parse_fused_shape("((8, 4, 4), -1)"), 0, "qkv");
  EXPECT_EQ(gqa.logical_shape, (Shape{16, 8}));
  EXPECT_EQ(gqa.sub_sizes, (Sizes{8, 4, 4}));

  // E = 4 experts stacked: [4 * 6, 8] viewed as [4, 6, 8], split on dim 1; bias [4, 6] too.
  SubParamLayout moe =
      infer_subparam_layout({24, 8}, parse_fused_shape("(4, -1, 8)"), 1, "experts");
  EXPECT_EQ(moe.logical_shape, (Shape{4, 6, 8}));
  EXPECT_EQ(moe.partition_dim, 1);
  EXPECT_EQ(moe.sub_sizes, (Sizes{6}));
  EXPECT_TRUE(moe.bias_partitioned);

  // Row sub-parameters on the input dim: the bias stays replicated.
  SubParamLayout row = infer_subparam_layout({5, 8}, parse_fused_shape("(-1, (2, 3, 3))"), 1, "o");
  EXPECT_EQ(row.logical_shape, (Shape{5, 8}));
  EXPECT_EQ(row.sub_sizes, (Sizes{2, 3, 3}));
  EXPECT_FALSE(row.bias_partitioned);
}

void expect_layout_error(const Shape& weight, const char* spec, int64_t pd, const char* reason) {
  try {
    infer_subparam_layout(weight, parse_fused_shape(spec), pd, "model.layers.0.self_attn.qkv_proj");
    ADD_FAILURE() << spec << " on " << shape_str(weight) << " was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.layers.0.self_attn.qkv_proj"), std::string::npos) << msg;
    EXPECT_NE(msg.find(reason), std::string::npos) << msg;
  }
}

TEST(FusedShape, RejectsShapesThatDoNotFitWithTheReason) {
  expect_layout_error({10, 8}, "(3, -1)", 0, "does not divide into 3 equal sub-parameters");
  expect_layout_error({15, 8}, "((8, 4, 4), -1)", 0, "does not divide the 120 elements");
  expect_layout_error({24, 8}, "(4, -1, 6)", 1, "the last dim is 6 but must be in_features 8");
  expect_layout_error({24, 8}, "(-1, -1, 8)", 1, "ambiguous");
  expect_layout_error({16, 8}, "((8, 8), (4, 4))", 0, "only the partition dim");
  expect_layout_error({16, 8}, "((8, 4, 4), -1)", 2, "partition_dim must be in [0, 2)");
  expect_layout_error({16, 8}, "((8, 4, 4), 4)", 0, "the last dim is 4 but must be in_features 8");
  expect_layout_error({24, 8}, "(4, -1, 7)", 1, "multiply to 28, which does not divide the 192");
}

// Rows of a fused [rows, 1] weight that rank `rank` takes.
std::vector<double> rows_taken(int64_t rows, const char* spec, int64_t world, int64_t rank,
                               const std::string& name = "", ShardRules rules = {}) {
  const SubParamLayout layout = infer_subparam_layout({rows, 1}, parse_fused_shape(spec), 0, name);
  const SplitPlan plan = make_split_plan(layout, world, name, rules);
  return take_shard(Tensor::arange(0.0, static_cast<double>(rows), 1.0, DType::F64), plan, rank)
      .to_vector();
}

TEST(SplitPlan, EachRankTakesItsSliceOfEverySubParameterInOrder) {
  // (3, -1) on 12 rows over 2: rank 0 rows 0-1, 4-5, 8-9.
  EXPECT_EQ(rows_taken(12, "(3, -1)", 2, 0), (std::vector<double>{0, 1, 4, 5, 8, 9}));
  EXPECT_EQ(rows_taken(12, "(3, -1)", 2, 1), (std::vector<double>{2, 3, 6, 7, 10, 11}));
  // ((8, 4, 4), -1) on 16 rows over 2: rank 0 rows 0-3, 8-9, 12-13.
  EXPECT_EQ(rows_taken(16, "((8, 4, 4), -1)", 2, 0),
            (std::vector<double>{0, 1, 2, 3, 8, 9, 12, 13}));
  EXPECT_EQ(rows_taken(16, "((8, 4, 4), -1)", 2, 1),
            (std::vector<double>{4, 5, 6, 7, 10, 11, 14, 15}));
  // Gate|up pack of 10 rows over 2 (halves of 5: widths 3, 2): gate rows 0-2 and up rows 5-7.
  EXPECT_EQ(rows_taken(10, "(2, -1)", 2, 0, "mlp"), (std::vector<double>{0, 1, 2, 5, 6, 7}));
}

TEST(SplitPlan, KvHeadRuleAppliesToEachSubParameter) {
  const SubParamLayout layout = infer_subparam_layout(
      {36, 4}, parse_fused_shape("((12, 12, 12), -1)"), 0, "self_attn.qkv_proj");
  const SplitPlan plan = make_split_plan(layout, 2, "self_attn.qkv_proj", {.num_kv_heads = 3});
  EXPECT_EQ(plan.widths, (std::vector<Sizes>{{8, 4}, {8, 4}, {8, 4}}));
  EXPECT_EQ(plan.rank_sizes(), (Sizes{24, 12}));
  EXPECT_FALSE(plan.is_even());
  EXPECT_EQ(plan.local_view(1), (Shape{12, 4}));
  EXPECT_EQ(output_split_plan(plan).view, (Shape{36}));
}

TEST(SplitPlan, StackedExpertsSplitEachExpertsOutputs) {
  // 2 experts x 4 outputs, 1 input, over 2 ranks: rank 1 takes outputs 2-3 of each expert.
  const SubParamLayout layout =
      infer_subparam_layout({8, 1}, parse_fused_shape("(2, -1, 1)"), 1, "experts");
  const SplitPlan plan = make_split_plan(layout, 2, "experts", {});
  EXPECT_EQ(take_shard(Tensor::arange(0.0, 8.0, 1.0, DType::F64), plan, 1).to_vector(),
            (std::vector<double>{2, 3, 6, 7}));
}

TEST(ZeroWidthShards, LinearWithNoInputOrOutputFeaturesGivesZerosAndEmptyGradients) {
  // What a rank beyond the KV heads computes: no output features (column) or no input
  // features (row, whose partial sum is then zero).
  const Tensor x = Tensor::ones({2, 3, 4}, DType::F64).set_requires_grad();
  const Tensor w_col = Tensor::ones({0, 4}, DType::F64).set_requires_grad();
  const Tensor y_col = ops::linear(x, w_col);
  EXPECT_EQ(y_col.shape(), (Shape{2, 3, 0}));
  ops::sum(y_col).backward();
  EXPECT_EQ(x.grad().to_vector(), std::vector<double>(24, 0.0));
  EXPECT_EQ(w_col.grad().shape(), (Shape{0, 4}));

  const Tensor x_row = Tensor::ones({2, 3, 0}, DType::F64).set_requires_grad();
  const Tensor w_row = Tensor::ones({5, 0}, DType::F64).set_requires_grad();
  const Tensor b = Tensor::full({5}, 2.0, DType::F64).set_requires_grad();
  const Tensor y_row = ops::linear(x_row, w_row, b);
  EXPECT_EQ(y_row.to_vector(), std::vector<double>(30, 2.0));
  ops::sum(y_row).backward();
  EXPECT_EQ(x_row.grad().shape(), (Shape{2, 3, 0}));
  EXPECT_EQ(b.grad().to_vector(), std::vector<double>(5, 6.0));
}

}  // namespace
}  // namespace autotp
