// The first-step data check: every rank of a tensor-parallel group must feed the same batch.
#pragma once

#include <cstdint>

#include "core/comm/communicator.h"
#include "core/tensor.h"

namespace autotp {

// A hash of `input_ids`' shape, dtype and values (read on the host).
uint64_t batch_fingerprint(const Tensor& input_ids);

// Collective over `tp` (a small byte exchange, not a recorded collective): an Error on every
// rank when some TP rank's batch differs from TP rank 0's. The message names the ranks and
// says how to fix the data loader: shard by data-parallel rank (world rank / tp_size), not by
// world rank, with the same seed on every rank of a TP group. Cheap: call it on the first
// step (and whenever the data source changes).
void check_tp_batch_consistency(const Tensor& input_ids, Communicator& tp);

}  // namespace autotp
