// DP gradient reduction overlapped with backward (GradientReducer::arm, zero_optimization.
// overlap_comm): buckets launch from the gradient hooks during backward, in the same order on
// every rank, and the results (reducer, ZeroAdamW, whole trainer) are bitwise the same.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/comm/mpi_communicator.h"
#include "core/comm/parallel_grid.h"
#include "core/error.h"
#include "core/ops.h"
#include "engine/config.h"
#include "engine/trainer.h"
#include "engine/zero_partition.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/engine_mpi/trainer_mpi_helpers.h"

namespace autotp {
namespace {

using trainer_mpi_test::world;

const std::string kTrajectoryDir = std::string(AUTOTP_TEST_DATA_DIR) + "/trajectory";

// ---- the reducer on hand-made parameters ------------------------------------------------

// Seven f64 parameters; with 4096-byte buckets (512 elements) they form three buckets:
// {p0..p3} (562 elements), {p4} (600), {p5, p6} (97, the last).
const std::vector<int64_t> kSizes = {5, 300, 7, 250, 600, 33, 64};
constexpr int64_t kBucketBytes = 4096;
constexpr int64_t kBuckets = 3;

NamedTensors make_params() {
  NamedTensors params;
  for (size_t i = 0; i < kSizes.size(); ++i) {
    Tensor p = Tensor::zeros({kSizes[i]}, DType::F64);
    p.set_requires_grad();
    params.emplace_back(fmt::format("p{}", i), p);
  }
  return params;
}

// This rank's gradient of parameter i, element j: small integers (exact sums in any order),
// or, with `irrational`, values whose sums round.
double grad_value(size_t i, int64_t j, bool irrational) {
  const double rank = world()->rank();
  if (irrational) return std::sin(1.0 + 7.0 * rank + 13.0 * static_cast<double>(i) + 0.37 * j);
  return (rank + 1.0) * static_cast<double>(j % 7 + static_cast<int64_t>(i) + 1);
}

// loss = (((s0 + s1) + s2) + ... ) + s6 with s_i = sum(p_i * c_i): backward reaches p6 first
// and p0 last, so the last bucket's gradients are final first. Parameters in `skip` take no
// part (they get no gradient).
Tensor loss_of(const NamedTensors& params, bool irrational, const std::vector<size_t>& skip = {}) {
  Tensor loss;
  for (size_t i = 0; i < params.size(); ++i) {
    if (std::find(skip.begin(), skip.end(), i) != skip.end()) continue;
    std::vector<double> c;
    for (int64_t j = 0; j < kSizes[i]; ++j)
      c.push_back(grad_value(i, j, irrational));
    const Tensor term =
        ops::sum(ops::mul(params[i].second, Tensor::from_vector(c, {kSizes[i]}, DType::F64)));
    loss = loss.defined() ? ops::add(loss, term) : term;
  }
  return loss;
}

std::vector<std::vector<double>> grads_of(const NamedTensors& params) {
  std::vector<std::vector<double>> out;
  for (const auto& [name, p] : params)
    out.push_back(p.grad().defined() ? p.grad().to_vector() : std::vector<double>{});
  return out;
}

TEST(OverlappedReduction, BucketsLaunchFromTheHooksWhileBackwardStillRuns) {
  const NamedTensors params = make_params();
  GradientReducer reducer(params, world(), kBucketBytes);
  ASSERT_EQ(reducer.num_buckets(), kBuckets);
  // A probe after the reducer's hook on every parameter: how many buckets had launched when
  // that parameter's gradient became final.
  std::vector<std::pair<size_t, int64_t>> seen;  // (parameter, buckets launched)
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].second.register_post_accumulate_grad_hook(
        [&, i](const Tensor&) { seen.emplace_back(i, reducer.buckets_launched_from_hooks()); });
  }
  reducer.arm(ReduceCollective::AllReduce);
  EXPECT_TRUE(reducer.armed());
  loss_of(params, /*irrational=*/false).backward();
  ASSERT_EQ(seen.size(), params.size());
  // p6 is final first: the last bucket {p5, p6} waits for p5; p4 completes {p4}; p0 is last.
  EXPECT_EQ(seen.front(), (std::pair<size_t, int64_t>{6, 0}));
  EXPECT_EQ(seen[1], (std::pair<size_t, int64_t>{5, 1}));  // launched with five leaves to go
  EXPECT_EQ(seen[2], (std::pair<size_t, int64_t>{4, 2}));
  EXPECT_EQ(seen.back(), (std::pair<size_t, int64_t>{0, kBuckets}));
  EXPECT_EQ(reducer.buckets_launched_from_hooks(), kBuckets);  // every parameter had a gradient
  reducer.all_reduce_mean();
  EXPECT_FALSE(reducer.armed());
  EXPECT_EQ(reducer.buckets_launched_from_hooks(), kBuckets);  // kept until the next arm()
  // The sum of (r + 1) * (j % 7 + i + 1) over r < dp is an exact integer, which the reducer
  // scales by 1 / dp.
  const double dp = world()->size();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::vector<double> g = params[i].second.grad().to_vector();
    for (int64_t j = 0; j < kSizes[i]; ++j) {
      ASSERT_EQ(g[static_cast<size_t>(j)],
                dp * (dp + 1.0) / 2.0 * static_cast<double>(j % 7 + static_cast<int64_t>(i) + 1) *
                    (1.0 / dp))
          << params[i].first << "[" << j << "]";
    }
  }
}

