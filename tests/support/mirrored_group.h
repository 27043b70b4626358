// MirroredGroup: a one-process stand-in for rank `rank` of a `size`-rank group whose other
// ranks hold exactly this process's data, for code that only exchanges control bytes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/comm/communicator.h"
#include "core/error.h"

namespace autotp::testing {

// What the AutoTP pass needs to run in one process: rank/size (the shard each layer takes)
// and exchange_bytes (the plan check: every "rank" reports this process's plan). Tensor
// collectives are errors: a test that reaches one needs a real group (tests/autotp/mpi).
class MirroredGroup final : public Communicator {
 public:
  MirroredGroup(int rank, int size) : Communicator(rank, size, "mirrored", CommOptions{}) {}
  std::string backend() const override { return "mirrored"; }

 protected:
  WorkHandle do_all_reduce(const Tensor&, ReduceOp) override { unsupported("all_reduce"); }
  WorkHandle do_all_gatherv(const Tensor&, const Tensor&, const std::vector<int64_t>&) override {
    unsupported("all_gather");
  }
  WorkHandle do_reduce_scatterv(const Tensor&, const Tensor&, const std::vector<int64_t>&,
                                ReduceOp) override {
    unsupported("reduce_scatter");
  }
  WorkHandle do_broadcast(const Tensor&, int) override { unsupported("broadcast"); }
  WorkHandle do_barrier() override { return Work::completed("barrier", Tensor()); }
  std::vector<std::vector<uint8_t>> do_exchange_bytes(const std::vector<uint8_t>& mine) override {
    return std::vector<std::vector<uint8_t>>(static_cast<size_t>(size()), mine);
  }
  std::shared_ptr<Communicator> do_split(int, int, const std::string&) override {
    unsupported("split");
  }

 private:
  [[noreturn]] static void unsupported(const char* what) {
    AUTOTP_FAIL("MirroredGroup: {} is not available in one process", what);
  }
};

}  // namespace autotp::testing
