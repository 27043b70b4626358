// KernelProfiler over CUPTI's activity API. CUPTI hands completed record buffers to plain C
// callbacks, so the records collected so far live in one process-wide sink (guarded by a
// mutex) that exists only while a profiler records; a second profiler is refused. Builds
// without CUDA, or whose toolkit has no CUPTI (AUTOTP_WITH_CUPTI unset), get a profiler that
// refuses to start with the reason.
#if defined(AUTOTP_WITH_CUDA) && defined(AUTOTP_WITH_CUPTI)
#include <cuda_runtime.h>
#include <cupti.h>
#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

#include "core/error.h"
#include "core/kernel_profiler.h"

namespace autotp {

namespace {

struct Sink {
  std::mutex mutex;
  std::map<std::string, KernelTime> by_name;
  bool active = false;
  uint64_t dropped = 0;
};

Sink& sink() {
  static Sink instance;
  return instance;
}

#define AUTOTP_CUPTI_CHECK(call)                                                    \
  do {                                                                              \
    const CUptiResult status_ = (call);                                             \
    if (status_ != CUPTI_SUCCESS) {                                                 \
      const char* message_ = nullptr;                                               \
      cuptiGetResultString(status_, &message_);                                     \
      AUTOTP_CHECK(false, "{} failed: {}", #call, message_ ? message_ : "unknown"); \
    }                                                                               \
  } while (0)

constexpr size_t kBufferBytes = 8 << 20;

std::string demangled(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

const char* copy_kind_name(uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD:
      return "[memcpy HtoD]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH:
      return "[memcpy DtoH]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD:
      return "[memcpy DtoD]";
    default:
      return "[memcpy other]";
  }
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

void add(std::map<std::string, KernelTime>& by_name, const std::string& name, uint64_t start,
         uint64_t end) {
  KernelTime& t = by_name[name];
  t.name = name;
  t.calls += 1;
  t.total_ms += static_cast<double>(end - start) / 1e6;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  Sink& s = sink();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    CUpti_Activity* record = nullptr;
    while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
      switch (record->kind) {
        case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
        case CUPTI_ACTIVITY_KIND_KERNEL: {
          const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
          add(s.by_name, demangled(k->name), k->start, k->end);
          break;
        }
        case CUPTI_ACTIVITY_KIND_MEMCPY: {
          const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
          add(s.by_name, copy_kind_name(m->copyKind), m->start, m->end);
          break;
        }
        case CUPTI_ACTIVITY_KIND_MEMSET: {
          const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
          add(s.by_name, "[memset]", m->start, m->end);
          break;
        }
        default:
          break;
      }
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped) == CUPTI_SUCCESS)
      s.dropped += dropped;
  }
  std::free(buffer);
}

constexpr CUpti_ActivityKind kKinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
                                         CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET};

}  // namespace

KernelProfiler::KernelProfiler() {
  Sink& s = sink();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    AUTOTP_CHECK(!s.active, "a KernelProfiler is already recording (one at a time per process)");
    s.active = true;
    s.by_name.clear();
    s.dropped = 0;
  }
  try {
    AUTOTP_CUPTI_CHECK(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed));
    for (CUpti_ActivityKind kind : kKinds)
      AUTOTP_CUPTI_CHECK(cuptiActivityEnable(kind));
  } catch (...) {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.active = false;
    throw;
  }
  recording_ = true;
}

KernelProfiler::~KernelProfiler() {
  if (!recording_) return;
  try {
    stop();
  } catch (...) {  // a destructor must not throw; stop() already reported nothing useful
  }
}

std::vector<KernelTime> KernelProfiler::stop() {
  AUTOTP_CHECK(recording_, "KernelProfiler::stop: called twice");
  recording_ = false;
  Sink& s = sink();
  const cudaError_t synced = cudaDeviceSynchronize();
  AUTOTP_CUPTI_CHECK(cuptiActivityFlushAll(1));
  for (CUpti_ActivityKind kind : kKinds)
    cuptiActivityDisable(kind);
  std::lock_guard<std::mutex> lock(s.mutex);
  s.active = false;
  AUTOTP_CHECK(synced == cudaSuccess, "KernelProfiler::stop: cudaDeviceSynchronize failed: {}",
               cudaGetErrorString(synced));
  AUTOTP_CHECK(s.dropped == 0,
               "KernelProfiler::stop: CUPTI dropped {} activity records (the times would be "
               "incomplete)",
               s.dropped);
  std::vector<KernelTime> out;
  out.reserve(s.by_name.size());
  for (auto& [name, t] : s.by_name)
    out.push_back(t);
  std::sort(out.begin(), out.end(),
            [](const KernelTime& a, const KernelTime& b) { return a.total_ms > b.total_ms; });
  return out;
}

}  // namespace autotp

#else  // no CUDA or no CUPTI

#include "core/error.h"
#include "core/kernel_profiler.h"

namespace autotp {

KernelProfiler::KernelProfiler() {
#ifdef AUTOTP_WITH_CUDA
  AUTOTP_CHECK(false,
               "the kernel profiler needs CUPTI, which this build's CUDA toolkit did not have");
#else
  AUTOTP_CHECK(false, "the kernel profiler needs a build with CUDA (this one has none)");
#endif
}

KernelProfiler::~KernelProfiler() = default;

std::vector<KernelTime> KernelProfiler::stop() {
  return {};
}

}  // namespace autotp

#endif
