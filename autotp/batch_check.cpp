// Batch fingerprints exchanged over the TP group.
#include "autotp/batch_check.h"

#include <string>
#include <vector>

#include "core/comm/recorder.h"
#include "core/error.h"

namespace autotp {

uint64_t batch_fingerprint(const Tensor& input_ids) {
  AUTOTP_CHECK(input_ids.defined(), "batch check: the input_ids tensor is undefined");
  const std::string head =
      shape_str(input_ids.shape()) + std::string(dtype_name(input_ids.dtype()));
  uint64_t h = hash_bytes(head.data(), head.size());
  if (is_floating(input_ids.dtype())) {
    const std::vector<double> v = input_ids.to_vector();
    return hash_bytes(v.data(), v.size() * sizeof(double), h);
  }
  const std::vector<int64_t> v = input_ids.to_vector_i64();
  return hash_bytes(v.data(), v.size() * sizeof(int64_t), h);
}

void check_tp_batch_consistency(const Tensor& input_ids, Communicator& tp) {
  const uint64_t mine = batch_fingerprint(input_ids);
  std::vector<uint8_t> bytes(sizeof(mine));
  for (size_t i = 0; i < sizeof(mine); ++i)
    bytes[i] = static_cast<uint8_t>(mine >> (8 * i));
  const auto all = tp.exchange_bytes(bytes);
  std::string differing;
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r] != all[0]) differing += (differing.empty() ? "" : ", ") + std::to_string(r);
  }
  AUTOTP_CHECK(differing.empty(),
               "tensor-parallel ranks {} of group '{}' got a different batch than TP rank 0 (this "
               "is rank {}, batch {}). Every rank of a TP group must feed the same batch: shard "
               "the data loader by data-parallel rank (world rank / tp_size), not by world rank, "
               "and give all ranks of a TP group the same data seed",
               differing, tp.name(), tp.rank(), shape_str(input_ids.shape()));
}

}  // namespace autotp
