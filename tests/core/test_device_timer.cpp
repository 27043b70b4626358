// DeviceTimer: GPU-timed marks for the benchmark's phase split. On a GPU the phases of one
// queue of work add up to the whole; without one, construction fails with the reason.
#include <gtest/gtest.h>

#include <exception>

#include "core/cuda_allocator.h"
#include "core/device_timer.h"
#include "core/ops.h"

namespace autotp {
namespace {

TEST(DeviceTimer, WithoutAGpuConstructionFailsInsteadOfTimingNothing) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THROW(DeviceTimer(0, 2), std::exception);
}

TEST(DeviceTimer, PhasesBetweenMarksAddUpToTheWholeAndCoverQueuedWork_CUDA) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: DeviceTimer is checked on GPUs";
  const Device gpu = Device::cuda(0);
  const Tensor a = Tensor::ones({2048, 2048}, DType::F32, gpu);
  DeviceTimer timer(0, 3);
  timer.mark(0);
  Tensor c = ops::matmul(a, a);  // [2048, 2048]: ~17 GFLOP of queued work
  for (int i = 0; i < 4; ++i)
    c = ops::matmul(c, a) * (1.0 / 2048.0);
  timer.mark(1);
  c = ops::matmul(c, a);
  timer.mark(2);
  timer.wait(2);
  const double first = timer.elapsed_ms(0, 1), second = timer.elapsed_ms(1, 2);
  EXPECT_GT(first, 0.0);
  EXPECT_GT(second, 0.0);
  // Five products before mark 1, one after: the GPU's clock sees the queued work.
  EXPECT_GT(first, second);
  EXPECT_NEAR(timer.elapsed_ms(0, 2), first + second, 1e-2);
  EXPECT_EQ(c.to(Device::cpu()).to_vector()[0], 2048.0 * 2048.0);  // powers of two: exact
}

}  // namespace
}  // namespace autotp
