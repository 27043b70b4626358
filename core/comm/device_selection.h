// Which GPU each rank uses (by node-local rank) and which communicator backend the job uses:
// NCCL when every rank has its own GPU, else MPI (ranks sharing a GPU stage through host).
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "core/comm/communicator.h"
#include "core/device.h"

namespace autotp {

struct NodeInfo {
  int local_rank = 0;  // this rank's index among the ranks on its node
  int local_size = 1;  // ranks on this node
};

// Collective over `comm`: groups its ranks by shared-memory node (MPI_Comm_split_type).
NodeInfo node_local_info(MPI_Comm comm = MPI_COMM_WORLD);

enum class CommBackend { Mpi, Nccl };

struct DevicePlan {
  Device device;  // cpu, or cuda:(local_rank % device_count)
  CommBackend backend = CommBackend::Mpi;
  bool shares_gpu = false;  // more ranks than GPUs on this rank's node
  std::string notice;       // why the MPI path was chosen although GPUs exist
};

// Arithmetic only: one rank's plan from its node-local rank, the ranks on its node and the
// GPUs it sees. No GPU: the CPU and MPI. More ranks than GPUs: GPUs are shared round-robin
// and the MPI path is used (NCCL needs one GPU per rank), with a notice. Else NCCL.
DevicePlan plan_devices(int local_rank, int local_size, int device_count);

// Collective over `comm`: plan_devices for every rank with the GPUs this process sees, then
// agree: if any rank must use MPI, every rank does (an NCCL group needs them all). The
// notice, if any, is printed once (world rank 0) to stderr. Decided before NCCL starts.
DevicePlan choose_devices(MPI_Comm comm = MPI_COMM_WORLD);

// The world communicator for `plan`: NCCL on plan.device, or MPI. Collective over `comm`.
std::shared_ptr<Communicator> make_world_communicator(const DevicePlan& plan,
                                                      MPI_Comm comm = MPI_COMM_WORLD,
                                                      CommOptions options = {});

}  // namespace autotp
