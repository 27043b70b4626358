// Communicator: collectives over tensors within one group of ranks (all_reduce, all_gather
// with uneven widths, reduce_scatter, broadcast, barrier), each sync and async, with an
// optional recording mode that counts collectives and checks every rank issues the same ones.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/comm/recorder.h"
#include "core/comm/work.h"
#include "core/tensor.h"

namespace autotp {

struct CommOptions {
  // A collective still incomplete after this many seconds ends the whole job (MPI_Abort)
  // with a message naming it and the communicator: a peer died, hung, or issued a different
  // collective. 0 waits forever.
  double timeout_seconds = 600.0;
};

// One group of ranks. Every collective must be called by every rank of the group, in the
// same order, with agreeing arguments (the recording mode checks this). Collectives do not
// record autograd history: they read and write tensor data only.
//
// Determinism: all_gather, broadcast and integer reductions are exact. Floating-point sums
// follow the backend's reduction order, which may differ from a sequential sum; small
// integer-valued data is exact in f32 and f64.
class Communicator {
 public:
  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // The group's name in messages: "world", "tp", "dp", ...
  const std::string& name() const { return name_; }
  const CommOptions& options() const { return options_; }
  virtual std::string backend() const = 0;  // "mpi" or "nccl"

  // ---- collectives (the *_async forms return a handle; call wait() before using data) --
  // Reduces `buffer` across ranks in place. `buffer` must be contiguous (the reduction lands
  // in its own memory, never in a temporary). Avg needs a floating dtype.
  WorkHandle all_reduce_async(const Tensor& buffer, ReduceOp op = ReduceOp::Sum);
  void all_reduce(const Tensor& buffer, ReduceOp op = ReduceOp::Sum);

  // Concatenates every rank's `local` along `dim`, in rank order, into a new tensor on
  // every rank. `sizes[r]` is rank r's extent along `dim` (uneven widths allowed; empty:
  // every rank has local.size(dim)). All other dims must be equal on every rank.
  WorkHandle all_gather_async(const Tensor& local, int64_t dim,
                              const std::vector<int64_t>& sizes = {});
  Tensor all_gather(const Tensor& local, int64_t dim, const std::vector<int64_t>& sizes = {});

  // Reduces `input` (the same shape on every rank) across ranks and returns this rank's
  // piece along `dim`: `sizes[r]` elements for rank r (empty: an even split, which must
  // divide).
  WorkHandle reduce_scatter_async(const Tensor& input, int64_t dim,
                                  const std::vector<int64_t>& sizes = {},
                                  ReduceOp op = ReduceOp::Sum);
  Tensor reduce_scatter(const Tensor& input, int64_t dim, const std::vector<int64_t>& sizes = {},
                        ReduceOp op = ReduceOp::Sum);

  // Copies `root`'s `buffer` (contiguous) into every rank's `buffer`, in place.
  WorkHandle broadcast_async(const Tensor& buffer, int root);
  void broadcast(const Tensor& buffer, int root);

  WorkHandle barrier_async();
  void barrier();

  // The group of ranks that pass the same `color`, ordered by `key` (MPI_Comm_split). Every
  // rank of this group must call it.
  std::shared_ptr<Communicator> split(int color, int key, const std::string& name);

  // ---- recording mode -------------------------------------------------------------------
  // Starts counting collectives (and, with verify_each, checking each one across the group).
  void enable_recording(RecordingOptions options = {});
  void disable_recording() { recorder_.reset(); }
  // Null unless recording.
  CollectiveRecorder* recorder() const { return recorder_.get(); }
  // Collective: checks that every rank issued the same collectives since the last check;
  // on a mismatch every rank throws an Error naming the first differing collective.
  void check_sequence();

  // Collective, blocking: every rank's bytes (any length per rank), in rank order. For small
  // control messages; not recorded.
  std::vector<std::vector<uint8_t>> exchange_bytes(const std::vector<uint8_t>& mine);

 protected:
  Communicator(int rank, int size, std::string name, CommOptions options);

  // Backend primitives. Buffers are contiguous, flat (1-D), of one dtype and device.
  // In place on `buffer`.
  virtual WorkHandle do_all_reduce(const Tensor& buffer, ReduceOp op) = 0;
  // `recv` [sum(counts)] receives rank r's `send` [counts[rank]] at offset sum(counts[<r]).
  virtual WorkHandle do_all_gatherv(const Tensor& send, const Tensor& recv,
                                    const std::vector<int64_t>& counts) = 0;
  // `recv` [counts[rank]] receives the reduction of every rank's block rank of `send`.
  virtual WorkHandle do_reduce_scatterv(const Tensor& send, const Tensor& recv,
                                        const std::vector<int64_t>& counts, ReduceOp op) = 0;
  virtual WorkHandle do_broadcast(const Tensor& buffer, int root) = 0;
  virtual WorkHandle do_barrier() = 0;
  virtual std::vector<std::vector<uint8_t>> do_exchange_bytes(const std::vector<uint8_t>& mine) = 0;
  virtual std::shared_ptr<Communicator> do_split(int color, int key, const std::string& name) = 0;

  // "all_reduce on communicator 'tp' (rank 1 of 4)" for messages.
  std::string where(const std::string& what) const;

 private:
  // Records `desc` and, with verify_each, checks it against the other ranks first.
  void before_collective(const CollectiveDesc& desc);

  int rank_;
  int size_;
  std::string name_;
  CommOptions options_;
  std::unique_ptr<CollectiveRecorder> recorder_;
};

}  // namespace autotp
