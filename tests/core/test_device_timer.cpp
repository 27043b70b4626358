// DeviceTimer: GPU-timed marks for the benchmark's phase split. On a GPU the phases of one
// queue of work add up to the whole, marks land on the timer's device whatever device is
// current; without a GPU, construction fails with the reason.
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

TEST(DeviceTimer, MarksOnItsOwnDeviceWhateverDeviceIsCurrent_MultiGPU) {
  if (cuda_device_count() < 2) GTEST_SKIP() << "fewer than 2 CUDA devices";
  cuda_set_current_device(0);
  const Tensor a = Tensor::ones({512, 512}, DType::F32, Device::cuda(0));
  DeviceTimer timer(0, 2);
  cuda_set_current_device(1);  // an event of cuda:0 cannot be recorded on cuda:1's stream
  timer.mark(0);
  cuda_set_current_device(0);
  const Tensor c = ops::matmul(a, a);
  cuda_set_current_device(1);
  timer.mark(1);
  timer.wait(1);
  EXPECT_GE(timer.elapsed_ms(0, 1), 0.0);
  cuda_set_current_device(0);
  EXPECT_EQ(c.to(Device::cpu()).to_vector()[0], 512.0);
}

}  // namespace
}  // namespace autotp
