// LR schedules against values hand-computed from DeepSpeed's formulas
// (deepspeed/runtime/lr_schedules.py: WarmupLR, WarmupDecayLR, WarmupCosineLR).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "engine/lr_schedule.h"
#include "tests/core/nn_test_helpers.h"

namespace autotp {
namespace {

constexpr double kTol = 1e-15;  // the formulas are evaluated in double on both sides

LrScheduleConfig warmup(LrScheduleType type, WarmupType warmup_type) {
  LrScheduleConfig c;
  c.type = type;
  c.warmup_min_lr = 0.001;
  c.warmup_max_lr = 0.01;
  c.warmup_num_steps = 10;
  c.warmup_type = warmup_type;
  c.total_num_steps = 100;
  return c;
}

TEST(LrSchedule, ConstantIsTheOptimizerRateAtEveryStep) {
  LrScheduleConfig c;
  c.base_lr = 3e-4;
  const LrSchedule s(c);
  for (int64_t i : {-1, 0, 1, 1000})
    EXPECT_EQ(s.lr_at(i), 3e-4);
}

TEST(LrSchedule, WarmupLRLogRisesAsLogOfTheIterationThenHolds) {
  const LrSchedule s(warmup(LrScheduleType::WarmupLR, WarmupType::Log));
  // lr(i) = 0.001 + 0.009 * ln(i + 1) / ln(10) for i < 10.
  EXPECT_NEAR(s.lr_at(0), 0.001, kTol);                                // ln 1 = 0
  EXPECT_NEAR(s.lr_at(4), 0.001 + 0.009 * 0.69897000433601886, kTol);  // log10(5)
  EXPECT_NEAR(s.lr_at(9), 0.01, kTol);                                 // ln 10 / ln 10
  EXPECT_NEAR(s.lr_at(10), 0.01, kTol);
  EXPECT_NEAR(s.lr_at(12345), 0.01, kTol);
  EXPECT_EQ(s.lr_at(-1), 0.001);  // before the first scheduler step: warmup_min_lr
}

TEST(LrSchedule, WarmupLRLinearRisesByEqualSteps) {
  const LrSchedule s(warmup(LrScheduleType::WarmupLR, WarmupType::Linear));
  EXPECT_NEAR(s.lr_at(0), 0.001, kTol);
  EXPECT_NEAR(s.lr_at(5), 0.001 + 0.009 * 0.5, kTol);
  EXPECT_NEAR(s.lr_at(9), 0.001 + 0.009 * 0.9, kTol);  // 9 / 10: linear never reaches 1 inside
  EXPECT_NEAR(s.lr_at(10), 0.01, kTol);
}

TEST(LrSchedule, WarmupShorterThanTwoStepsIsTwoStepsAsInDeepSpeed) {
  LrScheduleConfig c = warmup(LrScheduleType::WarmupLR, WarmupType::Linear);
  c.warmup_num_steps = 1;  // DeepSpeed uses max(2, warmup_num_steps)
  const LrSchedule s(c);
  EXPECT_NEAR(s.lr_at(1), 0.001 + 0.009 * 0.5, kTol);
  EXPECT_NEAR(s.lr_at(2), 0.01, kTol);
}

TEST(LrSchedule, WarmupDecayLRDecaysLinearlyToTheMinimumAtTotalSteps) {
  const LrSchedule s(warmup(LrScheduleType::WarmupDecayLR, WarmupType::Linear));
  // i >= 10: gamma = (100 - i) / 90.
  EXPECT_NEAR(s.lr_at(10), 0.01, kTol);
  EXPECT_NEAR(s.lr_at(55), 0.001 + 0.009 * 0.5, kTol);
  EXPECT_NEAR(s.lr_at(91), 0.001 + 0.009 * 0.1, kTol);
  EXPECT_NEAR(s.lr_at(100), 0.001, kTol);
  EXPECT_NEAR(s.lr_at(150), 0.001, kTol);  // gamma clamps at 0
  EXPECT_NEAR(s.lr_at(4), 0.001 + 0.009 * 0.4, kTol);
}

TEST(LrSchedule, WarmupCosineLRWarmsUpByRatioThenFollowsACosine) {
  LrScheduleConfig c;
  c.type = LrScheduleType::WarmupCosineLR;
  c.base_lr = 0.1;
  c.warmup_num_steps = 10;
  c.total_num_steps = 100;
  c.warmup_min_ratio = 0.1;
  c.cos_min_ratio = 0.01;
  c.warmup_type = WarmupType::Linear;
  const LrSchedule s(c);
  EXPECT_EQ(s.lr_at(-1), 0.0);                             // DeepSpeed: 0 before the first step
  EXPECT_NEAR(s.lr_at(0), 0.1 * 0.1, kTol);                // ratio = warmup_min_ratio
  EXPECT_NEAR(s.lr_at(5), 0.1 * (0.1 + 0.9 * 0.5), kTol);  // halfway through the warmup
  // i >= 10: progress p = (i - 9) / 90, ratio = 0.01 + 0.99 * (1 + cos(pi p)) / 2.
  EXPECT_NEAR(s.lr_at(10), 0.1 * (0.01 + 0.99 * (1 + std::cos(std::numbers::pi / 90)) / 2), kTol);
  EXPECT_NEAR(s.lr_at(54), 0.1 * (0.01 + 0.99 * 0.5), 1e-15);  // p = 1/2: cos = 0
  EXPECT_NEAR(s.lr_at(99), 0.1 * 0.01, kTol);                  // p = 1: the floor
  EXPECT_NEAR(s.lr_at(500), 0.1 * 0.01, kTol);                 // clamped, stays at the floor
}

TEST(LrSchedule, WarmupCosineLRLogWarmup) {
  LrScheduleConfig c;
  c.type = LrScheduleType::WarmupCosineLR;
  c.base_lr = 2.0;
  c.warmup_num_steps = 100;
  c.total_num_steps = 1000;
  const LrSchedule s(c);  // warmup_min_ratio 0, log warmup: ratio = ln(i + 1) / ln(100)
  EXPECT_NEAR(s.lr_at(9), 2.0 * 0.5, kTol);  // ln 10 / ln 100
  EXPECT_NEAR(s.lr_at(0), 0.0, kTol);
}

TEST(LrSchedule, OptimizerStepUsesTheRateOfThePreviousIteration) {
  const LrSchedule s(warmup(LrScheduleType::WarmupLR, WarmupType::Linear));
  EXPECT_EQ(s.lr_for_step(0), s.lr_at(-1));
  EXPECT_EQ(s.lr_for_step(6), s.lr_at(5));
}

TEST(LrSchedule, RejectsNonPositiveStepCountsAndUnknownNames) {
  LrScheduleConfig c = warmup(LrScheduleType::WarmupLR, WarmupType::Log);
  c.warmup_num_steps = 0;
  EXPECT_ERROR_CONTAINS(LrSchedule{c}, "warmup_num_steps must be a positive integer");
  c = warmup(LrScheduleType::WarmupDecayLR, WarmupType::Log);
  c.total_num_steps = 0;
  EXPECT_ERROR_CONTAINS(LrSchedule{c}, "total_num_steps must be positive");
  EXPECT_ERROR_CONTAINS(lr_schedule_type_from_name("OneCycle"), "WarmupCosineLR");
  EXPECT_ERROR_CONTAINS(warmup_type_from_name("cosine"), "'log' or 'linear'");
}

}  // namespace
}  // namespace autotp
