// NcclCommunicator: collectives on CUDA tensors with NCCL on the communicator's own stream,
// bootstrapped over MPI; waiting polls the completion event, NCCL's async error and a timeout.
// Compiled by g++ in CUDA builds only (nccl_communicator_nocuda.cpp stands in otherwise).
#ifdef AUTOTP_WITH_CUDA
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/comm/mpi_communicator.h"
#include "core/comm/mpi_session.h"
#include "core/comm/nccl_communicator.h"

namespace autotp {

namespace {

[[noreturn]] void throw_cuda(cudaError_t status, const char* call, const char* file, int line) {
  int device = -1;
  cudaGetDevice(&device);
  cudaGetLastError();  // clear a non-sticky error so later calls are not blamed for it
  throw Error(fmt::format("CUDA call {} failed on rank {} (device {}): {} ({}:{})", call,
                          mpi_world_rank(), device, cudaGetErrorString(status), file, line));
}

[[noreturn]] void throw_nccl(ncclResult_t status, const char* call, const char* file, int line) {
  int device = -1;
  cudaGetDevice(&device);
  throw Error(fmt::format("NCCL call {} failed on rank {} (device {}): {} ({}:{})", call,
                          mpi_world_rank(), device, ncclGetErrorString(status), file, line));
}

#define AUTOTP_NCCL_CUDA_CHECK(call)                                                          \
  do {                                                                                        \
    const cudaError_t autotp_status_ = (call);                                                \
    if (autotp_status_ != cudaSuccess) throw_cuda(autotp_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define AUTOTP_NCCL_CHECK(call)                                                               \
  do {                                                                                        \
    const ncclResult_t autotp_status_ = (call);                                               \
    if (autotp_status_ != ncclSuccess) throw_nccl(autotp_status_, #call, __FILE__, __LINE__); \
  } while (0)

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return ncclFloat32;
    case DType::F64:
      return ncclFloat64;
    case DType::BF16:
      return ncclBfloat16;
    case DType::F16:
      return ncclFloat16;
    case DType::I32:
      return ncclInt32;
    case DType::I64:
      return ncclInt64;
  }
  AUTOTP_ASSERT(false, "unknown dtype");
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return ncclSum;
    case ReduceOp::Avg:
      return ncclAvg;
    case ReduceOp::Max:
      return ncclMax;
  }
  AUTOTP_ASSERT(false, "unknown reduce op");
}

// The NCCL communicator and its stream; shared with pending Work so a wait can still poll
// (and abort) after the Communicator object is gone.
struct NcclState {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr;  // recorded on the legacy default stream before each collective
  int device = 0;
  bool aborted = false;

