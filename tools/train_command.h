// `autotp train CONFIG.yaml [--set key.path=value ...] [--out DIR] [--resume [DIR]]`: parses
// the arguments, loads the config and runs the Trainer (data-parallel under mpirun).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace autotp::tools {

struct TrainArgs {
  std::string config_path;
  std::vector<std::string> overrides;  // --set, in order
  std::string out_dir;                 // --out; empty: train.out_dir
  bool resume = false;                 // --resume
  // --resume DIR (the next argument unless it starts with '-' or names a .yaml/.yml file);
  // empty: the output directory.
  std::string resume_dir;
};

// Parses the arguments after "train"; bad arguments give one error with the usage line.
TrainArgs parse_train_args(const std::vector<std::string>& args);

// Runs `autotp train`; returns the exit code (errors are thrown).
int run_train(const std::vector<std::string>& args);

extern const char* const kTrainUsage;

}  // namespace autotp::tools
