// MpiCommunicator: nonblocking MPI collectives on flat buffers, host staging of CUDA tensors,
// 16-bit float user ops, Avg as a sum then a division, and the timed wait.
#include "core/comm/mpi_communicator.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <thread>

#include "core/autograd/grad_mode.h"
#include "core/comm/mpi_session.h"
#include "core/ops/elementwise.h"
#include "core/storage.h"

namespace autotp {

namespace {

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F64:
      return MPI_DOUBLE;
    case DType::I32:
      return MPI_INT32_T;
    case DType::I64:
      return MPI_INT64_T;
    case DType::BF16:
    case DType::F16:
      return MPI_UINT16_T;  // with the user ops below for reductions
  }
  AUTOTP_ASSERT(false, "unknown dtype");
}

// MPI_User_function for 16-bit floats: combine in f32, round once.
template <typename Half, bool kMax>
void half_reduce(void* in, void* inout, int* len, MPI_Datatype*) {
  const Half* a = static_cast<const Half*>(in);
  Half* b = static_cast<Half*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = static_cast<float>(a[i]), y = static_cast<float>(b[i]);
    b[i] = Half(kMax ? std::max(x, y) : x + y);
  }
}

int to_int_count(int64_t n, const std::string& what) {
  AUTOTP_CHECK(n >= 0 && n <= INT_MAX, "{}: {} elements exceed MPI's int count limit", what, n);
  return static_cast<int>(n);
}

// The host tensor MPI reads and writes: `t` itself on the CPU, else a host copy.
Tensor host_view(const Tensor& t) {
  return t.device().is_cpu() ? t : t.to(Device::cpu());
}

// After completion: copies the host staging buffer back into the (contiguous, flat) device
// buffer, byte for byte.
void copy_back(WorkHandle& work, const Tensor& device_tensor, const Tensor& host) {
  if (device_tensor.device().is_cpu()) return;
  AUTOTP_ASSERT(device_tensor.is_contiguous() && host.is_contiguous() &&
                    device_tensor.numel() == host.numel() && device_tensor.dtype() == host.dtype(),
                "staging buffers of shapes {} and {}", shape_str(device_tensor.shape()),
                shape_str(host.shape()));
  work->then([device_tensor, host] {
    cuda_memory::copy(device_tensor.raw_data(), device_tensor.device(), host.raw_data(),
                      Device::cpu(), static_cast<size_t>(host.numel()) * host.itemsize());
  });
}

// After completion: divides a summed host buffer by the group size (Avg).
void divide_after(WorkHandle& work, const Tensor& host, int size) {
  work->then([host, size] {
    NoGradGuard no_grad;
    const DType compute = host.dtype() == DType::F64 ? DType::F64 : DType::F32;
    host.copy_(ops::div(host.to(compute), static_cast<double>(size)));
  });
}

}  // namespace

int MpiCommunicator::comm_rank(MPI_Comm comm) {
  int rank = 0;
  AUTOTP_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  return rank;
}

int MpiCommunicator::comm_size(MPI_Comm comm) {
  int size = 0;
  AUTOTP_MPI_CHECK(MPI_Comm_size(comm, &size));
  return size;
}

namespace {
MPI_Comm duplicate(MPI_Comm comm) {
  int initialized = 0;
  AUTOTP_MPI_CHECK(MPI_Initialized(&initialized));
  AUTOTP_CHECK(initialized, "MpiCommunicator: MPI is not initialized (create an MpiSession first)");
  MPI_Comm dup = MPI_COMM_NULL;
  AUTOTP_MPI_CHECK(MPI_Comm_dup(comm, &dup));
  return dup;
}
}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, CommOptions options)
    : MpiCommunicator(Adopt{}, duplicate(comm), std::move(name), options) {}

