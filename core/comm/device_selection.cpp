// Device and backend selection from node-local ranks, agreed across the job.
#include "core/comm/device_selection.h"

#include <cstdio>

#include "core/comm/mpi_communicator.h"
#include "core/comm/mpi_session.h"
#include "core/comm/nccl_communicator.h"

namespace autotp {

NodeInfo node_local_info(MPI_Comm comm) {
  int rank = 0;
  AUTOTP_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MPI_Comm node = MPI_COMM_NULL;
  AUTOTP_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
  NodeInfo info;
  const int rank_rc = MPI_Comm_rank(node, &info.local_rank);
  const int size_rc = MPI_Comm_size(node, &info.local_size);
  MPI_Comm_free(&node);
  AUTOTP_MPI_CHECK(rank_rc);
  AUTOTP_MPI_CHECK(size_rc);
  return info;
}

DevicePlan plan_devices(int local_rank, int local_size, int device_count) {
  AUTOTP_CHECK(local_size >= 1 && local_rank >= 0 && local_rank < local_size,
               "plan_devices: node-local rank {} of {} is not valid", local_rank, local_size);
  AUTOTP_CHECK(device_count >= 0, "plan_devices: device count {} is negative", device_count);
  DevicePlan plan;
  if (device_count == 0) return plan;  // CPU, MPI
  plan.device = Device::cuda(local_rank % device_count);
  if (local_size > device_count) {
    plan.shares_gpu = true;
    plan.notice = fmt::format(
        "{} ranks on this node share {} GPU{}: rank {} uses {}; collectives go through MPI, "
        "staged in host memory (NCCL needs one GPU per rank)",
        local_size, device_count, device_count == 1 ? "" : "s", local_rank, plan.device.str());
    return plan;
  }
  plan.backend = nccl_available() ? CommBackend::Nccl : CommBackend::Mpi;
  return plan;
}

DevicePlan choose_devices(MPI_Comm comm) {
  const NodeInfo node = node_local_info(comm);
  DevicePlan plan = plan_devices(node.local_rank, node.local_size, cuda_device_count());
  int needs_mpi = plan.backend == CommBackend::Mpi ? 1 : 0;
  int any_needs_mpi = 0;
  AUTOTP_MPI_CHECK(MPI_Allreduce(&needs_mpi, &any_needs_mpi, 1, MPI_INT, MPI_MAX, comm));
  int shares = plan.shares_gpu ? 1 : 0, any_shares = 0;
  AUTOTP_MPI_CHECK(MPI_Allreduce(&shares, &any_shares, 1, MPI_INT, MPI_MAX, comm));
  if (any_needs_mpi && plan.backend == CommBackend::Nccl) {
    plan.backend = CommBackend::Mpi;
    plan.notice =
        "another rank cannot use NCCL (it shares a GPU or has none), so every rank "
        "uses MPI, staged in host memory";
  }
  int rank = 0;
  AUTOTP_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  if (rank == 0 && any_shares) {
    std::fprintf(stderr,
                 "autotp: notice: several ranks share a GPU; collectives use MPI staged through "
                 "host memory instead of NCCL (rank 0: %s)\n",
                 plan.notice.empty() ? "its own GPU" : plan.notice.c_str());
  }
  return plan;
}

std::shared_ptr<Communicator> make_world_communicator(const DevicePlan& plan, MPI_Comm comm,
                                                      CommOptions options) {
  if (plan.backend == CommBackend::Nccl) {
    return make_nccl_communicator(comm, plan.device.index, "world", options);
  }
  return std::make_shared<MpiCommunicator>(comm, "world", options);
}

}  // namespace autotp
