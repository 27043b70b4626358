// Training checkpoints of data-parallel runs: every DP rank writes its ZeRO optimizer
// partition (with how the flat space was split), rank 0 the weights and, last, the manifest.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/comm/communicator.h"
#include "engine/checkpoint.h"
#include "engine/zero_optimizer.h"

namespace autotp {

// Collective over `world` (all ranks replicate the weights: tp = 1). Writes
// OUT_DIR/checkpoints/step-<N>/ as save_training_checkpoint does (config.json,
// model.safetensors, state.json), except the optimizer state: with `zero`, each DP rank r
// writes optimizer-zero-r<RRRRR>-of-<DDDDD>.safetensors holding its slice (exp_avg,
// exp_avg_sq, step; metadata: partition offset and size, total elements, stage), and
// state.json (the manifest, written by rank 0 only after every partition file is in place)
// lists them with the layout and parameter names; without it rank 0 writes the replicated
// optimizer.safetensors. The directory is staged and renamed, `latest` updated last.
std::string save_dp_checkpoint(const std::string& out_dir, const CausalLM& model,
                               const AdamW& adamw, const ZeroAdamW* zero,
                               const TrainingState& state, Communicator& world);

// Loads any training checkpoint (single-process, DP, any ZeRO stage and DP size) into `model`
// and either `zero` (when given) or `adamw`: ZeRO partitions are gathered into the full flat
// state and re-split for this layout (the resharding path when the DP size differs). Errors
// name a missing partition file or a parameter layout that does not match. Reads files only.
TrainingState load_any_training_checkpoint(const std::string& checkpoint_dir, CausalLM& model,
                                           AdamW& adamw, ZeroAdamW* zero);

// Step directories under OUT_DIR/checkpoints that lack a readable state.json (interrupted
// saves), newest first, for a warning.
std::vector<std::string> incomplete_checkpoints(const std::string& out_dir);

}  // namespace autotp