MpiCommunicator::MpiCommunicator(Adopt, MPI_Comm comm, std::string name, CommOptions options)
    : Communicator(comm_rank(comm), comm_size(comm), std::move(name), options), comm_(comm) {
  AUTOTP_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  create_ops();
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  for (auto& row : half_ops_) {
    for (MPI_Op& op : row) {
      if (op != MPI_OP_NULL) MPI_Op_free(&op);
    }
  }
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiCommunicator::create_ops() {
  AUTOTP_MPI_CHECK(MPI_Op_create(&half_reduce<BFloat16, false>, 1, &half_ops_[0][0]));
  AUTOTP_MPI_CHECK(MPI_Op_create(&half_reduce<BFloat16, true>, 1, &half_ops_[0][1]));
  AUTOTP_MPI_CHECK(MPI_Op_create(&half_reduce<Float16, false>, 1, &half_ops_[1][0]));
  AUTOTP_MPI_CHECK(MPI_Op_create(&half_reduce<Float16, true>, 1, &half_ops_[1][1]));
}

MPI_Op MpiCommunicator::mpi_op(ReduceOp op, DType dtype) const {
  const bool is_max = op == ReduceOp::Max;  // Avg is a sum followed by a division
  if (dtype == DType::BF16) return half_ops_[0][is_max ? 1 : 0];
  if (dtype == DType::F16) return half_ops_[1][is_max ? 1 : 0];
  return is_max ? MPI_MAX : MPI_SUM;
}

void MpiCommunicator::wait_requests(std::vector<MPI_Request>& requests, const std::string& what,
                                    double timeout_seconds) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  for (int64_t polls = 0;; ++polls) {
    int done = 0;
    AUTOTP_MPI_CHECK(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done,
                                 MPI_STATUSES_IGNORE));
    if (done) return;
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (timeout_seconds > 0 && waited > timeout_seconds) {
      abort_job(fmt::format(
          "{} did not complete within {} s (a peer rank may have died or hung, or issued a "
          "different collective); aborting the job",
          what, timeout_seconds));
    }
    // Poll eagerly at first, then back off so oversubscribed ranks leave the CPU to peers.
    if (polls < 200) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(polls < 2000 ? 20 : 200));
    }
  }
}

WorkHandle MpiCommunicator::make_work(std::vector<MPI_Request> requests, std::string what,
                                      std::shared_ptr<void> keep_alive) const {
  auto reqs = std::make_shared<std::vector<MPI_Request>>(std::move(requests));
  const std::string description = what;
  return std::make_shared<Work>(
      description,
      [reqs, what = std::move(what), keep_alive = std::move(keep_alive),
       timeout = options().timeout_seconds] { wait_requests(*reqs, what, timeout); },
      Tensor());
}

WorkHandle MpiCommunicator::do_all_reduce(const Tensor& buffer, ReduceOp op) {
  const std::string what = where("all_reduce");
  const Tensor host = host_view(buffer);
  const int count = to_int_count(host.numel(), what);
  std::vector<MPI_Request> req(1);
  AUTOTP_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, host.raw_data(), count, mpi_type(host.dtype()),
                                  mpi_op(op, host.dtype()), comm_, req.data()));
  WorkHandle work = make_work(std::move(req), what, std::make_shared<Tensor>(host));
  if (op == ReduceOp::Avg) divide_after(work, host, size());
  copy_back(work, buffer, host);
  return work;
}

WorkHandle MpiCommunicator::do_all_gatherv(const Tensor& send, const Tensor& recv,
                                           const std::vector<int64_t>& counts) {
  const std::string what = where("all_gather");
  const Tensor host_send = host_view(send);
  const Tensor host_recv =
      recv.device().is_cpu() ? recv : Tensor::empty(recv.shape(), recv.dtype());
  auto arrays = std::make_shared<std::vector<int>>(2 * counts.size());  // counts, then displs
  int64_t displ = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    (*arrays)[r] = to_int_count(counts[r], what);
    (*arrays)[counts.size() + r] = to_int_count(displ, what);
    displ += counts[r];
  }
  const MPI_Datatype type = mpi_type(send.dtype());
  std::vector<MPI_Request> req(1);
  AUTOTP_MPI_CHECK(MPI_Iallgatherv(host_send.raw_data(), to_int_count(host_send.numel(), what),
                                   type, host_recv.raw_data(), arrays->data(),
                                   arrays->data() + counts.size(), type, comm_, req.data()));
  struct Keep {
    Tensor send, recv;
    std::shared_ptr<std::vector<int>> arrays;
  };
  WorkHandle work =
      make_work(std::move(req), what, std::make_shared<Keep>(Keep{host_send, host_recv, arrays}));
  copy_back(work, recv, host_recv);
  return work;
}

