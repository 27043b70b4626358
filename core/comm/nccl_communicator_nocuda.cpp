// Stand-in for the NCCL backend in builds without CUDA: explains that NCCL needs nvcc.
#include "core/comm/nccl_communicator.h"

namespace autotp {

bool nccl_available() {
  return false;
}

std::shared_ptr<Communicator> make_nccl_communicator(MPI_Comm, int, std::string, CommOptions) {
  AUTOTP_FAIL(
      "the NCCL communicator needs autotp built with the CUDA backend (nvcc was not found or "
      "AUTOTP_ENABLE_CUDA=OFF); use MpiCommunicator");
}

}  // namespace autotp