TEST(OverlappedReduction, AllReduceIsBitwiseTheSameWithAndWithoutOverlap) {
  // Two micro-batches each time: the first only accumulates, the second runs armed or not.
  const NamedTensors params = make_params();
  GradientReducer reducer(params, world(), kBucketBytes);
  loss_of(params, /*irrational=*/true).backward();
  loss_of(params, /*irrational=*/true).backward();
  reducer.all_reduce_mean();
  EXPECT_EQ(reducer.buckets_launched_from_hooks(), 0);
  const std::vector<std::vector<double>> plain = grads_of(params);
  for (const auto& [name, p] : params)
    p.zero_grad();
  loss_of(params, /*irrational=*/true).backward();
  reducer.arm(ReduceCollective::AllReduce);
  loss_of(params, /*irrational=*/true).backward();
  EXPECT_EQ(reducer.buckets_launched_from_hooks(), kBuckets);
  reducer.all_reduce_mean();
  const std::vector<std::vector<double>> overlapped = grads_of(params);
  for (size_t i = 0; i < params.size(); ++i) {
    ASSERT_EQ(overlapped[i].size(), plain[i].size());
    for (size_t j = 0; j < plain[i].size(); ++j) {
      ASSERT_EQ(overlapped[i][j], plain[i][j]) << params[i].first << "[" << j << "]";
    }
  }
  EXPECT_NE(plain[0][0], 0.0);
}

TEST(OverlappedReduction, ReduceScatterIsBitwiseTheSameWithAndWithoutOverlap) {
  const NamedTensors params = make_params();
  GradientReducer reducer(params, world(), kBucketBytes);
  const FlatParamLayout& l = reducer.layout();
  const int64_t mine = l.partition_sizes[static_cast<size_t>(world()->rank())];
  const Tensor plain = Tensor::zeros({mine}, DType::F64);
  const Tensor overlapped = Tensor::zeros({mine}, DType::F64);
  loss_of(params, /*irrational=*/true).backward();
  reducer.reduce_scatter_mean(plain);
  for (const auto& [name, p] : params)
    EXPECT_FALSE(p.grad().defined()) << name << ": ZeRO 2 drops the full gradients";
  reducer.arm(ReduceCollective::ReduceScatter);
  loss_of(params, /*irrational=*/true).backward();
  EXPECT_EQ(reducer.buckets_launched_from_hooks(), kBuckets);
  for (const auto& [name, p] : params)
    EXPECT_FALSE(p.grad().defined()) << name << ": dropped once its bucket was in flight";
  reducer.reduce_scatter_mean(overlapped);
  ASSERT_GT(mine, 0);
  EXPECT_EQ(std::memcmp(plain.raw_data(), overlapped.raw_data(),
                        static_cast<size_t>(mine) * sizeof(double)),
            0);
  EXPECT_NE(plain.to_vector()[0], 0.0);
}

