// Device checks with one clear error, the CUDA allocator's peak memory, and host f32 copies
// of master weights.
#include "engine/training_device.h"

#include <map>

#include "core/autograd/grad_mode.h"
#include "core/cuda_allocator.h"
#include "core/error.h"
#include "models/registry.h"

namespace autotp {

std::string cuda_unavailable_reason() {
  if (cuda_available()) return "";
#ifdef AUTOTP_WITH_CUDA
  return "no CUDA device is visible to this process (check the NVIDIA driver, nvidia-smi and "
         "CUDA_VISIBLE_DEVICES)";
#else
  return "this autotp was built without the CUDA backend (nvcc was not found or "
         "AUTOTP_ENABLE_CUDA=OFF)";
#endif
}

void check_training_device(Device device, const std::string& requested_as) {
  if (device.is_cpu()) return;
  AUTOTP_CHECK(cuda_available(), "{} needs a GPU, but {}; train on the CPU with --device cpu",
               requested_as, cuda_unavailable_reason());
  AUTOTP_CHECK(device.index >= 0 && device.index < cuda_device_count(),
               "{}: {} is not a visible CUDA device (this process sees {} device{})", requested_as,
               device.str(), cuda_device_count(), cuda_device_count() == 1 ? "" : "s");
}

double device_peak_memory_gib(Device device) {
  if (!device.is_cuda()) return 0.0;
  const size_t peak = CudaCachingAllocator::for_device(device.index).stats().peak_bytes;
  return static_cast<double>(peak) / static_cast<double>(1LL << 30);
}

void reset_device_peak_memory(Device device) {
  if (device.is_cuda()) CudaCachingAllocator::for_device(device.index).reset_peak();
}

std::shared_ptr<CausalLM> host_f32_model_with(const CausalLM& model, const NamedTensors& weights) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, w] : weights)
    by_name.emplace(name, &w);
  std::shared_ptr<CausalLM> host = create_model_uninitialized(model.config(), DType::F32);
  const NamedTensors params = host->named_parameters();
  AUTOTP_CHECK(params.size() == weights.size(),
               "{} weights given for a model with {} parameters (a sharded model cannot be "
               "copied whole)",
               weights.size(), params.size());
  NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    const auto it = by_name.find(name);
    AUTOTP_CHECK(it != by_name.end(), "no weight named '{}' for the host copy of the model", name);
    AUTOTP_CHECK(it->second->shape() == p.shape(), "weight '{}' has shape {}, the model needs {}",
                 name, shape_str(it->second->shape()), shape_str(p.shape()));
    p.copy_(*it->second);
  }
  return host;
}

}  // namespace autotp
