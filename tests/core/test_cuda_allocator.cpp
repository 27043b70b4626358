// The caching allocator's bookkeeping on a fake device (runs without a GPU): size classes,
// reuse without a device allocation, statistics, release_cached and the out-of-memory error.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/cuda_allocator.h"
#include "core/device.h"
#include "core/error.h"

namespace autotp {
namespace {

// Hands out fake addresses (never dereferenced) up to `capacity` bytes in use.
class FakeDeviceMemory final : public RawDeviceMemory {
 public:
  explicit FakeDeviceMemory(size_t capacity) : capacity_(capacity) {}
  void* allocate(size_t bytes) override {
    if (bytes > capacity_ - in_use_) return nullptr;
    in_use_ += bytes;
    void* ptr = reinterpret_cast<void*>(next_address_);
    next_address_ += bytes;
    blocks_[ptr] = bytes;
    return ptr;
  }
  void free(void* ptr) noexcept override {
    in_use_ -= blocks_.at(ptr);
    blocks_.erase(ptr);
  }
  std::string describe() const override { return "the fake device has 4096 bytes in all"; }
  size_t in_use() const { return in_use_; }

 private:
  size_t capacity_;
  size_t in_use_ = 0;
  uintptr_t next_address_ = 0x10000;
  std::map<void*, size_t> blocks_;
};

struct FakeSetup {
  FakeDeviceMemory* device;  // owned by the allocator
  CudaCachingAllocator allocator;
  explicit FakeSetup(size_t capacity = 4096)
      : FakeSetup(std::make_unique<FakeDeviceMemory>(capacity)) {}

