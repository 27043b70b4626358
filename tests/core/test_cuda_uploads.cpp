// Host -> device uploads staged through pinned buffers (core/cuda_memory.cu): values land intact
// while the buffers are reused many times, behind queued GPU work and when the host memory
// changes right after; cross_entropy and embedding given host targets/ids for CUDA data equal
// the device-index path. Each test skips, printing why, where no CUDA device is visible.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/cuda_allocator.h"
#include "core/ops.h"
#include "core/pinned_staging_pool.h"
#include "core/random.h"
#include "core/storage.h"
#include "tests/core/nn_test_helpers.h"

namespace autotp {
namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!cuda_available())    \
  GTEST_SKIP() << "no CUDA device: uploads and host-index ops are checked on GPUs"

const Device kCuda = Device::cuda(0);

Tensor uniform_cpu(const Shape& shape, uint64_t seed, double lo = -2.0, double hi = 2.0) {
  Tensor t = Tensor::empty(shape, DType::F32);
  fill_uniform(t, seed, 0, lo, hi);
  return t;
}

// Values in [0, n) from a seed, with every value of [0, 3) repeated (repeated ids and targets).
std::vector<int64_t> indices(int64_t count, int64_t n, uint64_t seed) {
  const std::vector<double> u = uniform_cpu({count}, seed, 0.0, 1.0).to_vector();
  std::vector<int64_t> out;
  for (int64_t i = 0; i < count; ++i)
    out.push_back(i < 6 ? i % 3 : static_cast<int64_t>(u[i] * static_cast<double>(n)));
  return out;
}

TEST(CudaUploads, ValuesLandIntactWhileStagingBuffersAreReusedManyTimes_CUDA) {
  SKIP_WITHOUT_CUDA();
  constexpr int kUploads = 1000, kSyncEvery = 50;
  cuda_memory::synchronize(0);
  const PinnedStagingPool::Stats before = cuda_staging_stats(0);
  std::vector<Tensor> uploaded;
  std::vector<std::vector<int64_t>> expected;
  for (int i = 0; i < kUploads; ++i) {
    const int64_t n = 1 + (static_cast<int64_t>(i) * 7919) % 20000;  // 8 B to 160 KB
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j)
      v[static_cast<size_t>(j)] = static_cast<int64_t>(i) * 100003 + j;
    uploaded.push_back(Tensor::from_vector_i64(v, {n}, DType::I64, kCuda));
    expected.push_back(std::move(v));  // the host tensor the upload came from is gone already
    if ((i + 1) % kSyncEvery == 0) cuda_memory::synchronize(0);
  }
  for (int i = 0; i < kUploads; ++i)
    ASSERT_EQ(uploaded[i].to_vector_i64(), expected[i]) << "upload " << i;
  const PinnedStagingPool::Stats after = cuda_staging_stats(0);
  EXPECT_EQ((after.staged_copies - before.staged_copies) +
                (after.unstaged_copies - before.unstaged_copies),
            kUploads);
  // Reuse: a buffer is pinned only while every one that fits is busy, i.e. used since the last
  // synchronization, so at most kSyncEvery per buffer size (64, 128 and 256 KiB here).
  EXPECT_LE(after.buffers - before.buffers, 3 * kSyncEvery);
}

TEST(CudaUploads, AnUploadToAnIdleDeviceIsStaged_CUDA) {
  SKIP_WITHOUT_CUDA();
  cuda_memory::synchronize(0);  // every buffer free: a small copy always finds or pins one
  const PinnedStagingPool::Stats before = cuda_staging_stats(0);
  const Tensor t = Tensor::from_vector_i64({5, -6, 7}, {3}, DType::I64, kCuda);
  const PinnedStagingPool::Stats after = cuda_staging_stats(0);
  EXPECT_EQ(after.staged_copies, before.staged_copies + 1);
  EXPECT_EQ(t.to_vector_i64(), (std::vector<int64_t>{5, -6, 7}));
}

TEST(CudaUploads, UploadsQueuedBehindGpuWorkKeepTheValuesOfTheirCallTime_CUDA) {
  SKIP_WITHOUT_CUDA();
  // Keep the GPU busy so that the copies below are still queued when the host moves on.
  const Tensor a = Tensor::ones({2048, 2048}, DType::F32, kCuda);
  Tensor c = ops::matmul(a, a);
  for (int i = 0; i < 4; ++i)
    c = ops::mul(ops::matmul(c, a), 1.0 / 2048.0);
  const Tensor host = Tensor::empty({1000}, DType::F32);
  std::vector<Tensor> uploaded, plus_one;
  for (int i = 0; i < 200; ++i) {
    host.fill_(static_cast<double>(i));  // overwrite the source right after each upload
    uploaded.push_back(host.to(kCuda));
    plus_one.push_back(ops::add(uploaded.back(), 1.0));  // a kernel reading the upload
  }
  for (int i = 0; i < 200; ++i) {
    const double value = static_cast<double>(i);
    ASSERT_EQ(uploaded[i].to_vector(), std::vector<double>(1000, value)) << "upload " << i;
    ASSERT_EQ(plus_one[i].to_vector(), std::vector<double>(1000, value + 1.0)) << "upload " << i;
  }
  EXPECT_EQ(c.to_vector()[0], 2048.0);  // each pass multiplies by 2048 and divides by 2048
  // Over the largest staged copy (16 MiB): the synchronous path, same values.
  const Tensor big = uniform_cpu({(int64_t{16} << 20) / 4 + 3}, 4102);
  EXPECT_EQ(big.to(kCuda).to_vector(), big.to_vector());
}

