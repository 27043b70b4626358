// Storage allocation on CPU (aligned new) and CUDA (through the cuda_memory entry points).
#include "core/storage.h"

#include <new>

#include "core/error.h"

namespace autotp {

namespace {
constexpr size_t kCpuAlignment = 64;
}

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (bytes == 0) return;
  if (device.is_cpu()) {
    data_ = ::operator new(bytes, std::align_val_t(kCpuAlignment), std::nothrow);
    AUTOTP_CHECK(data_ != nullptr, "out of host memory: could not allocate {} bytes", bytes);
  } else {
    data_ = cuda_memory::allocate(bytes, device.index);
  }
}

Storage::~Storage() {
  if (data_ == nullptr) return;
  if (device_.is_cpu()) {
    ::operator delete(data_, std::align_val_t(kCpuAlignment));
  } else {
    cuda_memory::release(data_, device_.index);
  }
}

}  // namespace autotp
