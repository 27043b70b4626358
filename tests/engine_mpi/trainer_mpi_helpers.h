// Shared pieces of the trainer MPI tests: the world communicator, a directory every rank
// names the same, running a Trainer for N steps, and comparing two runs' step records.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/comm/mpi_communicator.h"
#include "engine/trainer.h"

namespace autotp::trainer_mpi_test {

inline std::shared_ptr<Communicator> world() {
  static std::shared_ptr<Communicator> w = std::make_shared<MpiCommunicator>(MPI_COMM_WORLD);
  return w;
}

// A directory every rank names the same (rank 0's pid): $TMP/autotp_test_<prefix>_<name>_<pid>,
// created by rank 0 and removed at the end.
class SharedDir {
 public:
  SharedDir(const std::string& prefix, const std::string& name) {
    const long pid = static_cast<long>(getpid());
    std::vector<uint8_t> mine(sizeof pid);
    std::memcpy(mine.data(), &pid, sizeof pid);
    long root_pid = 0;
    std::memcpy(&root_pid, world()->exchange_bytes(mine)[0].data(), sizeof root_pid);
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("autotp_test_{}_{}_{}", prefix, name, root_pid);
    if (world()->rank() == 0) {
      std::filesystem::remove_all(path_);
      std::filesystem::create_directories(path_);
    }
    world()->barrier();
  }
  ~SharedDir() {
    world()->barrier();
    if (world()->rank() == 0) std::filesystem::remove_all(path_);
  }
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;
  std::string sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// `steps` optimizer steps; the trainer's whole history.
inline std::vector<StepRecord> train(Trainer& t, int64_t steps) {
  for (int64_t i = 0; i < steps; ++i)
    t.step();
  return t.history();
}

// Losses and gradient norms within `rtol` relative, token counts equal, step by step.
inline void expect_trajectories_close(const std::vector<StepRecord>& got,
                                      const std::vector<StepRecord>& want, double rtol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i].loss, want[i].loss, rtol * std::abs(want[i].loss)) << "step " << i + 1;
    EXPECT_NEAR(got[i].grad_norm, want[i].grad_norm, rtol * want[i].grad_norm) << "step " << i + 1;
    EXPECT_EQ(got[i].tokens, want[i].tokens) << "step " << i + 1;
  }
}

}  // namespace autotp::trainer_mpi_test