 private:
  explicit FakeSetup(std::unique_ptr<FakeDeviceMemory> fake)
      : device(fake.get()), allocator(0, std::move(fake)) {}
};

TEST(CudaCachingAllocator, RoundsRequestsToA512ByteMinimumAndFourClassesPerOctave) {
  EXPECT_EQ(CudaCachingAllocator::round_size(1), 512u);
  EXPECT_EQ(CudaCachingAllocator::round_size(512), 512u);
  EXPECT_EQ(CudaCachingAllocator::round_size(513), 1024u);
  EXPECT_EQ(CudaCachingAllocator::round_size(1024), 1024u);
  EXPECT_EQ(CudaCachingAllocator::round_size(1025), 1280u);
  EXPECT_EQ(CudaCachingAllocator::round_size(2048), 2048u);
  EXPECT_EQ(CudaCachingAllocator::round_size(2049), 2560u);
  EXPECT_EQ(CudaCachingAllocator::round_size(5000), 5120u);
  EXPECT_EQ(CudaCachingAllocator::round_size((size_t(1) << 30) + 1),
            (size_t(1) << 30) + (size_t(1) << 28));
  EXPECT_EQ(CudaCachingAllocator::round_size(size_t(1) << 50), size_t(1) << 50);
  // Every class holds its request and wastes at most a quarter of it beyond 1 KiB.
  for (size_t bytes = 1; bytes < 300000; bytes += 97) {
    const size_t size = CudaCachingAllocator::round_size(bytes);
    ASSERT_GE(size, bytes);
    if (bytes > 1024) {
      ASSERT_LE(size - bytes, bytes / 4) << bytes;
    }
    ASSERT_EQ(CudaCachingAllocator::round_size(size), size) << "classes are fixed points";
  }
}

TEST(CudaCachingAllocator, ReusesAFreedBlockOfTheSameClassWithoutADeviceAllocation) {
  FakeSetup fake;
  void* a = fake.allocator.allocate(1000);  // class 1024
  fake.allocator.release(a);
  void* b = fake.allocator.allocate(900);  // same class: the cached block
  EXPECT_EQ(b, a);
  EXPECT_EQ(fake.allocator.stats().device_malloc_calls, 1);
  void* c = fake.allocator.allocate(2000);  // class 2048: a new device block
  EXPECT_NE(c, a);
  EXPECT_EQ(fake.allocator.stats().device_malloc_calls, 2);
  EXPECT_EQ(fake.allocator.allocate(0), nullptr);
  fake.allocator.release(nullptr);
  fake.allocator.release(b);
  fake.allocator.release(c);
}

TEST(CudaCachingAllocator, TracksCurrentPeakReservedAndCachedBytes) {
  FakeSetup fake;
  void* a = fake.allocator.allocate(1000);  // 1024
  void* b = fake.allocator.allocate(600);   // 1024
  CudaCachingAllocator::Stats s = fake.allocator.stats();
  EXPECT_EQ(s.current_bytes, 2048u);
  EXPECT_EQ(s.peak_bytes, 2048u);
  EXPECT_EQ(s.reserved_bytes, 2048u);
  EXPECT_EQ(s.cached_bytes, 0u);
  fake.allocator.release(a);
  s = fake.allocator.stats();
  EXPECT_EQ(s.current_bytes, 1024u);
  EXPECT_EQ(s.peak_bytes, 2048u);
  EXPECT_EQ(s.reserved_bytes, 2048u);
  EXPECT_EQ(s.cached_bytes, 1024u);
  fake.allocator.reset_peak();
  EXPECT_EQ(fake.allocator.stats().peak_bytes, 1024u);
  fake.allocator.release(b);
}

TEST(CudaCachingAllocator, ReleaseCachedReturnsOnlyFreeBlocksToTheDevice) {
  FakeSetup fake;
  void* live = fake.allocator.allocate(512);
  void* freed = fake.allocator.allocate(3000);  // class 3072
  fake.allocator.release(freed);
  EXPECT_EQ(fake.device->in_use(), 512u + 3072u);
  fake.allocator.release_cached();
  const CudaCachingAllocator::Stats s = fake.allocator.stats();
  EXPECT_EQ(fake.device->in_use(), 512u);
  EXPECT_EQ(s.reserved_bytes, 512u);
  EXPECT_EQ(s.cached_bytes, 0u);
  EXPECT_EQ(s.current_bytes, 512u);
  EXPECT_EQ(s.device_free_calls, 1);
  fake.allocator.release(live);
}

TEST(CudaCachingAllocator, OnOutOfMemoryReturnsTheCacheAndRetriesOnce) {
  FakeSetup fake(4096);
  void* a = fake.allocator.allocate(2048);
  fake.allocator.release(a);                // 2048 cached, device full to 2048 of 4096
  void* b = fake.allocator.allocate(3072);  // fails at first, fits after the cache is freed
  ASSERT_NE(b, nullptr);
  const CudaCachingAllocator::Stats s = fake.allocator.stats();
  EXPECT_EQ(s.device_malloc_calls, 3);  // a, the failed try, the retry
  EXPECT_EQ(s.device_free_calls, 1);
  EXPECT_EQ(s.reserved_bytes, 3072u);
  fake.allocator.release(b);
}

TEST(CudaCachingAllocator, OutOfMemoryErrorNamesTheRequestAndTheStatistics) {
  FakeSetup fake(4096);
  void* a = fake.allocator.allocate(1024);
  const size_t pebibyte = size_t(1) << 50;
  try {
    fake.allocator.allocate(pebibyte);
    FAIL() << "expected an out-of-memory error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("out of memory on cuda:0"), std::string::npos) << message;
    EXPECT_NE(message.find("1125899906842624 bytes (1.00 PiB"), std::string::npos) << message;
    EXPECT_NE(message.find("current 1024 bytes"), std::string::npos) << message;
    EXPECT_NE(message.find("peak 1024 bytes"), std::string::npos) << message;
    EXPECT_NE(message.find("reserved 1024 bytes"), std::string::npos) << message;
    EXPECT_NE(message.find("the fake device has 4096 bytes"), std::string::npos) << message;
  }
  // The allocator is still usable and its statistics unchanged.
  EXPECT_EQ(fake.allocator.stats().current_bytes, 1024u);
  fake.allocator.release(a);
}

TEST(CudaCachingAllocator, ReleasingAPointerItDidNotHandOutIsReportedAndIgnored) {
  FakeSetup fake;
  int not_device_memory = 0;
  ::testing::internal::CaptureStderr();
  fake.allocator.release(&not_device_memory);
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(printed.find("did not hand out"), std::string::npos) << printed;
  EXPECT_EQ(fake.allocator.stats().cached_bytes, 0u);
}

TEST(CudaCachingAllocator, ForDeviceRejectsADeviceThatIsNotVisible) {
  const int count = cuda_device_count();
  try {
    CudaCachingAllocator::for_device(count);
    FAIL() << "expected an error for cuda:" << count;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:" + std::to_string(count)), std::string::npos)
        << e.what();
  }
}

TEST(CudaDevice, CudaAvailableIsAQueryThatNeverThrows) {
  bool available = true;
  EXPECT_NO_THROW(available = cuda_available());
  EXPECT_EQ(available, cuda_device_count() > 0);
  EXPECT_GE(cuda_device_count(), 0);
}

}  // namespace
}  // namespace autotp
