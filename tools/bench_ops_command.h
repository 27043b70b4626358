// `autotp bench-ops`: the training step's main kernels one at a time at a config's shapes
// (attention, a GEMM, RMSNorm, SwiGLU, RoPE, cross-entropy, AdamW), forward and backward, with
// achieved TFLOP/s or GB/s against the device's peak, as text and JSON.
#pragma once

#include <string>
#include <vector>

namespace autotp::tools {

extern const char* const kBenchOpsUsage;

int run_bench_ops(const std::vector<std::string>& args);

}  // namespace autotp::tools
