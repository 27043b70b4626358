// Where a tensor lives: the CPU or one CUDA device.
#pragma once

#include <cstdint>
#include <string>

namespace autotp {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;  // CUDA device ordinal; 0 for the CPU

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device&) const = default;
  // "cpu" or "cuda:0"
  std::string str() const {
    return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
  }
};

// True when autotp was built with the CUDA backend and at least one GPU is visible.
bool cuda_available();
// Number of visible CUDA devices (0 when built without CUDA).
int cuda_device_count();
// The device's marketing name ("NVIDIA H200"); an error when it is not visible.
std::string cuda_device_name(int device);
// Makes `device` the calling thread's current CUDA device: kernels launch there (on its
// default stream), so a process training on cuda:1 calls this before its first op. An error
// when the device is not visible or the build has no CUDA backend.
void cuda_set_current_device(int device);

}  // namespace autotp
