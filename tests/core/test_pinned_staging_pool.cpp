// PinnedStagingPool over a fake device: a buffer is reused only once the device has passed its
// copy (queried, never waited on), the smallest free buffer that fits is taken, copies the pool
// cannot stage are declined for the synchronous path, and a failed enqueue retires its buffer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <stdexcept>
#include <vector>

#include "core/pinned_staging_pool.h"

namespace autotp {
namespace {

// The fake device: markers are sequence numbers of records; the device has passed every
// record up to `passed` (the test advances it). Host "pinned" memory is plain heap memory.
struct FakeDevice {
  int64_t recorded = 0;  // records so far
  int64_t passed = 0;    // the device has passed records 1 .. passed
  bool out_of_pinned_memory = false;
  int64_t allocation_attempts = 0;
  std::set<void*> live_buffers;
  int64_t live_markers = 0;
  int64_t queries = 0;

  void catch_up() { passed = recorded; }
};

class FakeBackend final : public StagingBackend {
 public:
  explicit FakeBackend(FakeDevice& device) : device_(device) {}

  void* allocate_pinned(size_t bytes) override {
    ++device_.allocation_attempts;
    if (device_.out_of_pinned_memory) return nullptr;
    void* p = new char[bytes];
    device_.live_buffers.insert(p);
    return p;
  }
  void free_pinned(void* ptr) noexcept override {
    device_.live_buffers.erase(ptr);
    delete[] static_cast<char*>(ptr);
  }
  Marker create_marker() override {
    ++device_.live_markers;
    return new int64_t(0);  // the sequence number of its last record; 0: never recorded
  }
  void destroy_marker(Marker marker) noexcept override {
    --device_.live_markers;
    delete static_cast<int64_t*>(marker);
  }
  void record_marker(Marker marker) override {
    *static_cast<int64_t*>(marker) = ++device_.recorded;
  }
  bool marker_passed(Marker marker) override {
    ++device_.queries;
    return *static_cast<int64_t*>(marker) <= device_.passed;
  }

