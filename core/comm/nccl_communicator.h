// NCCL communicator factory: the Communicator for CUDA tensors on distinct GPUs, bootstrapped
// over MPI. The class itself lives in nccl_communicator.cpp (no NCCL types in headers).
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "core/comm/communicator.h"

namespace autotp {

// True when this build has the NCCL backend (built with CUDA).
bool nccl_available();

// Collective over `comm`: rank 0 creates the NCCL unique id, MPI broadcasts it, and every
// rank joins with ncclCommInitRank on CUDA device `device` (one distinct GPU per rank; see
// plan_devices). Collectives run on the communicator's own stream, ordered after the work
// already queued on the legacy default stream. wait() polls the completion event and
// ncclCommGetAsyncError: an asynchronous NCCL error aborts the NCCL communicator and throws;
// a collective still running after options.timeout_seconds aborts the job with a message.
// CPU tensors are accepted too: they are copied to the device, reduced there and copied back
// when the work is waited (for small bookkeeping values, so one communicator serves a
// trainer). Barriers and byte exchanges run over the MPI bootstrap. Throws in builds without
// CUDA.
std::shared_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, int device,
                                                     std::string name = "world",
                                                     CommOptions options = {});

}  // namespace autotp
