// `autotp eval CONFIG.yaml [--model DIR] [--data FILE] [--batches N] [--set key=value ...]`:
// mean loss and perplexity of a model (HF directory, training checkpoint or run directory).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace autotp::tools {

struct EvalArgs {
  std::string config_path;
  std::vector<std::string> overrides;  // --set, in order
  std::string model_dir;               // --model; empty: the config's model section
  std::string data_path;               // --data; empty: the config's data section
  int64_t batches = 10;                // --batches
};

EvalArgs parse_eval_args(const std::vector<std::string>& args);

// Runs `autotp eval`: prints "loss L | perplexity P (...)" and then one JSON line
// {"loss": L, "perplexity": P, "batches": N, "tokens": T, "model": ..., "data": ...}.
int run_eval(const std::vector<std::string>& args);

extern const char* const kEvalUsage;

}  // namespace autotp::tools
