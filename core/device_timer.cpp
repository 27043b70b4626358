// DeviceTimer over cudaEvent_t: one event per mark, recorded on the legacy default stream.
// Builds without CUDA get a timer that refuses to start with the reason.
#include "core/device_timer.h"

#include <vector>

#include "core/error.h"
#ifdef AUTOTP_WITH_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/device_guard.h"
#endif

namespace autotp {

#ifdef AUTOTP_WITH_CUDA

struct DeviceTimer::Events {
  int device = 0;  // where the events were created and are recorded
  std::vector<cudaEvent_t> events;

  ~Events() {
    for (cudaEvent_t e : events)
      cudaEventDestroy(e);  // a failure while tearing down is not actionable
  }
  cudaEvent_t at(int index) const {
    AUTOTP_ASSERT(index >= 0 && static_cast<size_t>(index) < events.size(),
                  "DeviceTimer mark {} of {}", index, events.size());
    return events[static_cast<size_t>(index)];
  }
};

DeviceTimer::DeviceTimer(int device, int marks) : events_(std::make_unique<Events>()) {
  AUTOTP_CHECK(marks > 0, "DeviceTimer needs at least one mark, got {}", marks);
  events_->device = device;
  kernels::cuda::ScopedDevice guard(device);
  for (int i = 0; i < marks; ++i) {
    cudaEvent_t e = nullptr;
    AUTOTP_CUDA_CHECK(cudaEventCreate(&e));
    events_->events.push_back(e);
  }
}

void DeviceTimer::mark(int index) {
  // On the timer's device: an event is recorded only on a stream of the device it belongs to.
  kernels::cuda::ScopedDevice guard(events_->device);
  AUTOTP_CUDA_CHECK(cudaEventRecord(events_->at(index), cudaStreamLegacy));
}

void DeviceTimer::wait(int index) {
  AUTOTP_CUDA_CHECK(cudaEventSynchronize(events_->at(index)));
}

double DeviceTimer::elapsed_ms(int from, int to) const {
  float ms = 0.0f;
  AUTOTP_CUDA_CHECK(cudaEventElapsedTime(&ms, events_->at(from), events_->at(to)));
  return static_cast<double>(ms);
}

#else

struct DeviceTimer::Events {};

DeviceTimer::DeviceTimer(int, int) {
  AUTOTP_FAIL("DeviceTimer times CUDA work: this autotp was built without the CUDA backend");
}
void DeviceTimer::mark(int) {}
void DeviceTimer::wait(int) {}
double DeviceTimer::elapsed_ms(int, int) const {
  return 0.0;
}

#endif

DeviceTimer::~DeviceTimer() = default;

}  // namespace autotp
