// The trainer's device: checking that a requested GPU can be used (one clear error naming
// why not), its allocator's peak memory, and host f32 copies of master weights for checkpoints.
#pragma once

#include <memory>
#include <string>

#include "core/device.h"
#include "engine/optimizer.h"
#include "models/causal_lm.h"

namespace autotp {

// Why no CUDA device can be used ("this autotp was built without the CUDA backend ...",
// "no CUDA device is visible ..."); empty when cuda_available().
std::string cuda_unavailable_reason();

// Throws an Error when `device` is a CUDA device this process cannot use: "<requested_as>
// needs a GPU, but <cuda_unavailable_reason()>; ..." (requested_as: e.g. "train: --device
// cuda"), or an index beyond the visible devices. The CPU always passes.
void check_training_device(Device device, const std::string& requested_as);

// The caching allocator's peak bytes on a CUDA device since the last reset, in GiB (0 for
// the CPU), and its reset (peak = the bytes in use now).
double device_peak_memory_gib(Device device);
void reset_device_peak_memory(Device device);

// A new f32 model on the host with `model`'s config and `weights` (named as its parameters,
// any dtype/device, every parameter required; e.g. f32 master weights on a GPU), for a
// checkpoint that must keep the exact f32 values behind a bf16 model.
std::shared_ptr<CausalLM> host_f32_model_with(const CausalLM& model, const NamedTensors& weights);

}  // namespace autotp
