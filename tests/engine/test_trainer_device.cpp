// The Trainer's device and precision logic where CI runs it (on the CPU): the error for a
// CUDA device without a GPU, the CPU default, and the master-weight path that bf16.enabled
// takes on CUDA, which in f32 on the CPU must reproduce the plain run bit for bit (also
// through a checkpoint). The GPU runs are in test_cuda_training.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "engine/checkpoint.h"
#include "engine/trainer.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/engine/trainer_test_helpers.h"

namespace autotp {
namespace {

using testing::quiet_on;
using testing::TempDir;
using testing::train_to_the_end;
using testing::trajectory_config;

// Without a GPU, asking for one is a single error that says why, before anything is built or
// written (on every machine without a GPU, CI included).
TEST(TrainerDevice, CudaWithoutAGpuIsOneErrorSayingWhy) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is visible: the error needs a machine without one";
  TempDir dir("no_gpu");
  EXPECT_ERROR_CONTAINS(Trainer(trajectory_config(dir.sub("out")), quiet_on(Device::cuda(0))),
                        "trainer: device cuda:0 needs a GPU, but ");
  EXPECT_ERROR_CONTAINS(Trainer(trajectory_config(dir.sub("out")), quiet_on(Device::cuda(0))),
                        "train on the CPU with --device cpu");
  EXPECT_FALSE(std::filesystem::exists(dir.sub("out")));
}

// The library's default is the CPU, where bf16.enabled is noted and ignored (f32 weights).
TEST(TrainerDevice, TheCpuIsTheDefaultAndBf16IsIgnoredThere) {
  TempDir dir("cpu_default");
  EXPECT_EQ(TrainerOptions{}.device, Device::cpu());
  TrainerOptions options = quiet_on(TrainerOptions{}.device);
  Trainer trainer(trajectory_config(dir.sub("out"), {"bf16.enabled=true"}), options);
  EXPECT_EQ(trainer.device(), Device::cpu());
  EXPECT_EQ(trainer.mixed_precision(), nullptr);
  EXPECT_EQ(trainer.peak_memory_gib(), 0.0);
  for (const auto& [name, p] : trainer.model().named_parameters()) {
    EXPECT_TRUE(p.device().is_cpu()) << name;
    EXPECT_EQ(p.dtype(), DType::F32) << name;
  }
  EXPECT_TRUE(std::isfinite(trainer.step().loss));
}

TrainerOptions with_masters(Device device = Device::cpu()) {
  TrainerOptions o = quiet_on(device);
  o.force_master_weights = true;
  return o;
}

void expect_same_steps(const std::vector<StepRecord>& got, const std::vector<StepRecord>& want,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].step, want[i].step) << what;
    EXPECT_EQ(got[i].loss, want[i].loss) << what << ", step " << want[i].step;  // bit for bit
    EXPECT_EQ(got[i].grad_norm, want[i].grad_norm) << what << ", step " << want[i].step;
    EXPECT_EQ(got[i].lr, want[i].lr) << what << ", step " << want[i].step;
    EXPECT_FALSE(got[i].skipped) << what;
  }
}

void expect_same_weights(Trainer& got, Trainer& want, const std::string& what) {
  const NamedTensors a = got.model().named_parameters(), b = want.model().named_parameters();
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first) << what;
    EXPECT_TRUE(a[i].second.to_vector() == b[i].second.to_vector()) << a[i].first << ", " << what;
  }
}

// The path of bf16.enabled on CUDA with f32 model weights: the model's gradients go into f32
// master gradients after each micro-batch, clipping and AdamW act on the masters, and the
// update writes the model weights from them. With f32 weights every one of those copies is
// exact, so the run must be the plain run, bit for bit.
TEST(TrainerMasterWeights, OnTheCpuInF32TheyReproduceThePlainRunBitForBit) {
  TempDir dir("masters");
  Trainer plain(trajectory_config(dir.sub("plain")), quiet_on(Device::cpu()));
  Trainer masters(trajectory_config(dir.sub("masters")), with_masters());
  ASSERT_NE(masters.mixed_precision(), nullptr);
  const NamedTensors& m = masters.mixed_precision()->master_params();
  const NamedTensors p = masters.model().named_parameters();
  ASSERT_EQ(m.size(), p.size());
  for (size_t i = 0; i < m.size(); ++i) {
    EXPECT_EQ(m[i].first, p[i].first);
    EXPECT_FALSE(m[i].second.shares_storage(p[i].second)) << m[i].first;  // real copies
  }
  // The optimizer the checkpoints see is the masters' AdamW.
  EXPECT_EQ(masters.optimizer().params().front().second.raw_data(), m.front().second.raw_data());
  const std::vector<StepRecord> want = train_to_the_end(plain);
  expect_same_steps(train_to_the_end(masters), want, "master weights");
  expect_same_weights(masters, plain, "master weights");
  EXPECT_LT(want.back().loss, 0.8 * want.front().loss) << "the run barely trained";
}

// A checkpoint of a master-weight run stores the f32 masters as the weights (the format of a
// plain checkpoint): resuming it with master weights continues the uninterrupted run bit for
// bit, and so does resuming it without them.
TEST(TrainerMasterWeights, ACheckpointOfTheMastersResumesTheRunBitForBit) {
  TempDir dir("masters_resume");
  Trainer straight(trajectory_config(dir.sub("straight")), with_masters());
  const std::vector<StepRecord> ten = train_to_the_end(straight);
  Trainer first(
      trajectory_config(dir.sub("split"), {"train.steps=5", "train.checkpoint_interval=5"}),
      with_masters());
  first.run();
  ASSERT_TRUE(latest_training_checkpoint(dir.sub("split")).has_value());
  for (const bool keep_masters : {true, false}) {
    const std::string what = keep_masters ? "resumed with master weights" : "resumed plain";
    TrainerOptions resume = keep_masters ? with_masters() : quiet_on(Device::cpu());
    resume.resume = true;
    resume.resume_dir = dir.sub("split");
    resume.out_dir = dir.sub(keep_masters ? "second_masters" : "second_plain");
    Trainer second(trajectory_config(dir.sub("unused")), resume);
    ASSERT_EQ(second.current_step(), 5) << what;
    const std::vector<StepRecord> last = train_to_the_end(second);
    expect_same_steps(last, std::vector<StepRecord>(ten.begin() + 5, ten.end()), what);
    expect_same_weights(second, straight, what);
  }
}

// Mixed precision needs f32 parameters: its masters are f32.
TEST(TrainerMasterWeights, NeedF32Parameters) {
  TempDir dir("masters_f64");
  TrainerOptions o = with_masters();
  o.dtype = DType::F64;
  EXPECT_ERROR_CONTAINS(Trainer(trajectory_config(dir.sub("out")), o),
                        "mixed precision keeps f32 master weights, so the parameter dtype must be "
                        "f32, got f64");
}

}  // namespace
}  // namespace autotp
