// Helpers of the Trainer device tests: temporary output directories, the reference
// trajectory's config (tests/data/trajectory) and quiet TrainerOptions on a device.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/trainer.h"

namespace autotp::testing {

// A fresh directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() /
              fmt::format("autotp_test_trainer_device_{}_{}", name, static_cast<long>(getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline const std::string& trajectory_dir() {
  static const std::string dir = std::string(AUTOTP_TEST_DATA_DIR) + "/trajectory";
  return dir;
}

// The reference trajectory's config (a 2-layer Llama, hidden 32, micro-batches 2 x 16 tokens,
// accumulation 2, clipping 1.5, WarmupLR up to 0.02, 10 steps), writing to `out_dir`, plus
// `extra` overrides.
inline Config trajectory_config(const std::string& out_dir, std::vector<std::string> extra = {}) {
  ConfigLoadOptions options;
  options.overrides = {"model.path=" + trajectory_dir(),
                       "data.path=" + trajectory_dir() + "/tokens.bin", "train.out_dir=" + out_dir};
  options.overrides.insert(options.overrides.end(), extra.begin(), extra.end());
  return load_config_file(trajectory_dir() + "/train.yaml", options);
}

// Silent, no HF export, on `device`.
inline TrainerOptions quiet_on(Device device) {
  TrainerOptions o;
  o.out = nullptr;
  o.export_hf = false;
  o.device = device;
  return o;
}

inline std::vector<StepRecord> train_to_the_end(Trainer& trainer) {
  while (trainer.current_step() < trainer.total_steps())
    trainer.step();
  return trainer.history();
}

}  // namespace autotp::testing
