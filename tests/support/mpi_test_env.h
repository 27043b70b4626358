// Helpers for MPI tests: the world communicator with the test timeout, and a check that a
// statement throws autotp::Error whose message contains given words (on every rank).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/comm/mpi_communicator.h"

namespace autotp::testing {

// Seconds a test collective may take before the job aborts (well under ctest's timeout).
inline constexpr double kTestCommTimeoutSeconds = 60.0;

// A fresh duplicate of MPI_COMM_WORLD named "world".
inline std::shared_ptr<MpiCommunicator> test_world() {
  return std::make_shared<MpiCommunicator>(MPI_COMM_WORLD, "world",
                                           CommOptions{kTestCommTimeoutSeconds});
}

}  // namespace autotp::testing

// EXPECT_ERROR_CONTAINING(statement, {"word", ...}): `statement` throws autotp::Error and
// its message contains every word.
#define EXPECT_ERROR_CONTAINING(statement, ...)                                      \
  do {                                                                               \
    bool autotp_threw_ = false;                                                      \
    try {                                                                            \
      statement;                                                                     \
    } catch (const ::autotp::Error& e) {                                             \
      autotp_threw_ = true;                                                          \
      const std::string autotp_msg_ = e.what();                                      \
      for (const std::string& autotp_word_ : std::vector<std::string> __VA_ARGS__) { \
        EXPECT_NE(autotp_msg_.find(autotp_word_), std::string::npos)                 \
            << "message lacks '" << autotp_word_ << "': " << autotp_msg_;            \
      }                                                                              \
    }                                                                                \
    EXPECT_TRUE(autotp_threw_) << #statement " did not throw autotp::Error";         \
  } while (0)
