// KernelProfiler in a build without CUDA: there is nothing to profile.
#include "core/error.h"
#include "core/kernel_profiler.h"

namespace autotp {

KernelProfiler::KernelProfiler() {
  AUTOTP_CHECK(false, "the kernel profiler needs a build with CUDA (this one has none)");
}

KernelProfiler::~KernelProfiler() = default;

std::vector<KernelTime> KernelProfiler::stop() {
  return {};
}

}  // namespace autotp
