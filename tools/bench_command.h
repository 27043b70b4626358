// `autotp bench`: training throughput on synthetic tokens (tokens/s, step-time split, model
// FLOPs per token, MFU against the device's dense bf16 peak, peak memory), as text and JSON.
#pragma once

#include <string>
#include <vector>

namespace autotp::tools {

extern const char* const kBenchUsage;

int run_bench(const std::vector<std::string>& args);

}  // namespace autotp::tools