TEST(OverlappedReduction, RanksThatDifferInWhichParametersGotGradientsStillAgree) {
  // Rank 0 leaves p5 out: its last bucket never completes during backward, so no bucket may
  // launch from its hooks (the others would otherwise be started out of order there), while
  // the other ranks launch every bucket during backward. The collectives still match.
  const NamedTensors params = make_params();
  GradientReducer reducer(params, world(), kBucketBytes);
  const bool skipper = world()->rank() == 0;
  reducer.arm(ReduceCollective::AllReduce);
  loss_of(params, /*irrational=*/false, skipper ? std::vector<size_t>{5} : std::vector<size_t>{})
      .backward();
  EXPECT_EQ(reducer.buckets_launched_from_hooks(), skipper ? 0 : kBuckets);
  reducer.all_reduce_mean();
  const double dp = world()->size();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::vector<double> g = params[i].second.grad().to_vector();
    // The sum of (r + 1) over the ranks that used p_i (all, or all but rank 0 for p5), times
    // 1 / dp as the reducer scales it.
    const double ranks_sum = dp * (dp + 1.0) / 2.0 - (i == 5 ? 1.0 : 0.0);
    for (int64_t j = 0; j < kSizes[i]; ++j) {
      ASSERT_EQ(g[static_cast<size_t>(j)],
                ranks_sum * static_cast<double>(j % 7 + static_cast<int64_t>(i) + 1) * (1.0 / dp))
          << params[i].first << "[" << j << "]";
    }
  }
}

TEST(OverlappedReduction, MisuseIsReportedAndTheHooksGoWithTheReducer) {
  const NamedTensors params = make_params();
  {
    GradientReducer reducer(params, world(), kBucketBytes);
    for (const auto& [name, p] : params)
      EXPECT_EQ(p.autograd_meta()->post_accumulate_grad_hooks.size(), 1u) << name;
    reducer.arm(ReduceCollective::AllReduce);
    EXPECT_ERROR_CONTAINS(reducer.arm(ReduceCollective::AllReduce), "arm() twice");
    const Tensor partition = Tensor::zeros(
        {reducer.layout().partition_sizes[static_cast<size_t>(world()->rank())]}, DType::F64);
    EXPECT_ERROR_CONTAINS(reducer.reduce_scatter_mean(partition),
                          "armed for all_reduce_mean, but reduce_scatter_mean was called");
    loss_of(params, /*irrational=*/false).backward();
    // A second backward after the buckets launched would change sent gradients.
    EXPECT_ERROR_CONTAINS(loss_of(params, /*irrational=*/false).backward(),
                          "'p6' received a second gradient after arm()");
    reducer.all_reduce_mean();
  }
  for (const auto& [name, p] : params)
    EXPECT_TRUE(p.autograd_meta()->post_accumulate_grad_hooks.empty()) << name;
  loss_of(params, /*irrational=*/false).backward();  // no hook left to call
}

// ---- the trainer --------------------------------------------------------------------------

std::shared_ptr<ParallelGrid> grid() {
  static std::shared_ptr<ParallelGrid> g = std::make_shared<ParallelGrid>(world(), 1);
  return g;
}

// The reference trajectory config (micro-batch 2, accumulation 2, clipping, weight decay),
// data-parallel over every rank at `zero`, overlap on or off.
Config overlap_config(int zero, bool overlap) {
  ConfigLoadOptions options;
  options.overrides = {"model.path=" + kTrajectoryDir,
                       "data.path=" + kTrajectoryDir + "/tokens.bin", "train.out_dir=unused",
                       fmt::format("zero_optimization.stage={}", zero),
                       fmt::format("zero_optimization.overlap_comm={}", overlap)};
  options.world_size = world()->size();
  return load_config_file(kTrajectoryDir + "/train.yaml", options);
}

