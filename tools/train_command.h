// `autotp train CONFIG.yaml [--set key.path=value ...] [--out DIR] [--resume [DIR]]
// [--device cpu|cuda]`: parses the arguments, picks the device, loads the config and runs the
// Trainer (data- and tensor-parallel under mpirun).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/device.h"
#include "engine/trainer.h"

namespace autotp::tools {

struct TrainArgs {
  std::string config_path;
  std::vector<std::string> overrides;  // --set, in order
  std::string out_dir;                 // --out; empty: train.out_dir
  bool resume = false;                 // --resume
  bool overwrite = false;              // --overwrite: replace an earlier run in the out dir
  // --resume DIR (the next argument unless it starts with '-' or names a .yaml/.yml file);
  // empty: the output directory.
  std::string resume_dir;
  // --device cpu|cuda; empty: cuda when a GPU is available, else cpu (as `autotp bench`).
  std::string device;
};

// The device one process trains on: --device (or its default) and, for cuda, the GPU of the
// process's node-local rank (round-robin when ranks outnumber GPUs; several ranks may share
// one, their collectives staged through host memory). `--device cuda` without a usable GPU
// is an error naming why.
Device train_device(const std::string& requested, int local_rank);

// Parses the arguments after "train"; bad arguments give one error with the usage line.
TrainArgs parse_train_args(const std::vector<std::string>& args);

// The Trainer's options from the arguments: out dir (for `--resume DIR` without --out: DIR,
// or for a checkpoint DIR = RUN/checkpoints/step-N, RUN), resume, overwrite.
TrainerOptions train_options(const TrainArgs& a);

// Runs `autotp train`; returns the exit code (errors are thrown).
int run_train(const std::vector<std::string>& args);

extern const char* const kTrainUsage;

}  // namespace autotp::tools
