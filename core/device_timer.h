// DeviceTimer: marks recorded in a CUDA device's queue of work (the legacy default stream, where
// every op launches) and timed by the GPU itself (cudaEvent), so a benchmark can split a step
// into phases without synchronizing between them: the host keeps queueing work ahead of the
// GPU, as in training. CPU-only builds throw on construction.
#pragma once

#include <memory>

namespace autotp {

class DeviceTimer {
 public:
  // `marks` timing events on `device`.
  DeviceTimer(int device, int marks);
  ~DeviceTimer();
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;

  // Records mark `index` after the work queued so far on the timer's device (whichever device
  // is current).
  void mark(int index);
  // Blocks the host until the GPU has passed mark `index`.
  void wait(int index);
  // GPU time between two marks that the GPU has passed (wait for the later one first).
  double elapsed_ms(int from, int to) const;

 private:
  struct Events;
  std::unique_ptr<Events> events_;
};

}  // namespace autotp
