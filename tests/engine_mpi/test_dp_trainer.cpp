// Data-parallel training under mpirun (every world size the suite runs with is the DP size,
// tp = 1): ZeRO 0/1/2 trajectories against the single-process run with the same global batch,
// identical weights on every rank, ZeRO-2 checkpoints resumed at the same and at dp = 1,
// interrupted saves, and the batch-size errors on the DP size.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/comm/mpi_communicator.h"
#include "core/comm/parallel_grid.h"
#include "core/error.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/distributed_checkpoint.h"
#include "engine/trainer.h"
#include "tests/engine_mpi/trainer_mpi_helpers.h"

namespace autotp {
namespace {

using trainer_mpi_test::expect_trajectories_close;
using trainer_mpi_test::SharedDir;
using trainer_mpi_test::train;
using trainer_mpi_test::world;

namespace fs = std::filesystem;

const std::string kTrajectoryDir = std::string(AUTOTP_TEST_DATA_DIR) + "/trajectory";

// The DP losses are means of the same per-sample losses as the single-process run's, summed in
// another order, and the gradients likewise: in f64 the trajectories agree to rounding, which
// 10 AdamW steps amplify to well under this relative tolerance.
constexpr double kF64Tolerance = 1e-9;

std::shared_ptr<ParallelGrid> grid() {
  static std::shared_ptr<ParallelGrid> g = std::make_shared<ParallelGrid>(world(), 1);
  return g;
}

int dp_size() {
  return world()->size();
}

// The reference trajectory config (micro-batch 2, accumulation 2, clipping 1.5, weight decay,
// warm-up) with `extra` overrides; `world_size` set: data-parallel over that many ranks.
Config config(const std::string& out_dir, std::vector<std::string> extra,
              std::optional<int64_t> world_size) {
  ConfigLoadOptions options;
  options.overrides = {"model.path=" + kTrajectoryDir,
                       "data.path=" + kTrajectoryDir + "/tokens.bin", "train.out_dir=" + out_dir};
  options.overrides.insert(options.overrides.end(), extra.begin(), extra.end());
  options.world_size = world_size;
  return load_config_file(kTrajectoryDir + "/train.yaml", options);
}

// Data-parallel over every rank at `zero` stage: global batch 2 x 2 x dp.
Config dp_config(const std::string& out_dir, int zero, std::vector<std::string> extra = {}) {
  extra.push_back(fmt::format("zero_optimization.stage={}", zero));
  return config(out_dir, extra, dp_size());
}

// One process with the same global batch: accumulation 2 x dp.
Config single_config(const std::string& out_dir, std::vector<std::string> extra = {}) {
  extra.push_back(fmt::format("gradient_accumulation_steps={}", 2 * dp_size()));
  return config(out_dir, extra, std::nullopt);
}

TrainerOptions options(bool parallel, DType dtype = DType::F64) {
  TrainerOptions o;
  o.out = nullptr;
  o.dtype = dtype;
  o.export_hf = false;
  if (parallel) o.grid = grid();
  o.reduce_bucket_bytes = 4096;  // several buckets, some parameters alone in theirs
  return o;
}

// FNV-1a over every parameter's bytes, in order.
uint64_t weights_hash(Trainer& t) {
  uint64_t h = 1469598103934665603ULL;
  for (const auto& [name, p] : t.model().named_parameters()) {
    const auto* bytes = static_cast<const uint8_t*>(p.raw_data());
    for (size_t i = 0; i < static_cast<size_t>(p.numel()) * p.itemsize(); ++i) {
      h = (h ^ bytes[i]) * 1099511628211ULL;
    }
  }
  return h;
}

// Every rank's hash equals rank 0's.
void expect_same_on_every_rank(uint64_t hash) {
  std::vector<uint8_t> mine(sizeof hash);
  std::memcpy(mine.data(), &hash, sizeof hash);
  const auto all = world()->exchange_bytes(mine);
  for (size_t r = 0; r < all.size(); ++r) {
    EXPECT_EQ(all[r], all[0]) << "rank " << r << "'s weights differ from rank 0's";
  }
}

double max_relative_weight_diff(Trainer& a, Trainer& b) {
  const NamedTensors pa = a.model().named_parameters(), pb = b.model().named_parameters();
  if (pa.size() != pb.size()) {
    ADD_FAILURE() << pa.size() << " parameters against " << pb.size();
    return std::numeric_limits<double>::infinity();
  }
  double worst = 0.0;
  for (size_t i = 0; i < pa.size(); ++i) {
    const std::vector<double> x = pa[i].second.to_vector(), y = pb[i].second.to_vector();
    if (pa[i].first != pb[i].first || x.size() != y.size()) {
      ADD_FAILURE() << pa[i].first << " (" << x.size() << " values) against " << pb[i].first << " ("
                    << y.size() << ")";
      return std::numeric_limits<double>::infinity();
    }
    for (size_t k = 0; k < x.size(); ++k) {
      worst = std::max(worst, std::abs(x[k] - y[k]) / std::max(1.0, std::abs(y[k])));
    }
  }
  return worst;
}

class DataParallelTrainer : public ::testing::TestWithParam<int> {};

TEST_P(DataParallelTrainer, MatchesOneProcessWithTheSameGlobalBatch) {
  const int zero = GetParam();
  Trainer reference(single_config("unused", {}), options(false));
  Trainer dp(dp_config("unused", zero), options(true));
  ASSERT_EQ(dp.data().layout().dp_size, dp_size());
  const std::vector<StepRecord> want = train(reference, 10), got = train(dp, 10);
  expect_trajectories_close(got, want, kF64Tolerance);
  EXPECT_LT(max_relative_weight_diff(dp, reference), kF64Tolerance);
  EXPECT_LT(got.back().loss, got.front().loss);  // it trains
  expect_same_on_every_rank(weights_hash(dp));
}

TEST_P(DataParallelTrainer, KeepsF32WeightsBitIdenticalOnEveryRank) {
  Trainer dp(dp_config("unused", GetParam()), options(true, DType::F32));
  train(dp, 5);
  expect_same_on_every_rank(weights_hash(dp));
}

INSTANTIATE_TEST_SUITE_P(ZeroStages, DataParallelTrainer, ::testing::Values(0, 1, 2),
                         [](const auto& info) { return fmt::format("zero{}", info.param); });

TEST(ZeroOptimizer, PartitionsStateAndGradientsOverTheRanks) {
  Trainer z1(dp_config("unused", 1), options(true));
  Trainer z2(dp_config("unused", 2), options(true));
  ASSERT_NE(z2.zero(), nullptr);
  const FlatParamLayout& l = z2.zero()->layout();
  EXPECT_EQ(l.partition_sizes[static_cast<size_t>(world()->rank())], z2.zero()->exp_avg().numel());
  // 1/dp of the moments (two f64 buffers), the stage-2 gradient too; stage 1 keeps full grads.
  const int64_t mine = l.partition_sizes[static_cast<size_t>(world()->rank())];
  EXPECT_LE(mine, l.total / dp_size() + 1);
  EXPECT_EQ(z2.zero()->optimizer_state_bytes(), 2 * mine * 8);
  EXPECT_EQ(z2.zero()->gradient_bytes(), mine * 8);
  EXPECT_EQ(z1.zero()->gradient_bytes(), l.total * 8);
  EXPECT_GT(z2.zero()->num_buckets(), 1);
}

// Runs 10 steps at dp ZeRO-2 saving at 5 and 10 under `dir`, returning the trainer.
std::unique_ptr<Trainer> run_with_checkpoints(const std::string& dir) {
  auto t =
      std::make_unique<Trainer>(dp_config(dir, 2, {"train.checkpoint_interval=5"}), options(true));
  t->run();
  return t;
}

TEST(DataParallelCheckpoint, Zero2ResumesExactlyAtTheSameDpAndReshardsToDpOneAndBack) {
  SharedDir dir("dp", "resume");
  std::unique_ptr<Trainer> full = run_with_checkpoints(dir.sub("full"));
  // Only the step-5 checkpoint in a fresh directory.
  if (world()->rank() == 0) {
    fs::create_directories(dir.sub("half/checkpoints"));
    fs::copy(dir.sub("full/checkpoints/step-00000005"), dir.sub("half/checkpoints/step-00000005"),
             fs::copy_options::recursive);
  }
  world()->barrier();
  TrainerOptions resume = options(true);
  resume.resume = true;
  Trainer same(dp_config(dir.sub("half"), 2), resume);
  ASSERT_EQ(same.current_step(), 5);
  const std::vector<StepRecord> got = train(same, 5);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].loss, full->history()[i + 5].loss) << "step " << i + 6;
  }
  EXPECT_EQ(weights_hash(same), weights_hash(*full));
  expect_same_on_every_rank(weights_hash(same));

  // Reshard: the ZeRO partitions gathered into one process's AdamW.
  TrainerOptions single = options(false);
  single.resume = true;
  single.resume_dir = dir.sub("half");
  Trainer one(single_config(dir.sub(fmt::format("one_{}", world()->rank()))), single);
  ASSERT_EQ(one.current_step(), 5);
  // That single-process state saved as a plain checkpoint, to re-split over the ranks below.
  const std::string single_dir = dir.sub("single");
  if (world()->rank() == 0) {
    TrainingState state;
    state.step = one.current_step();
    state.seed = one.config().train.seed;
    state.config_yaml = config_to_yaml(one.config());
    save_training_checkpoint(single_dir, one.model(), one.optimizer(), state);
  }
  world()->barrier();
  const std::vector<StepRecord> got1 = train(one, 5);
  expect_trajectories_close(
      got1, std::vector<StepRecord>(full->history().begin() + 5, full->history().end()),
      kF64Tolerance);
  EXPECT_LT(max_relative_weight_diff(one, *full), kF64Tolerance);
  // And back: the single-process state re-split over the ranks (ZeRO 1 this time) continues
  // the same run.
  TrainerOptions split = options(true);
  split.resume = true;
  split.resume_dir = single_dir;
  Trainer back(dp_config(single_dir, 1), split);
  ASSERT_EQ(back.current_step(), 5);
  expect_trajectories_close(
      train(back, 5), std::vector<StepRecord>(full->history().begin() + 5, full->history().end()),
      kF64Tolerance);
  EXPECT_LT(max_relative_weight_diff(back, *full), kF64Tolerance);
  expect_same_on_every_rank(weights_hash(back));
}

