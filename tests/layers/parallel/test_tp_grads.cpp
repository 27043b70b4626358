// Gradients of tensor-parallel models under mpirun: the global gradient norm equals the
// unsharded norm (sharded parameters on every rank, replicated ones once; DP summed), and
// grad_allreduce completes the partial gradients of replicated per-head parameters.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/comm/parallel_grid.h"
#include "layers/parallel/column_parallel_linear.h"
#include "layers/parallel/grad_norm.h"
#include "layers/parallel/row_parallel_linear.h"
#include "tests/layers/parallel/tp_test_helpers.h"

namespace autotp {
namespace {

using testing::int_linear;
using testing::int_tensor;
using testing::Mlp;
using testing::test_world;

// Sharded and reference MLPs after one backward on the same data; returns the sharded one.
std::unique_ptr<Mlp> sharded_mlp_after_backward(const std::shared_ptr<Communicator>& tp, Mlp& ref) {
  auto model = std::make_unique<Mlp>(5, 4 * tp->size(), 3, true);
  model->replace_module(
      "up_proj", std::make_shared<ColumnParallelLinear>(model->child_as<Linear>("up_proj"), tp));
  model->replace_module(
      "down_proj", std::make_shared<RowParallelLinear>(model->child_as<Linear>("down_proj"), tp));
  const Tensor x = int_tensor({3, 5}, 2);
  ops::sum(ops::mul(ref.forward(x), int_tensor({3, 3}, 5))).backward();
  ops::sum(ops::mul(model->forward(x), int_tensor({3, 3}, 5))).backward();
  return model;
}

double reference_norm(const Mlp& ref, bool inf) {
  double acc = 0.0;
  for (const Tensor& p : ref.parameters()) {
    for (double g : p.grad().to_vector())
      acc = inf ? std::max(acc, std::abs(g)) : acc + g * g;
  }
  return inf ? acc : std::sqrt(acc);
}

TEST(TpGrads, ParametersAreClassifiedBySplitMetadata) {
  auto tp = test_world();
  Mlp ref(5, 4 * tp->size(), 3, true);
  auto model = sharded_mlp_after_backward(tp, ref);
  const std::vector<GradNormParam> params = classify_parameters(*model);
  const auto named = model->named_parameters();
  ASSERT_EQ(params.size(), named.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const bool sharded = named[i].first != "scale" && named[i].first != "down_proj.bias";
    EXPECT_EQ(params[i].tensor_model_parallel, sharded) << named[i].first;
  }
}

TEST(TpGrads, GlobalGradNormEqualsTheUnshardedNorm) {
  auto tp = test_world();
  Mlp ref(5, 4 * tp->size(), 3, true);
  auto model = sharded_mlp_after_backward(tp, ref);
  const std::vector<GradNormParam> params = classify_parameters(*model);
  const double expected = reference_norm(ref, false);
  ASSERT_GT(expected, 0.0);
  // Integer gradients: both sums of squares are exact, so the roots agree to the last bit.
  EXPECT_EQ(global_grad_norm(params, *tp, nullptr), expected);
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(global_grad_norm(params, *tp, nullptr, inf), reference_norm(ref, true));
  // Counting replicated parameters on every rank would overcount (the rule matters).
  std::vector<GradNormParam> all_sharded = params;
  for (auto& p : all_sharded)
    p.tensor_model_parallel = true;
  EXPECT_GT(global_grad_norm(all_sharded, *tp, nullptr), expected);
}

TEST(TpGrads, GlobalGradNormSumsOverDataParallelRanksToo) {
  auto world = test_world();
  if (world->size() % 2 != 0)
    GTEST_SKIP() << "needs an even world for tp x dp = 2 x " << world->size() / 2;
  ParallelGrid grid(world, 2);
  Mlp ref(5, 8, 3, true);
  auto model = sharded_mlp_after_backward(grid.tp(), ref);
  // Each DP rank holds the full (identical) gradients here, so the DP sum scales the sum of
  // squares by the DP size; with ZeRO each would hold its own partition.
  const double norm = global_grad_norm(classify_parameters(*model), *grid.tp(), grid.dp().get());
  EXPECT_DOUBLE_EQ(norm, reference_norm(ref, false) * std::sqrt(grid.data_parallel_world_size()));
}

// Per-head scale `norm` [2] (replicated) on heads of a column layer's output: each rank sees
// only its heads, so its gradient of `norm` is partial until grad_allreduce sums it.
class HeadScaled : public UnaryModule {
 public:
  explicit HeadScaled(int64_t heads) {
    register_module("q_proj", int_linear(3, 2 * heads, false, 1));
    register_parameter("q_norm", Tensor::from_vector({1, -2}, {2}));
    register_module("o_proj", int_linear(2 * heads, 3, false, 2));
  }
  std::string type_name() const override { return "HeadScaled"; }
  Tensor forward(const Tensor& x) override {                      // x [rows, 3]
    const Tensor q = child_as<UnaryModule>("q_proj").forward(x);  // [rows, 2 * local heads]
    const Tensor scaled = ops::mul(q.reshape({q.size(0), q.size(1) / 2, 2}), parameter("q_norm"));
    return child_as<UnaryModule>("o_proj").forward(scaled.reshape(q.shape()));
  }
};

TEST(TpGrads, GradAllreduceCompletesThePartialGradientOfAReplicatedPerHeadWeight) {
  auto tp = test_world();
  const int64_t heads = 2 * tp->size();
  HeadScaled ref(heads), model(heads);
  model.replace_module(
      "q_proj", std::make_shared<ColumnParallelLinear>(model.child_as<Linear>("q_proj"), tp));
  model.replace_module("o_proj",
                       std::make_shared<RowParallelLinear>(model.child_as<Linear>("o_proj"), tp));
  const Tensor x = int_tensor({4, 3}, 1);
  ops::sum(ops::mul(ref.forward(x), int_tensor({4, 3}, 2))).backward();
  ops::sum(ops::mul(model.forward(x), int_tensor({4, 3}, 2))).backward();
  const Tensor expected = ref.parameter("q_norm").grad();
  // Before: only this rank's heads contributed (so the ranks would drift apart).
  const Tensor partial_sum = model.parameter("q_norm").grad().clone();
  tp->all_reduce(partial_sum);
  EXPECT_IDENTICAL(partial_sum, expected);
  EXPECT_NE(model.parameter("q_norm").grad().to_vector(), expected.to_vector());

  ReplicatedGradAllreduce grad_allreduce(tp);
  grad_allreduce.mark(model, "q_norm");
  EXPECT_TRUE(grad_allreduce.is_marked("q_norm"));
  EXPECT_ERROR_CONTAINING(grad_allreduce.mark(model, "k_norm"), {"no parameter named 'k_norm'"});
  grad_allreduce.all_reduce_grads();
  EXPECT_IDENTICAL(model.parameter("q_norm").grad(), expected);
}

}  // namespace
}  // namespace autotp