TrainerOptions overlap_options() {
  TrainerOptions o;
  o.out = nullptr;
  o.dtype = DType::F32;
  o.export_hf = false;
  o.grid = grid();
  o.reduce_bucket_bytes = 4096;  // several buckets, some parameters alone in theirs
  return o;
}

int64_t launched_from_hooks(Trainer& t) {
  if (t.zero() != nullptr) return t.zero()->buckets_launched_from_hooks();
  return t.reducer() != nullptr ? t.reducer()->buckets_launched_from_hooks() : -1;
}

int64_t num_buckets(Trainer& t) {
  if (t.zero() != nullptr) return t.zero()->num_buckets();
  return t.reducer() != nullptr ? t.reducer()->num_buckets() : -1;
}

class OverlappedTrainer : public ::testing::TestWithParam<int> {};

TEST_P(OverlappedTrainer, IsBitwiseTheSameAsTheTrainerWithoutOverlap) {
  const int zero = GetParam();
  const Config on = overlap_config(zero, true);
  ASSERT_EQ(on.batch.gradient_accumulation_steps, 2);
  Trainer overlapped(on, overlap_options());
  Trainer plain(overlap_config(zero, false), overlap_options());
  ASSERT_GT(num_buckets(overlapped), 2);
  for (int step = 1; step <= 3; ++step) {
    const StepRecord a = overlapped.step(), b = plain.step();
    EXPECT_EQ(a.loss, b.loss) << "step " << step;
    EXPECT_EQ(a.grad_norm, b.grad_norm) << "step " << step;
    EXPECT_TRUE(std::isfinite(a.grad_norm) && a.grad_norm > 0.0) << "step " << step;
    // Every parameter of the model gets a gradient: every bucket launched during backward.
    EXPECT_EQ(launched_from_hooks(overlapped), num_buckets(overlapped)) << "step " << step;
    EXPECT_EQ(launched_from_hooks(plain), 0) << "step " << step;
  }
  const NamedTensors wa = overlapped.model().named_parameters();
  const NamedTensors wb = plain.model().named_parameters();
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t i = 0; i < wa.size(); ++i) {
    ASSERT_EQ(wa[i].second.numel(), wb[i].second.numel());
    EXPECT_EQ(std::memcmp(wa[i].second.raw_data(), wb[i].second.raw_data(),
                          static_cast<size_t>(wa[i].second.numel()) * wa[i].second.itemsize()),
              0)
        << wa[i].first << " differs after 3 steps";
  }
  EXPECT_LT(overlapped.history().back().loss, overlapped.history().front().loss);  // it trains
}

INSTANTIATE_TEST_SUITE_P(ZeroStages, OverlappedTrainer, ::testing::Values(0, 1, 2),
                         [](const auto& info) { return fmt::format("zero{}", info.param); });

TEST(OverlappedTrainerConfig, TheBucketSizeKeyAppliesWhenTheOptionsLeaveItOpen) {
  ConfigLoadOptions options;
  options.overrides = {"model.path=" + kTrajectoryDir,
                       "data.path=" + kTrajectoryDir + "/tokens.bin", "train.out_dir=unused",
                       "zero_optimization.reduce_bucket_size=1024"};
  options.world_size = world()->size();
  const Config c = load_config_file(kTrajectoryDir + "/train.yaml", options);
  TrainerOptions by_config = overlap_options();
  by_config.reduce_bucket_bytes.reset();  // 1024 f32 elements = 4096 bytes
  Trainer a(c, by_config);
  Trainer b(c, overlap_options());  // 4096 bytes, explicitly
  TrainerOptions big = overlap_options();
  big.reduce_bucket_bytes = 1 << 30;
  Trainer one(c, big);
  EXPECT_EQ(num_buckets(a), num_buckets(b));
  EXPECT_GT(num_buckets(a), 2);
  EXPECT_EQ(num_buckets(one), 1);  // the explicit option wins over the config
}

}  // namespace
}  // namespace autotp
