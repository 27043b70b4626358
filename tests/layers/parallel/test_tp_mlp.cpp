// Column-then-row MLPs at TP = the world size (2, 3, 4) against the unsharded model: outputs,
// input gradients and gathered weight and bias gradients, bit for bit on small-integer data;
// with overlap, biases, gather_output, uneven widths, fused weights and a tolerance case.
#include <gtest/gtest.h>

#include <functional>

#include "layers/parallel/column_parallel_linear.h"
#include "layers/parallel/row_parallel_linear.h"
#include "tests/layers/parallel/tp_test_helpers.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::gathered_grad;
using testing::int_linear;
using testing::int_tensor;
using testing::Mlp;
using testing::test_world;

struct MlpCase {
  int64_t in = 5, hidden = 12, out = 7;
  bool bias = true;
  bool overlap = false;
  bool allow_uneven = false;
};

TPLayerOptions layer_options(const std::string& name, const MlpCase& c) {
  TPLayerOptions o;
  o.name = name;
  o.allow_uneven = c.allow_uneven;
  return o;
}

// Builds the MLP twice from the same integers; shards one with the replacement pass's
// primitive (replace_module); compares output, input gradient and every parameter gradient.
void check_mlp(const MlpCase& c) {
  auto tp = test_world();
  Mlp ref(c.in, c.hidden, c.out, c.bias), model(c.in, c.hidden, c.out, c.bias);
  TPLayerOptions up_opts = layer_options("model.layers.0.mlp.up_proj", c);
  up_opts.overlap_comm = c.overlap;
  model.replace_module("up_proj", std::make_shared<ColumnParallelLinear>(
                                      model.child_as<Linear>("up_proj"), tp, up_opts));
  model.replace_module("down_proj", std::make_shared<RowParallelLinear>(
                                        model.child_as<Linear>("down_proj"), tp,
                                        layer_options("model.layers.0.mlp.down_proj", c)));

  const Tensor x_ref = int_tensor({2, 3, c.in}, 7).set_requires_grad();
  const Tensor x = int_tensor({2, 3, c.in}, 7).set_requires_grad();
  const Tensor upstream = int_tensor({2, 3, c.out}, 8);
  const Tensor y_ref = ref.forward(x_ref);
  const Tensor y = model.forward(x);
  EXPECT_IDENTICAL(y, y_ref);
  ops::sum(ops::mul(y_ref, upstream)).backward();
  ops::sum(ops::mul(y, upstream)).backward();
  EXPECT_IDENTICAL(x.grad(), x_ref.grad());

  auto& up = model.child_as<ColumnParallelLinear>("up_proj");
  auto& down = model.child_as<RowParallelLinear>("down_proj");
  const auto& up_ref = ref.child_as<Linear>("up_proj");
  const auto& down_ref = ref.child_as<Linear>("down_proj");
  EXPECT_IDENTICAL(gathered_grad(up, "weight"), up_ref.weight().grad());
  EXPECT_IDENTICAL(gathered_grad(down, "weight"), down_ref.weight().grad());
  if (c.bias) {
    EXPECT_IDENTICAL(gathered_grad(up, "bias"), up_ref.bias().grad());
    EXPECT_IDENTICAL(down.bias().grad(), down_ref.bias().grad());  // replicated, complete
  }
  EXPECT_IDENTICAL(model.parameter("scale").grad(), ref.parameter("scale").grad());
}

TEST(TpMlp, ColumnThenRowEqualsTheUnshardedMlp) {
  check_mlp({});
}

TEST(TpMlp, WithoutBiasesEqualsTheUnshardedMlp) {
  check_mlp({.bias = false});
}

TEST(TpMlp, WithOverlappedInputGradAllReduceEqualsTheUnshardedMlp) {
  check_mlp({.overlap = true});
  check_mlp({.bias = false, .overlap = true});
}

TEST(TpMlp, UnevenHiddenWidthTenEqualsTheUnshardedMlpWhenUnevenIsAllowed) {
  // 10 over 2, 3, 4: 5/5, 4/3/3, 3/3/2/2.
  check_mlp({.hidden = 10, .allow_uneven = true});
  check_mlp({.hidden = 10, .overlap = true, .allow_uneven = true});
}