WorkHandle MpiCommunicator::do_reduce_scatterv(const Tensor& send, const Tensor& recv,
                                               const std::vector<int64_t>& counts, ReduceOp op) {
  const std::string what = where("reduce_scatter");
  const Tensor host_send = host_view(send);
  const Tensor host_recv =
      recv.device().is_cpu() ? recv : Tensor::empty(recv.shape(), recv.dtype());
  auto recv_counts = std::make_shared<std::vector<int>>(counts.size());
  for (size_t r = 0; r < counts.size(); ++r)
    (*recv_counts)[r] = to_int_count(counts[r], what);
  to_int_count(host_send.numel(), what);
  std::vector<MPI_Request> req(1);
  AUTOTP_MPI_CHECK(MPI_Ireduce_scatter(host_send.raw_data(), host_recv.raw_data(),
                                       recv_counts->data(), mpi_type(send.dtype()),
                                       mpi_op(op, send.dtype()), comm_, req.data()));
  struct Keep {
    Tensor send, recv;
    std::shared_ptr<std::vector<int>> counts;
  };
  WorkHandle work = make_work(std::move(req), what,
                              std::make_shared<Keep>(Keep{host_send, host_recv, recv_counts}));
  if (op == ReduceOp::Avg) divide_after(work, host_recv, size());
  copy_back(work, recv, host_recv);
  return work;
}

WorkHandle MpiCommunicator::do_broadcast(const Tensor& buffer, int root) {
  const std::string what = where(fmt::format("broadcast from rank {}", root));
  const Tensor host = host_view(buffer);
  std::vector<MPI_Request> req(1);
  AUTOTP_MPI_CHECK(MPI_Ibcast(host.raw_data(), to_int_count(host.numel(), what),
                              mpi_type(host.dtype()), root, comm_, req.data()));
  WorkHandle work = make_work(std::move(req), what, std::make_shared<Tensor>(host));
  copy_back(work, buffer, host);
  return work;
}

WorkHandle MpiCommunicator::do_barrier() {
  std::vector<MPI_Request> req(1);
  AUTOTP_MPI_CHECK(MPI_Ibarrier(comm_, req.data()));
  return make_work(std::move(req), where("barrier"), nullptr);
}

std::vector<std::vector<uint8_t>> MpiCommunicator::do_exchange_bytes(
    const std::vector<uint8_t>& mine) {
  const std::string what = where("control exchange");
  std::vector<int> lengths(static_cast<size_t>(size()));
  int my_length = to_int_count(static_cast<int64_t>(mine.size()), what);
  std::vector<MPI_Request> req(1);
  AUTOTP_MPI_CHECK(
      MPI_Iallgather(&my_length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm_, req.data()));
  wait_requests(req, what, options().timeout_seconds);
  std::vector<int> displs(lengths.size());
  int total = 0;
  for (size_t r = 0; r < lengths.size(); ++r) {
    displs[r] = total;
    total += lengths[r];
  }
  std::vector<uint8_t> all(static_cast<size_t>(std::max(total, 1)));
  AUTOTP_MPI_CHECK(MPI_Iallgatherv(mine.data(), my_length, MPI_BYTE, all.data(), lengths.data(),
                                   displs.data(), MPI_BYTE, comm_, req.data()));
  wait_requests(req, what, options().timeout_seconds);
  std::vector<std::vector<uint8_t>> out(lengths.size());
  for (size_t r = 0; r < lengths.size(); ++r) {
    out[r].assign(all.begin() + displs[r], all.begin() + displs[r] + lengths[r]);
  }
  return out;
}

std::shared_ptr<Communicator> MpiCommunicator::do_split(int color, int key,
                                                        const std::string& name) {
  MPI_Comm sub = MPI_COMM_NULL;
  AUTOTP_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
  return std::shared_ptr<Communicator>(new MpiCommunicator(Adopt{}, sub, name, options()));
}

}  // namespace autotp