TEST(DataParallelCheckpoint, InterruptedSaveIsDetectedAndThePreviousOneLoads) {
  SharedDir dir("dp", "interrupted");
  std::unique_ptr<Trainer> full = run_with_checkpoints(dir.sub("run"));
  const std::string step10 = dir.sub("run/checkpoints/step-00000010");
  if (world()->rank() == 0) fs::remove(step10 + "/state.json");  // the manifest never came
  world()->barrier();
  EXPECT_EQ(latest_training_checkpoint(dir.sub("run")),
            std::optional<std::string>(dir.sub("run/checkpoints/step-00000005")));
  EXPECT_EQ(incomplete_checkpoints(dir.sub("run")), std::vector<std::string>{step10});
  try {
    load_any_training_checkpoint(step10, full->model(), full->optimizer(), full->zero());
    ADD_FAILURE() << "loading a checkpoint without its manifest must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("state.json is missing (an interrupted save?)"),
              std::string::npos)
        << e.what();
  }
  // Resuming prints a warning naming the incomplete one and continues from step 5.
  const std::string log = dir.sub(fmt::format("log_{}.txt", world()->rank()));
  std::FILE* out = std::fopen(log.c_str(), "w");
  TrainerOptions resume = options(true);
  resume.resume = true;
  resume.out = out;
  Trainer t(dp_config(dir.sub("run"), 2, {"train.checkpoint_interval=0"}), resume);
  EXPECT_EQ(t.current_step(), 5);
  t.run();
  std::fclose(out);
  EXPECT_EQ(t.history().back().loss, full->history().back().loss);
  if (world()->rank() == 0) {
    std::ifstream in(log);
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_NE(text.str().find("step-00000010 is skipped, not a complete checkpoint (an "
                              "interrupted save?): '" +
                              step10 +
                              "' is not a complete training checkpoint: state.json is "
                              "missing"),
              std::string::npos)
        << text.str();
    EXPECT_NE(text.str().find("/checkpoints/latest names step-00000010, which is not a complete "
                              "checkpoint; resuming from the newest complete one instead"),
              std::string::npos)
        << text.str();
  }
  // A missing partition file is named.
  const std::string step5 = dir.sub("run/checkpoints/step-00000005");
  world()->barrier();
  if (world()->rank() == 0) {
    fs::remove(step5 + fmt::format("/optimizer-zero-r{:05d}-of-{:05d}.safetensors", dp_size() - 1,
                                   dp_size()));
  }
  world()->barrier();
  try {
    load_any_training_checkpoint(step5, full->model(), full->optimizer(), full->zero());
    ADD_FAILURE() << "a missing partition must be reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  fmt::format("ZeRO partition {} of {}", dp_size() - 1, dp_size())),
              std::string::npos)
        << e.what();
  }
}

TEST(DataParallelConfig, BatchMathUsesTheDpSize) {
  // train_batch_size = micro 2 x accumulation 2 x dp: the equation names the DP size.
  const auto load = [](int64_t tbs) {
    return config("unused", {fmt::format("train_batch_size={}", tbs)}, dp_size());
  };
  const Config ok = load(4 * dp_size());
  EXPECT_EQ(ok.batch.dp_size, dp_size());
  EXPECT_EQ(ok.batch.train_batch_size, 4 * dp_size());
  try {
    load(4);  // the single-process value
    ADD_FAILURE() << "train_batch_size 4 on " << dp_size() << " ranks must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fmt::format("2 x 2 x {}", dp_size())), std::string::npos)
        << e.what();
  }
  // A config for another DP size than the grid's is refused with both numbers.
  Config other = config("unused", {}, std::nullopt);  // dp 1
  try {
    Trainer t(other, options(true));
    ADD_FAILURE() << "dp 1 on a grid of " << dp_size();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data_parallel_size is 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace autotp
