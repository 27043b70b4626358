// MpiCommunicator: the Communicator over an MPI communicator, using nonblocking MPI
// collectives. CPU tensors directly; CUDA tensors staged through host memory.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "core/comm/communicator.h"

namespace autotp {

// Works for every dtype (bf16/f16 reductions use MPI user ops that add in f32 and round
// once per step). Waiting polls MPI_Testall; past options.timeout_seconds it aborts the job.
// Progress of an async collective happens inside MPI calls (mostly at wait()), so overlap
// with computation is limited on this backend.
class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `comm` (the caller's communicator stays untouched and its traffic separate).
  // Collective over `comm`. MPI must be initialized (see MpiSession).
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD, std::string name = "world",
                           CommOptions options = {});
  ~MpiCommunicator() override;

  std::string backend() const override { return "mpi"; }
  // The duplicated MPI communicator this object owns.
  MPI_Comm mpi_comm() const { return comm_; }

 protected:
  WorkHandle do_all_reduce(const Tensor& buffer, ReduceOp op) override;
  WorkHandle do_all_gatherv(const Tensor& send, const Tensor& recv,
                            const std::vector<int64_t>& counts) override;
  WorkHandle do_reduce_scatterv(const Tensor& send, const Tensor& recv,
                                const std::vector<int64_t>& counts, ReduceOp op) override;
  WorkHandle do_broadcast(const Tensor& buffer, int root) override;
  WorkHandle do_barrier() override;
  std::vector<std::vector<uint8_t>> do_exchange_bytes(const std::vector<uint8_t>& mine) override;
  std::shared_ptr<Communicator> do_split(int color, int key, const std::string& name) override;

 private:
  struct Adopt {};
  // Takes ownership of `comm` (already a private communicator).
  MpiCommunicator(Adopt, MPI_Comm comm, std::string name, CommOptions options);
  static int comm_rank(MPI_Comm comm);
  static int comm_size(MPI_Comm comm);
  void create_ops();
  MPI_Op mpi_op(ReduceOp op, DType dtype) const;
  // Blocks until `requests` complete; aborts the job after the timeout, naming `what`.
  static void wait_requests(std::vector<MPI_Request>& requests, const std::string& what,
                            double timeout_seconds);
  // A Work over `requests` (kept alive with `keep_alive`) named `what`.
  WorkHandle make_work(std::vector<MPI_Request> requests, std::string what,
                       std::shared_ptr<void> keep_alive) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  // User ops for 16-bit floats: {bf16, f16} x {sum, max}.
  MPI_Op half_ops_[2][2] = {{MPI_OP_NULL, MPI_OP_NULL}, {MPI_OP_NULL, MPI_OP_NULL}};
};

}  // namespace autotp