 private:
  FakeDevice& device_;
};

constexpr size_t kMin = PinnedStagingPool::kMinBufferBytes;

std::unique_ptr<PinnedStagingPool> make_pool(FakeDevice& device,
                                             PinnedStagingPool::Limits limits = {}) {
  return std::make_unique<PinnedStagingPool>(std::make_unique<FakeBackend>(device), limits);
}

// Stages `bytes` of `fill` and returns the pinned buffer the enqueue was handed (nullptr when
// the pool declined); `seen` gets the buffer's bytes as the enqueue saw them.
const void* stage_bytes(PinnedStagingPool& pool, size_t bytes, unsigned char fill,
                        std::vector<unsigned char>* seen = nullptr) {
  std::vector<unsigned char> src(bytes, fill);
  const void* used = nullptr;
  const bool staged = pool.stage(src.data(), bytes, [&](const void* pinned) {
    used = pinned;
    if (seen != nullptr) {
      const auto* p = static_cast<const unsigned char*>(pinned);
      seen->assign(p, p + bytes);
    }
  });
  EXPECT_EQ(staged, used != nullptr);
  return used;
}

TEST(PinnedStagingPool, BufferSizesArePowersOfTwoOfAtLeastTheMinimum) {
  EXPECT_EQ(PinnedStagingPool::buffer_bytes(0), kMin);
  EXPECT_EQ(PinnedStagingPool::buffer_bytes(1), kMin);
  EXPECT_EQ(PinnedStagingPool::buffer_bytes(kMin), kMin);
  EXPECT_EQ(PinnedStagingPool::buffer_bytes(kMin + 1), 2 * kMin);
  EXPECT_EQ(PinnedStagingPool::buffer_bytes((size_t{16} << 20) - 7), size_t{16} << 20);
}

TEST(PinnedStagingPool, TheEnqueueSeesTheSourceBytesAndTheSourceMayChangeRightAfter) {
  FakeDevice device;
  auto pool = make_pool(device);
  std::vector<unsigned char> src(1000);
  for (size_t i = 0; i < src.size(); ++i)
    src[i] = static_cast<unsigned char>(i * 7);
  const void* pinned = nullptr;
  ASSERT_TRUE(pool->stage(src.data(), src.size(), [&](const void* p) { pinned = p; }));
  ASSERT_NE(pinned, nullptr);
  EXPECT_NE(pinned, static_cast<const void*>(src.data()));
  const std::vector<unsigned char> staged = src;
  std::fill(src.begin(), src.end(), 0);  // the caller reuses its memory at once
  EXPECT_EQ(std::memcmp(pinned, staged.data(), staged.size()), 0);
  EXPECT_EQ(device.recorded, 1);  // one marker behind the copy
  EXPECT_EQ(pool->stats().staged_copies, 1);
}

TEST(PinnedStagingPool, ABufferIsReusedOnlyOnceTheDeviceHasPassedItsCopy) {
  FakeDevice device;
  auto pool = make_pool(device);
  const void* first = stage_bytes(*pool, 100, 1);
  // The device has not passed the first copy: a second buffer, the first left untouched.
  std::vector<unsigned char> seen;
  const void* second = stage_bytes(*pool, 100, 2, &seen);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_NE(first, second);
  EXPECT_EQ(static_cast<const unsigned char*>(first)[0], 1);
  EXPECT_EQ(seen, std::vector<unsigned char>(100, 2));
  EXPECT_EQ(pool->stats().buffers, 2);
  // Passed the first record only: the first buffer comes back, the second stays busy.
  device.passed = 1;
  EXPECT_EQ(stage_bytes(*pool, 100, 3), first);
  EXPECT_EQ(static_cast<const unsigned char*>(second)[0], 2);
  // Caught up: many more copies cycle through the buffers held, none allocated.
  for (int i = 0; i < 100; ++i) {
    device.catch_up();
    EXPECT_NE(stage_bytes(*pool, 100 + i, 4), nullptr);
  }
  EXPECT_EQ(pool->stats().buffers, 2);
  EXPECT_EQ(pool->stats().pinned_bytes, 2 * kMin);
  EXPECT_EQ(pool->stats().staged_copies, 103);
  EXPECT_EQ(pool->stats().unstaged_copies, 0);
}

TEST(PinnedStagingPool, TheSmallestFreeBufferThatFitsIsTaken) {
  FakeDevice device;
  auto pool = make_pool(device);
  const void* small = stage_bytes(*pool, kMin, 1);
  const void* large = stage_bytes(*pool, 4 * kMin, 2);
  device.catch_up();
  EXPECT_EQ(stage_bytes(*pool, 10, 3), small);
  device.catch_up();
  EXPECT_EQ(stage_bytes(*pool, kMin + 1, 4), large);  // the small one does not fit
  device.catch_up();
  EXPECT_EQ(stage_bytes(*pool, 10, 5), small);
  // With the small one busy, a small copy takes the free large one rather than pinning more.
  EXPECT_EQ(stage_bytes(*pool, 10, 6), large);
  EXPECT_EQ(pool->stats().buffers, 2);
}

TEST(PinnedStagingPool, CopiesItCannotStageAreDeclinedWithoutAnEnqueue) {
  FakeDevice device;
  PinnedStagingPool::Limits limits;
  limits.max_copy_bytes = 2 * kMin;
  limits.max_pinned_bytes = 4 * kMin;
  auto pool = make_pool(device, limits);
  // Over the largest staged copy.
  EXPECT_EQ(stage_bytes(*pool, 2 * kMin + 1, 1), nullptr);
  // Busy buffers filling the pool's pinned bytes: declined until the device passes one.
  EXPECT_NE(stage_bytes(*pool, 2 * kMin, 1), nullptr);
  EXPECT_NE(stage_bytes(*pool, 2 * kMin, 2), nullptr);
  EXPECT_EQ(stage_bytes(*pool, 10, 3), nullptr);
  device.passed = 1;
  EXPECT_NE(stage_bytes(*pool, 10, 4), nullptr);
  // No pinned memory left on the system: declined, nothing held beyond what was.
  device.catch_up();
  device.out_of_pinned_memory = true;
  stage_bytes(*pool, 10, 5);  // a free buffer still serves
  PinnedStagingPool::Limits roomy;
  auto other = make_pool(device, roomy);
  EXPECT_EQ(stage_bytes(*other, 10, 6), nullptr);
  const PinnedStagingPool::Stats stats = pool->stats();
  EXPECT_EQ(stats.unstaged_copies, 2);
  EXPECT_EQ(stats.staged_copies, 4);
  EXPECT_EQ(stats.pinned_bytes, 4 * kMin);
  EXPECT_EQ(other->stats().unstaged_copies, 1);
  EXPECT_EQ(other->stats().buffers, 0);
}

TEST(PinnedStagingPool, AFailedEnqueueRetiresItsBufferAndPropagates) {
  FakeDevice device;
  auto pool = make_pool(device);
  const void* failed = nullptr;
  const char src[16] = {};
  EXPECT_THROW(pool->stage(src, sizeof(src),
                           [&](const void* pinned) {
                             failed = pinned;
                             throw std::runtime_error("cudaMemcpyAsync failed");
                           }),
               std::runtime_error);
  device.catch_up();
  // The retired buffer is never handed out again (its copy may have been queued).
  const void* next = stage_bytes(*pool, sizeof(src), 1);
  EXPECT_NE(next, nullptr);
  EXPECT_NE(next, failed);
  EXPECT_EQ(pool->stats().buffers, 2);
  EXPECT_EQ(pool->stats().staged_copies, 1);
}

TEST(PinnedStagingPool, IdleSmallBuffersMakeRoomForALargerCopy) {
  FakeDevice device;
  PinnedStagingPool::Limits limits;
  limits.max_copy_bytes = 2 * kMin;
  limits.max_pinned_bytes = 4 * kMin;
  auto pool = make_pool(device, limits);
  std::vector<const void*> small;
  for (int i = 0; i < 4; ++i)  // a burst of small copies fills the pool
    small.push_back(stage_bytes(*pool, 100, static_cast<unsigned char>(i)));
  EXPECT_EQ(pool->stats().pinned_bytes, 4 * kMin);
  // While they are busy nothing is freed: the larger copy goes the synchronous way.
  EXPECT_EQ(stage_bytes(*pool, 2 * kMin, 9), nullptr);
  EXPECT_EQ(device.live_buffers.size(), 4u);
  // Once the device has passed them, two idle small buffers give way to one of 2 kMin.
  device.catch_up();
  std::vector<unsigned char> seen;
  const void* large = stage_bytes(*pool, 2 * kMin, 10, &seen);
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(seen, std::vector<unsigned char>(2 * kMin, 10));
  const PinnedStagingPool::Stats stats = pool->stats();
  EXPECT_EQ(stats.buffers, 3);
  EXPECT_EQ(stats.pinned_bytes, 4 * kMin);
  EXPECT_EQ(device.live_buffers.size(), 3u);
  EXPECT_EQ(device.live_markers, 3);
  // The small ones left still serve small copies.
  device.catch_up();
  const void* again = stage_bytes(*pool, 100, 11);
  EXPECT_NE(again, nullptr);
  EXPECT_NE(again, large);
}

TEST(PinnedStagingPool, AfterAFailedPinnedAllocationThePoolAsksForNoMore) {
  FakeDevice device;
  auto pool = make_pool(device);
  const void* held = stage_bytes(*pool, 100, 1);
  ASSERT_NE(held, nullptr);
  device.out_of_pinned_memory = true;
  EXPECT_EQ(stage_bytes(*pool, 100, 2), nullptr);  // the one buffer is busy: asks, fails
  EXPECT_EQ(device.allocation_attempts, 2);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(stage_bytes(*pool, 100, 3), nullptr);  // declined without asking again
  EXPECT_EQ(device.allocation_attempts, 2);
  device.catch_up();
  EXPECT_EQ(stage_bytes(*pool, 100, 4), held);  // what it holds still serves
  EXPECT_EQ(pool->stats().unstaged_copies, 6);
}

TEST(PinnedStagingPool, OnlyQueriesTheDeviceAndFreesEverythingItHeld) {
  FakeDevice device;
  {
    auto pool = make_pool(device);
    for (int i = 0; i < 10; ++i)
      stage_bytes(*pool, 100, static_cast<unsigned char>(i));  // the device never moves
    EXPECT_EQ(pool->stats().buffers, 10);
    EXPECT_GT(device.queries, 0);
    EXPECT_EQ(device.live_buffers.size(), 10u);
    EXPECT_EQ(device.live_markers, 10);
  }
  EXPECT_TRUE(device.live_buffers.empty());
  EXPECT_EQ(device.live_markers, 0);
}

}  // namespace
}  // namespace autotp
