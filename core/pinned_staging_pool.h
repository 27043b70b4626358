// PinnedStagingPool: pinned host buffers through which host -> device copies are queued without
// a host wait; a buffer is reused once the device has passed the copy that read it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace autotp {

// The raw calls the pool makes for one device: pinned host memory and completion markers
// (CUDA events on the legacy default stream) in the CUDA backend (core/cuda_memory.cu), a
// fake in the pool's CPU tests.
class StagingBackend {
 public:
  using Marker = void*;
  virtual ~StagingBackend() = default;
  // `bytes` of pinned host memory, or nullptr when the system has none left; throws for any
  // other failure.
  virtual void* allocate_pinned(size_t bytes) = 0;
  // Must not throw (called from destructors).
  virtual void free_pinned(void* ptr) noexcept = 0;
  virtual Marker create_marker() = 0;
  virtual void destroy_marker(Marker marker) noexcept = 0;
  // Records `marker` after the work queued on the device so far.
  virtual void record_marker(Marker marker) = 0;
  // Whether the device has passed the marker's last record; never waits.
  virtual bool marker_passed(Marker marker) = 0;
};

class PinnedStagingPool {
 public:
  struct Limits {
    size_t max_copy_bytes = size_t{16} << 20;    // larger copies are not staged
    size_t max_pinned_bytes = size_t{64} << 20;  // all buffers together stay within this
  };
  struct Stats {
    int64_t staged_copies = 0;    // copies queued from a pinned buffer
    int64_t unstaged_copies = 0;  // copies declined: the caller copied them synchronously
    int64_t buffers = 0;          // pinned buffers held
    size_t pinned_bytes = 0;      // their total size
  };
  // A buffer holds a power of two of at least this many bytes.
  static constexpr size_t kMinBufferBytes = size_t{64} << 10;

  // Pins nothing until the first copy.
  PinnedStagingPool(std::unique_ptr<StagingBackend> backend, Limits limits);
  // Frees every buffer: its owner makes sure the device has passed every staged copy.
  ~PinnedStagingPool();
  PinnedStagingPool(const PinnedStagingPool&) = delete;
  PinnedStagingPool& operator=(const PinnedStagingPool&) = delete;

  // Copies `bytes` of host memory at `src` into a pinned buffer the device is done with (the
  // smallest that fits; a new one when none does), calls enqueue(buffer) to queue the device's
  // copy from it, and records a marker after that copy: the buffer is reused only once the
  // device has passed the marker. Never waits for the device; `src` may be reused as soon as
  // this returns. Returns false without calling `enqueue` when the copy is over
  // max_copy_bytes, or no free buffer fits and a new one would pass max_pinned_bytes (after
  // freeing idle smaller buffers) or no pinned memory is left (once an allocation fails, the
  // pool serves from what it holds and asks for no more): the caller then copies
  // synchronously. Thread-safe.
  bool stage(const void* src, size_t bytes, const std::function<void(const void*)>& enqueue);

  Stats stats() const;

  // The size of a new buffer for a copy of `bytes`: the power of two >= max(bytes,
  // kMinBufferBytes).
  static size_t buffer_bytes(size_t bytes);

 private:
  struct Buffer {
    void* data = nullptr;
    size_t bytes = 0;
    StagingBackend::Marker marker = nullptr;
    bool busy = false;     // a staged copy may still read it (its marker not seen passed)
    bool retired = false;  // staging failed once its copy may have been queued: never reused
  };

  // The index of a free buffer of at least `bytes`, allocating one if needed; nullopt when
  // the copy cannot be staged. Called under mutex_.
  std::optional<size_t> acquire(size_t bytes);
  // Frees idle buffers smaller than `size` (largest first) until a new buffer of `size` fits
  // within max_pinned_bytes; returns whether it does. Busy and retired buffers stay. Without
  // this a burst of small copies could fill the pool with small buffers and send every later
  // larger copy down the synchronous path for good. Called under mutex_.
  bool make_room(size_t size);

  std::unique_ptr<StagingBackend> backend_;
  Limits limits_;
  mutable std::mutex mutex_;
  std::vector<Buffer> buffers_;
  Stats stats_;
  bool out_of_pinned_ = false;  // an allocation failed: the system has no pinned memory to spare
};

// The statistics of the pool through which cuda_memory::copy stages host -> device copies to
// CUDA device `device` (throws without the CUDA backend or for a device that is not visible).
PinnedStagingPool::Stats cuda_staging_stats(int device);

}  // namespace autotp
