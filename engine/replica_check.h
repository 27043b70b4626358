// The check that parameters replicated across the TP group (norms, embeddings, an unsharded
// lm_head) and the shards held by DP replicas are still bit-identical on every rank.
#pragma once

#include <string>

#include "core/comm/parallel_grid.h"
#include "core/module.h"

namespace autotp {

// Collective over grid.world(). Hashes every parameter's bytes on each rank and compares:
// a replicated parameter must match on every rank of the world, a TP shard on every rank with
// the same TP rank (its DP replicas). The Error names the first parameter that differs and
// the two ranks, with `when` ("after step 7") — divergence means a missing gradient
// all-reduce or a nondeterministic kernel, and training on would silently fork the replicas.
void check_replicas_identical(const Module& model, const ParallelGrid& grid,
                              const std::string& when);

}  // namespace autotp