TEST(TpMlp, TrainingModeRejectsAnUnevenSplitNamingTheLayerAndSizes) {
  auto tp = test_world();
  const int n = tp->size();
  const auto full = int_linear(5, 2 * n + 1, true, 1);  // 5, 7, 9 rows: never even
  TPLayerOptions o;
  o.name = "model.layers.0.mlp.up_proj";
  EXPECT_ERROR_CONTAINING(ColumnParallelLinear(*full, tp, o),
                          {"ColumnParallelLinear 'model.layers.0.mlp.up_proj'",
                           "out_features " + std::to_string(2 * n + 1),
                           "tensor-parallel size " + std::to_string(n), "-> 3, 2", "allow uneven"});
  const auto row_full = int_linear(2 * n + 1, 4, true, 1);
  EXPECT_ERROR_CONTAINING(RowParallelLinear(*row_full, tp, o),
                          {"RowParallelLinear", "in_features " + std::to_string(2 * n + 1)});
  // Inference mode always allows it, and its parameters need no gradient.
  o.training = false;
  ColumnParallelLinear col(*full, tp, o);
  EXPECT_FALSE(col.weight().requires_grad());
  EXPECT_EQ(col.out_features(), tp->rank() == 0 ? 3 : 2);
}

TEST(TpMlp, LayerCollectivesAreOneAllReduceEachWayAndRecorded) {
  auto tp = test_world();
  tp->enable_recording();
  for (bool overlap : {false, true}) {
    const auto up = int_linear(5, 4 * tp->size(), true, 1),
               down = int_linear(4 * tp->size(), 3, true, 2);
    TPLayerOptions o;
    o.overlap_comm = overlap;
    ColumnParallelLinear col(*up, tp, o);
    RowParallelLinear row(*down, tp);
    tp->recorder()->begin_step();
    const Tensor x = int_tensor({2, 5}, 1).set_requires_grad();
    ops::sum(row.forward(col.forward(x))).backward();
    // Row forward: all_reduce of y [2, 3]; column backward: all_reduce of grad_x [2, 5].
    const CollectiveCounts& step = tp->recorder()->current();
    EXPECT_EQ(step[CollectiveKind::AllReduce].calls, 2) << "overlap " << overlap;
    EXPECT_EQ(step[CollectiveKind::AllReduce].bytes, (2 * 3 + 2 * 5) * 4);
    EXPECT_EQ(step.total_calls(), 2);
  }
  tp->check_sequence();
}

// gather_output: the full output on every rank (an untied lm_head), uneven widths.
void check_gathered_column(int64_t out, bool training, bool overlap) {
  auto tp = test_world();
  const auto full_ref = int_linear(5, out, true, 4);
  const auto full = int_linear(5, out, true, 4);
  TPLayerOptions o;
  o.name = "lm_head";
  o.training = training;
  o.allow_uneven = true;
  o.gather_output = true;
  o.overlap_comm = overlap;
  ColumnParallelLinear col(*full, tp, o);
  const Tensor x_ref = int_tensor({3, 5}, 2).set_requires_grad(training);
  const Tensor x = int_tensor({3, 5}, 2).set_requires_grad(training);
  const Tensor y_ref = full_ref->forward(x_ref), y = col.forward(x);
  EXPECT_IDENTICAL(y, y_ref);
  if (!training) return;
  const Tensor upstream = int_tensor({3, out}, 9);
  ops::sum(ops::mul(y_ref, upstream)).backward();
  ops::sum(ops::mul(y, upstream)).backward();
  EXPECT_IDENTICAL(x.grad(), x_ref.grad());
  EXPECT_IDENTICAL(gathered_grad(col, "weight"), full_ref->weight().grad());
  EXPECT_IDENTICAL(gathered_grad(col, "bias"), full_ref->bias().grad());
}

TEST(TpMlp, GatherOutputOfAnUnevenColumnEqualsTheFullLinear) {
  check_gathered_column(129, /*training=*/false, false);  // 129 over 4: 33, 32, 32, 32
  check_gathered_column(129, /*training=*/true, false);
  check_gathered_column(10, /*training=*/true, /*overlap=*/true);
  auto tp = test_world();
  TPLayerOptions o;
  o.allow_uneven = true;
  ColumnParallelLinear col(*int_linear(5, 129, false, 1), tp, o);
  const std::vector<int64_t> sizes = col.output_partition_sizes();
  EXPECT_EQ(sizes, shard_sizes(129, tp->size(), "", {}));
  if (tp->size() == 4) {
    EXPECT_EQ(sizes, (std::vector<int64_t>{33, 32, 32, 32}));
  }
}