TEST(CudaUploads, CrossEntropyWithHostTargetsEqualsDeviceTargets_CUDA) {
  SKIP_WITHOUT_CUDA();
  constexpr int64_t kRows = 37, kClasses = 1001;
  std::vector<int64_t> t = indices(kRows, kClasses, 4201);
  t[4] = -100;
  t[20] = -100;
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (DType index_dtype : {DType::I64, DType::I32}) {
      const std::string what =
          std::string(dtype_name(dtype)) + " logits, " + std::string(dtype_name(index_dtype));
      const Tensor host_targets = Tensor::from_vector_i64(t, {kRows}, index_dtype);
      Tensor device_logits = uniform_cpu({kRows, kClasses}, 4202).to(dtype).to(kCuda).detach();
      Tensor host_logits = device_logits.clone().detach();
      device_logits.set_requires_grad(true);
      host_logits.set_requires_grad(true);
      const Tensor device_loss = ops::cross_entropy(device_logits, host_targets.to(kCuda));
      const Tensor host_loss = ops::cross_entropy(host_logits, host_targets);
      device_loss.backward();
      host_loss.backward();
      EXPECT_EQ(host_loss.dtype(), device_loss.dtype()) << what;
      EXPECT_EQ(host_loss.item(), device_loss.item()) << what;
      EXPECT_EQ(host_logits.grad().to_vector(), device_logits.grad().to_vector()) << what;
      EXPECT_TRUE(std::isfinite(host_loss.item()) && host_loss.item() > 0.0) << what;
    }
  }
}

TEST(CudaUploads, CrossEntropyWithBadHostTargetsNamesTheRowAsBefore_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Tensor logits = Tensor::zeros({3, 5}, DType::F32, kCuda);
  EXPECT_ERROR_CONTAINS(ops::cross_entropy(logits, Tensor::from_vector_i64({0, 5, 1}, {3})),
                        "target 5 at row 1");
  EXPECT_ERROR_CONTAINS(
      ops::cross_entropy(logits, Tensor::from_vector_i64({0, 5, 1}, {3}, DType::I64, kCuda)),
      "target 5 at row 1");
  // Device targets for host logits are still refused, naming both devices.
  EXPECT_ERROR_CONTAINS(
      ops::cross_entropy(Tensor::zeros({3, 5}), Tensor::zeros({3}, DType::I64, kCuda)),
      "is on cuda:0");
}

TEST(CudaUploads, EmbeddingWithHostIdsEqualsDeviceIds_CUDA) {
  SKIP_WITHOUT_CUDA();
  constexpr int64_t kVocab = 97, kDim = 33;
  const std::vector<int64_t> v = indices(2 * 19, kVocab, 4301);
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (DType index_dtype : {DType::I64, DType::I32}) {
      const std::string what =
          std::string(dtype_name(dtype)) + " table, " + std::string(dtype_name(index_dtype));
      const Tensor host_ids = Tensor::from_vector_i64(v, {2, 19}, index_dtype);
      const Tensor g = uniform_cpu({2, 19, kDim}, 4302).to(dtype).to(kCuda);
      Tensor device_w = uniform_cpu({kVocab, kDim}, 4303).to(dtype).to(kCuda).detach();
      Tensor host_w = device_w.clone().detach();
      device_w.set_requires_grad(true);
      host_w.set_requires_grad(true);
      const Tensor device_out = ops::embedding(device_w, host_ids.to(kCuda));
      const Tensor host_out = ops::embedding(host_w, host_ids);
      EXPECT_EQ(host_out.device(), kCuda) << what;
      EXPECT_EQ(host_out.to_vector(), device_out.to_vector()) << what;
      ops::sum(ops::mul(device_out, g)).backward();
      ops::sum(ops::mul(host_out, g)).backward();
      EXPECT_EQ(host_w.grad().to_vector(), device_w.grad().to_vector()) << what;
    }
  }
  const Tensor w = Tensor::zeros({kVocab, kDim}, DType::F32, kCuda);
  EXPECT_ERROR_CONTAINS(ops::embedding(w, Tensor::from_vector_i64({3, kVocab}, {2})),
                        "id 97 (at flat position 1");
}

}  // namespace
}  // namespace autotp