  NcclState() = default;
  NcclState(const NcclState&) = delete;
  NcclState& operator=(const NcclState&) = delete;
  ~NcclState() {
    cudaSetDevice(device);
    if (comm != nullptr && !aborted) ncclCommDestroy(comm);
    if (ready != nullptr) cudaEventDestroy(ready);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
  void abort() {
    if (comm != nullptr && !aborted) ncclCommAbort(comm);
    aborted = true;
  }
};

// A completion event, destroyed with the Work that waits on it.
struct DoneEvent {
  cudaEvent_t event = nullptr;
  DoneEvent() { AUTOTP_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming)); }
  DoneEvent(const DoneEvent&) = delete;
  DoneEvent& operator=(const DoneEvent&) = delete;
  ~DoneEvent() { cudaEventDestroy(event); }
};

void* offset_bytes(const Tensor& t, int64_t elements) {
  return static_cast<char*>(t.raw_data()) + elements * static_cast<int64_t>(t.itemsize());
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<MpiCommunicator> bootstrap, int device, std::string name,
                   CommOptions options)
      : Communicator(bootstrap->rank(), bootstrap->size(), std::move(name), options),
        bootstrap_(std::move(bootstrap)),
        state_(std::make_shared<NcclState>()) {
    state_->device = device;
    AUTOTP_NCCL_CUDA_CHECK(cudaSetDevice(device));
    AUTOTP_NCCL_CUDA_CHECK(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking));
    AUTOTP_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&state_->ready, cudaEventDisableTiming));
    ncclUniqueId id{};
    if (rank() == 0) AUTOTP_NCCL_CHECK(ncclGetUniqueId(&id));
    AUTOTP_MPI_CHECK(
        MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, bootstrap_->mpi_comm()));
    AUTOTP_NCCL_CHECK(ncclCommInitRank(&state_->comm, size(), id, rank()));
  }

  std::string backend() const override { return "nccl"; }

 protected:
  WorkHandle do_all_reduce(const Tensor& buffer, ReduceOp op) override {
    const std::string what = where("all_reduce");
    check_device(buffer, what);
    const Tensor dev = on_device(buffer);
    begin();
    AUTOTP_NCCL_CHECK(ncclAllReduce(dev.raw_data(), dev.raw_data(),
                                    static_cast<size_t>(dev.numel()), nccl_type(dev.dtype()),
                                    nccl_op(op), state_->comm, state_->stream));
    return copied_back(finish(what, std::make_shared<Tensor>(dev)), buffer, dev);
  }

  WorkHandle do_all_gatherv(const Tensor& send, const Tensor& recv,
                            const std::vector<int64_t>& counts) override {
    const std::string what = where("all_gather");
    check_device(send, what);
    check_device(recv, what);
    const ncclDataType_t type = nccl_type(send.dtype());
    const Tensor send_dev = on_device(send), recv_dev = on_device(recv);
    begin();
    if (std::all_of(counts.begin(), counts.end(), [&](int64_t c) { return c == counts[0]; })) {
      AUTOTP_NCCL_CHECK(ncclAllGather(send_dev.raw_data(), recv_dev.raw_data(),
                                      static_cast<size_t>(counts[0]), type, state_->comm,
                                      state_->stream));
    } else {
      // Uneven widths: one broadcast per rank, each into its block of `recv`.
      AUTOTP_NCCL_CHECK(ncclGroupStart());
      int64_t displ = 0;
      for (size_t r = 0; r < counts.size(); ++r) {
        AUTOTP_NCCL_CHECK(ncclBroadcast(send_dev.raw_data(), offset_bytes(recv_dev, displ),
                                        static_cast<size_t>(counts[r]), type, static_cast<int>(r),
                                        state_->comm, state_->stream));
        displ += counts[r];
      }
      AUTOTP_NCCL_CHECK(ncclGroupEnd());
    }
    return copied_back(
        finish(what, std::make_shared<std::pair<Tensor, Tensor>>(send_dev, recv_dev)), recv,
        recv_dev);
  }

  WorkHandle do_reduce_scatterv(const Tensor& send, const Tensor& recv,
                                const std::vector<int64_t>& counts, ReduceOp op) override {
    const std::string what = where("reduce_scatter");
    check_device(send, what);
    check_device(recv, what);
    const ncclDataType_t type = nccl_type(send.dtype());
    const Tensor send_dev = on_device(send), recv_dev = on_device(recv);
    begin();
    if (std::all_of(counts.begin(), counts.end(), [&](int64_t c) { return c == counts[0]; })) {
      AUTOTP_NCCL_CHECK(ncclReduceScatter(send_dev.raw_data(), recv_dev.raw_data(),
                                          static_cast<size_t>(counts[0]), type, nccl_op(op),
                                          state_->comm, state_->stream));
    } else {
      // Uneven pieces: one reduce per rank to that rank (recvbuff matters only at the root).
      AUTOTP_NCCL_CHECK(ncclGroupStart());
      int64_t displ = 0;
      for (size_t r = 0; r < counts.size(); ++r) {
        void* out = static_cast<int>(r) == rank() ? recv_dev.raw_data() : nullptr;
        AUTOTP_NCCL_CHECK(ncclReduce(offset_bytes(send_dev, displ), out,
                                     static_cast<size_t>(counts[r]), type, nccl_op(op),
                                     static_cast<int>(r), state_->comm, state_->stream));
        displ += counts[r];
      }
      AUTOTP_NCCL_CHECK(ncclGroupEnd());
    }
    return copied_back(
        finish(what, std::make_shared<std::pair<Tensor, Tensor>>(send_dev, recv_dev)), recv,
        recv_dev);
  }

  WorkHandle do_broadcast(const Tensor& buffer, int root) override {
    const std::string what = where(fmt::format("broadcast from rank {}", root));
    check_device(buffer, what);
    const Tensor dev = on_device(buffer);
    begin();
    AUTOTP_NCCL_CHECK(ncclBroadcast(dev.raw_data(), dev.raw_data(),
                                    static_cast<size_t>(dev.numel()), nccl_type(dev.dtype()), root,
                                    state_->comm, state_->stream));
    return copied_back(finish(what, std::make_shared<Tensor>(dev)), buffer, dev);
  }

  // A host-side barrier over the bootstrap MPI communicator (it does not wait for queued
  // GPU collectives; wait on their handles for that).
  WorkHandle do_barrier() override { return bootstrap_->barrier_async(); }

  std::vector<std::vector<uint8_t>> do_exchange_bytes(const std::vector<uint8_t>& mine) override {
    return bootstrap_->exchange_bytes(mine);
  }

  std::shared_ptr<Communicator> do_split(int color, int key, const std::string& name) override {
    auto sub = std::dynamic_pointer_cast<MpiCommunicator>(bootstrap_->split(color, key, name));
    AUTOTP_ASSERT(sub != nullptr, "the bootstrap split is not an MpiCommunicator");
    return std::make_shared<NcclCommunicator>(std::move(sub), state_->device, name, options());
  }

 private:
  void check_device(const Tensor& t, const std::string& what) const {
    AUTOTP_CHECK(!state_->aborted, "{}: the NCCL communicator was aborted after an earlier error",
                 what);
    AUTOTP_CHECK(t.device().is_cpu() || t.device() == Device::cuda(state_->device),
                 "{}: the NCCL communicator runs on cuda:{} but the tensor of shape {} is on {}",
                 what, state_->device, shape_str(t.shape()), t.device().str());
  }

  // Host tensors (a trainer's small bookkeeping: loss sums, norms, batch checks) travel
  // through a device copy, so one communicator serves both; device tensors go as they are.
  Tensor on_device(const Tensor& t) const {
    if (!t.device().is_cpu()) return t;
    AUTOTP_NCCL_CUDA_CHECK(cudaSetDevice(state_->device));
    return t.contiguous().to(Device::cuda(state_->device));
  }

  // For a staged host tensor, copies the device result back into it when the work is waited.
  static WorkHandle copied_back(WorkHandle work, const Tensor& host, const Tensor& dev) {
    if (host.device().is_cpu()) {
      work->then([host, dev] { host.copy_(dev.to(Device::cpu())); });
    }
    return work;
  }

  // Orders the communication stream after the work already queued on the default stream.
  void begin() {
    AUTOTP_NCCL_CUDA_CHECK(cudaSetDevice(state_->device));
    AUTOTP_NCCL_CUDA_CHECK(cudaEventRecord(state_->ready, cudaStreamLegacy));
    AUTOTP_NCCL_CUDA_CHECK(cudaStreamWaitEvent(state_->stream, state_->ready, 0));
  }

  // Records completion and returns the handle that polls it.
  WorkHandle finish(const std::string& what, std::shared_ptr<void> keep_alive) {
    auto done = std::make_shared<DoneEvent>();
    AUTOTP_NCCL_CUDA_CHECK(cudaEventRecord(done->event, state_->stream));
    return std::make_shared<Work>(
        what,
        [state = state_, done, what, keep_alive = std::move(keep_alive),
         timeout = options().timeout_seconds] { poll(*state, done->event, what, timeout); },
        Tensor());
  }

  static void poll(NcclState& state, cudaEvent_t done, const std::string& what, double timeout) {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point start = Clock::now();
    for (int64_t polls = 0;; ++polls) {
      const cudaError_t query = cudaEventQuery(done);
      if (query == cudaSuccess) return;
      if (query != cudaErrorNotReady) throw_cuda(query, "cudaEventQuery(done)", __FILE__, __LINE__);
      ncclResult_t async = ncclSuccess;
      AUTOTP_NCCL_CHECK(ncclCommGetAsyncError(state.comm, &async));
      if (async != ncclSuccess && async != ncclInProgress) {
        state.abort();
        AUTOTP_FAIL("{}: NCCL reported an asynchronous error: {}; the communicator was aborted",
                    what, ncclGetErrorString(async));
      }
      const double waited = std::chrono::duration<double>(Clock::now() - start).count();
      if (timeout > 0 && waited > timeout) {
        state.abort();
        abort_job(fmt::format(
            "{} did not complete within {} s on cuda:{} (a peer rank may have died or hung, or "
            "issued a different collective); aborting the job",
            what, timeout, state.device));
      }
      if (polls < 200) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(polls < 2000 ? 20 : 200));
      }
    }
  }

  std::shared_ptr<MpiCommunicator> bootstrap_;
  std::shared_ptr<NcclState> state_;
};

}  // namespace

bool nccl_available() {
  return true;
}

std::shared_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, int device, std::string name,
                                                     CommOptions options) {
  auto bootstrap = std::make_shared<MpiCommunicator>(comm, name + ".bootstrap", options);
  return std::make_shared<NcclCommunicator>(std::move(bootstrap), device, std::move(name), options);
}

}  // namespace autotp

#endif  // AUTOTP_WITH_CUDA