TEST(TpMlp, RandomF64DataAgreesWithinTheF64Tolerance) {
  auto tp = test_world();
  Mlp ref(5, 6 * tp->size(), 7, true, DType::F64), model(5, 6 * tp->size(), 7, true, DType::F64);
  for (auto* m : {&ref, &model}) {
    Generator g(5);
    for (const auto& [name, p] : m->named_parameters())
      fill_uniform(p, g, -1.0, 1.0);
  }
  model.replace_module(
      "up_proj", std::make_shared<ColumnParallelLinear>(model.child_as<Linear>("up_proj"), tp));
  model.replace_module(
      "down_proj", std::make_shared<RowParallelLinear>(model.child_as<Linear>("down_proj"), tp));
  const Tensor x_ref = testing::random_f64({4, 5}, 11), x = testing::random_f64({4, 5}, 11);
  const Tensor y_ref = ref.forward(x_ref), y = model.forward(x);
  // The row all-reduce sums the partial products in another order: a tolerance, not equality.
  EXPECT_ALL_CLOSE(y, y_ref, testing::tolerance_for(DType::F64));
  ops::sum(ops::mul(y_ref, y_ref)).backward();
  ops::sum(ops::mul(y, y)).backward();
  EXPECT_ALL_CLOSE(x.grad(), x_ref.grad(), testing::tolerance_for(DType::F64));
  EXPECT_ALL_CLOSE(gathered_grad(model.child_as<ColumnParallelLinear>("up_proj"), "weight"),
                   ref.child_as<Linear>("up_proj").weight().grad(),
                   testing::tolerance_for(DType::F64));
}

// ---- fused weights ---------------------------------------------------------------------

TPLayerOptions fused(const std::string& name, const char* shape, ShardRules rules = {},
                     bool allow_uneven = false) {
  TPLayerOptions o;
  o.name = name;
  o.rules = rules;
  o.allow_uneven = allow_uneven;
  if (shape != nullptr) o.shape = parse_fused_shape(shape);
  return o;
}

// A fused column layer, a combination of its sub-parameter outputs, then a row layer:
// the same on the full and the sharded layers. `combine(fused_out, local_sizes)` maps
// [..., sum(sizes)] to the row layer's input.
using Combine = std::function<Tensor(const Tensor&, const std::vector<int64_t>&)>;

void check_fused(int64_t fused_out, int64_t row_in, const TPLayerOptions& col_opts,
                 const TPLayerOptions& row_opts, const Combine& combine) {
  auto tp = test_world();
  const auto col_full_ref = int_linear(5, fused_out, true, 1);
  const auto row_full_ref = int_linear(row_in, 3, true, 2);
  const auto col_full = int_linear(5, fused_out, true, 1);
  const auto row_full = int_linear(row_in, 3, true, 2);
  ColumnParallelLinear col(*col_full, tp, col_opts);
  RowParallelLinear row(*row_full, tp, row_opts);
  const std::vector<int64_t> full_sizes = col.split_info("weight").sub_sizes();
  std::vector<int64_t> local_sizes;
  for (const auto& w : col.split_info("weight").plan.widths) {
    local_sizes.push_back(w[static_cast<size_t>(tp->rank())]);
  }
  const Tensor x_ref = int_tensor({2, 5}, 3).set_requires_grad();
  const Tensor x = int_tensor({2, 5}, 3).set_requires_grad();
  const Tensor y_ref = row_full_ref->forward(combine(col_full_ref->forward(x_ref), full_sizes));
  const Tensor y = row.forward(combine(col.forward(x), local_sizes));
  EXPECT_IDENTICAL(y, y_ref);
  const Tensor upstream = int_tensor({2, 3}, 4);
  ops::sum(ops::mul(y_ref, upstream)).backward();
  ops::sum(ops::mul(y, upstream)).backward();
  EXPECT_IDENTICAL(x.grad(), x_ref.grad());
  EXPECT_IDENTICAL(gathered_grad(col, "weight"), col_full_ref->weight().grad());
  EXPECT_IDENTICAL(gathered_grad(col, "bias"), col_full_ref->bias().grad());
  EXPECT_IDENTICAL(gathered_grad(row, "weight"), row_full_ref->weight().grad());
}

