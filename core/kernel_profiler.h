// KernelProfiler: the GPU time of every kernel, memcpy and memset that runs while it records,
// summed by name, from CUPTI's activity records (the device's own timestamps, the way Nsight
// Systems reads them; no synchronization is added between kernels). `autotp bench --kernels`
// prints the table; library users can wrap any region of their own. One profiler may record
// at a time (CUPTI's activity buffers are process-wide). CPU-only builds throw on construction.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace autotp {

struct KernelTime {
  std::string name;  // demangled kernel name, or "[memcpy HtoD]", "[memset]", ...
  int64_t calls = 0;
  double total_ms = 0.0;
};

class KernelProfiler {
 public:
  KernelProfiler();  // starts recording
  ~KernelProfiler();
  KernelProfiler(const KernelProfiler&) = delete;
  KernelProfiler& operator=(const KernelProfiler&) = delete;

  // Synchronizes the devices, stops recording and returns the times by name, longest total
  // first. Once only.
  std::vector<KernelTime> stop();

 private:
  bool recording_ = false;
};

}  // namespace autotp
