// Stand-ins for the CUDA memory entry points in builds without the CUDA backend:
// every call explains that CUDA tensors need a build with nvcc.
#include "core/cuda_allocator.h"
#include "core/error.h"
#include "core/pinned_staging_pool.h"
#include "core/storage.h"

namespace autotp {

namespace {
[[noreturn]] void no_cuda() {
  AUTOTP_FAIL(
      "this autotp was built without the CUDA backend (nvcc was not found or "
      "AUTOTP_ENABLE_CUDA=OFF), so CUDA tensors are unavailable");
}
}  // namespace

bool cuda_available() {
  return false;
}
int cuda_device_count() {
  return 0;
}
std::string cuda_device_name(int) {
  no_cuda();
}
void cuda_set_current_device(int) {
  no_cuda();
}
std::unique_ptr<RawDeviceMemory> make_cuda_device_memory(int) {
  no_cuda();
}
PinnedStagingPool::Stats cuda_staging_stats(int) {
  no_cuda();
}

namespace cuda_memory {
void* allocate(size_t, int) {
  no_cuda();
}
void release(void*, int) {}
void copy(void*, Device, const void*, Device, size_t) {
  no_cuda();
}
void memset_zero(void*, size_t, int) {
  no_cuda();
}
void synchronize(int) {
  no_cuda();
}
}  // namespace cuda_memory

}  // namespace autotp