TEST(TpMlp, FusedGateUpTwoPartsEqualsTheUnshardedMlp) {
  const int64_t h = 12;
  check_fused(2 * h, h, fused("model.layers.0.mlp.gate_up_proj", "(2, -1)"),
              fused("model.layers.0.mlp.down_proj", nullptr),
              [](const Tensor& gu, const std::vector<int64_t>& s) {  // [..., gate | up]
                return ops::mul(ops::relu(gu.narrow(-1, 0, s[0])), gu.narrow(-1, s[0], s[1]));
              });
}

TEST(TpMlp, FusedQkvThreeEqualPartsEqualsTheUnshardedModel) {
  const int64_t d = 12;
  check_fused(3 * d, d, fused("model.layers.0.self_attn.qkv_proj", "(3, -1)"),
              fused("model.layers.0.self_attn.o_proj", nullptr),
              [](const Tensor& qkv, const std::vector<int64_t>& s) {  // q * k + v
                const Tensor q = qkv.narrow(-1, 0, s[0]), k = qkv.narrow(-1, s[0], s[1]),
                             v = qkv.narrow(-1, s[0] + s[1], s[2]);
                return ops::add(ops::mul(q, k), v);
              });
}

TEST(TpMlp, FusedGqaQkvWithUnequalPartsEqualsTheUnshardedModel) {
  // 4 KV heads of dim 1, 2 query heads per KV head: q 8, k 4, v 4. Over 3 ranks the KV-head
  // rule gives 2/1/1 groups (uneven), so uneven sharding is allowed.
  const ShardRules kv{.num_kv_heads = 4};
  check_fused(16, 8, fused("model.layers.0.self_attn.qkv_proj", "((8, 4, 4), -1)", kv, true),
              fused("model.layers.0.self_attn.o_proj", nullptr, kv, true),
              [](const Tensor& qkv, const std::vector<int64_t>& s) {
                // Per KV group g: out[g, i] = q[g, i] * k[g] + v[g], i over its 2 query heads.
                const int64_t groups = s[1];
                Shape lead(qkv.shape().begin(), qkv.shape().end() - 1);
                Shape grouped = lead, single = lead, flat = lead;
                grouped.insert(grouped.end(), {groups, 2});
                single.insert(single.end(), {groups, 1});
                flat.push_back(2 * groups);
                const Tensor q = qkv.narrow(-1, 0, s[0]).reshape(grouped);
                const Tensor k = qkv.narrow(-1, s[0], s[1]).reshape(single);
                const Tensor v = qkv.narrow(-1, s[0] + s[1], s[2]).reshape(single);
                return ops::add(ops::mul(q, k), v).reshape(flat);
              });
}

TEST(TpMlp, RanksBeyondTheKvHeadsGetZeroWidthShardsAndResultsStayExact) {
  // 2 KV heads of dim 2 over 3 or 4 ranks: shards 2/2/0(/0); the idle ranks add zeros.
  const ShardRules kv{.num_kv_heads = 2};
  auto tp = test_world();
  const TPLayerOptions q = fused("model.layers.0.self_attn.q_proj", nullptr, kv, true);
  ColumnParallelLinear probe(*int_linear(5, 4, true, 1), tp, q);
  EXPECT_EQ(probe.out_features(), tp->rank() < 2 ? 2 : 0);
  for (bool overlap : {false, true}) {
    TPLayerOptions qo = q;
    qo.overlap_comm = overlap;
    check_fused(4, 4, qo, fused("model.layers.0.self_attn.o_proj", nullptr, kv, true),
                [](const Tensor& y, const std::vector<int64_t>&) { return ops::relu(y); });
  }
}

TEST(TpMlp, FusedColumnWithGatherOutputRestoresTheFullSubParameterOrder) {
  auto tp = test_world();
  const auto full = int_linear(5, 3 * 4, true, 6);
  TPLayerOptions o = fused("qkv", "(3, -1)");
  o.gather_output = true;
  o.allow_uneven = true;
  ColumnParallelLinear col(*full, tp, o);
  const Tensor x = int_tensor({2, 5}, 1);
  EXPECT_IDENTICAL(col.forward(x), full->forward(x));
}

}  // namespace
}  // namespace autotp
