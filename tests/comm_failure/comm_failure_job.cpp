// An MPI job that fails on purpose, for the failure-mode tests: `rank_dies` ends rank 1 with
// exit code 3 while the others wait in an all_reduce; `collective_never_completes` has rank 1
// skip an all_reduce that the others wait on (2 s timeout). Either must end the whole job.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/comm/mpi_communicator.h"
#include "core/comm/mpi_session.h"

int main(int argc, char** argv) {
  autotp::MpiSession session(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "rank_dies" && mode != "collective_never_completes") {
    std::fprintf(stderr, "usage: comm_failure_job rank_dies|collective_never_completes\n");
    return 2;
  }
  autotp::MpiCommunicator world(MPI_COMM_WORLD, "world", autotp::CommOptions{2.0});
  world.barrier();
  const autotp::Tensor buffer = autotp::Tensor::ones({4});
  if (world.rank() == 1) {
    if (mode == "rank_dies") std::_Exit(3);
    // Never joins the collective; stays alive past the others' timeout.
    std::this_thread::sleep_for(std::chrono::seconds(30));
    return 0;
  }
  world.all_reduce(buffer);
  std::printf("rank %d: the all_reduce completed, which it must not\n", world.rank());
  return 0;
}
