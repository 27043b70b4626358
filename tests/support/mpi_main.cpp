// GoogleTest main for MPI test executables: starts the MPI session, prints the normal report
// on rank 0 only and each other rank's failures prefixed "[rank R]", and exits non-zero on
// every rank when any rank failed. Under ctest, AUTOTP_EXPECTED_WORLD_SIZE must equal the
// world size.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/comm/mpi_session.h"

namespace {

// Reports only failures, each line prefixed with the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::printf("[rank %d] %s:%d: Failure\n%s\n", rank_,
                result.file_name() ? result.file_name() : "?", result.line_number(),
                result.message());
    std::fflush(stdout);
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::printf("[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(), info.name());
      std::fflush(stdout);
    }
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  autotp::MpiSession session(&argc, &argv);
  // ctest names the rank count it launched: a mismatch (e.g. an mpirun of another MPI that
  // starts N one-rank worlds) would let every "N ranks equal one process" test compare one
  // process with itself.
  if (const char* expected = std::getenv("AUTOTP_EXPECTED_WORLD_SIZE")) {
    if (std::to_string(session.world_size()) != expected) {
      std::printf("[rank %d] world size %d, but the test was launched for %s ranks\n",
                  session.world_rank(), session.world_size(), expected);
      return 1;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (session.world_rank() != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(session.world_rank()));
  }
  const int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  AUTOTP_MPI_CHECK(MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  if (any_failed && session.world_rank() == 0 && !failed) {
    std::printf("Another rank failed (see its [rank R] lines above).\n");
  }
  return any_failed;
}
