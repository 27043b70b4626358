// Model FLOP accounting for training throughput (PaLM appendix B / nanoGPT convention), and
// the dense bf16 peaks and memory bandwidths of known devices, for MFU and per-kernel figures.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "models/model_config.h"

namespace autotp::tools {

struct FlopCount {
  int64_t params = 0;                // every parameter
  int64_t non_embedding_params = 0;  // N: params minus an untied input embedding matrix
  double attention_flops_per_token = 0.0;
  double flops_per_token = 0.0;  // 6 N + attention term (forward + backward)
  std::string formula;           // the formula with the numbers filled in
};

// N = the parameters that multiply activations: every parameter but the input embedding
// table, whose lookup is no matmul. A tied embedding is also the lm_head's weight, a matmul of
// 2 V h FLOPs per token, so it counts (once), as nanoGPT counts GPT-2's tied wte.
// Training FLOPs per token = 6 N + 12 L H Q T (L layers, H query heads, Q head dim, T seq
// len): the matmuls' forward + backward, plus the attention scores and weighted sum
// (counted for the full T x T square, as PaLM does, not halved for the causal mask).
FlopCount training_flops_per_token(const ModelConfig& config, int64_t params, int64_t seq_len);

// Dense bf16 tensor-core peak in FLOP/s of a device by its name ("NVIDIA H100 80GB HBM3"),
// or nullopt when the device is not in the table.
std::optional<double> dense_bf16_peak_flops(const std::string& device_name);

// Peak memory bandwidth in bytes/s of a device by its name, or nullopt when not in the table.
std::optional<double> memory_bandwidth_bytes_per_s(const std::string& device_name);

}  // namespace autotp::tools
