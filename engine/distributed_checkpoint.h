// Training checkpoints of multi-rank runs under any TP x DP x ZeRO layout: every rank writes
// its own shards with how each tensor was split, world rank 0 the manifest last; loading
// builds, one parameter at a time, the slice the loading run's layout keeps on this rank.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/comm/parallel_grid.h"
#include "engine/checkpoint.h"
#include "engine/optimizer.h"
#include "engine/saved_checkpoint.h"
#include "engine/zero_optimizer.h"
#include "models/causal_lm.h"

namespace autotp {

// Collective over grid.world(). Writes OUT_DIR/checkpoints/step-<N>/ through a staged
// directory renamed into place, then `latest`, like save_training_checkpoint:
//   config.json                      the full model's HF config (world rank 0; a CausalLM)
//   weights, by the DP-rank-0 rank of each TP rank t (local shards under their HF names):
//     tp = 1: model.safetensors (so the directory is also an HF model directory)
//     tp > 1: model-tp<t>-of-<T>.safetensors
//   optimizer state:
//     ZeRO 0, by DP rank 0 of each TP rank: optimizer.safetensors (tp = 1) or
//       optimizer-tp<t>-of-<T>.safetensors, AdamW's state_dict of the local shards
//     ZeRO 1/2, by every rank: optimizer-zero[-tp<t>]-r<d>-of-<D>.safetensors, its slice of the
//       flat state of TP rank t's parameters (metadata: partition offset/size, total, ranks)
//   state.json                       the manifest (world rank 0, after checking every file
//                                    above is in place): step, seed, config, the layout, the
//                                    file lists and every sharded tensor's split (full shape,
//                                    logical view, split dim, widths per sub-parameter and rank)
//
// `stand_ins` (optional): tensors written in place of the model's parameters of the same names
// and shapes, e.g. the f32 master weights behind a bf16 model.
std::string save_distributed_checkpoint(const std::string& out_dir, const Module& model,
                                        const AdamW& adamw, const ZeroAdamW* zero,
                                        const TrainingState& state, const ParallelGrid& grid,
                                        const NamedTensors* stand_ins = nullptr);

// A training checkpoint of any layout (one process, DP, TP, any ZeRO stage) read back as
// unsharded tensors. Reads files only; every rank may call it. Memory: the full model and
// both moments (for `autotp export` and tests; loading goes parameter by parameter).
struct UnshardedCheckpoint {
  TrainingState state;
  NamedTensors weights;                              // the full state dict, in save order
  std::map<std::string, AdamWParamState> adamw;      // by parameter name; absent: never stepped
  int64_t tp_size = 1, dp_size = 1, zero_stage = 0;  // the layout that wrote it
  std::string layout() const;                        // "tp 2 x dp 2, ZeRO stage 2"
};
UnshardedCheckpoint read_unsharded_checkpoint(const std::string& checkpoint_dir);

// Loads any training checkpoint into `model` (unsharded, or sharded by the AutoTP pass: each
// TensorParallelLayer's frozen split says which slice this rank keeps) and into `zero` when
// given (its partition only; `adamw`'s own state is then left as it is), else `adamw`. Names
// and shapes are checked from the manifest and file headers before anything is read or
// copied; a mismatch names the checkpoint, its layout and the tensor. Reads files only (no
// collectives). Memory: besides the destination, one parameter's tensors at a time: for each
// parameter the weight, then each moment, this rank's part built from only the saved pieces
// (and ZeRO partition ranges) it overlaps, copied in and released; under ZeRO the moments of
// parameters outside this rank's partition are not read. `stats` (optional) receives what was
// read and the most held at once.
// `stand_ins` (optional): the saved values of parameters with these names go into these
// tensors instead of the model's (e.g. f32 master weights; the caller then writes the model).
TrainingState load_any_training_checkpoint(const std::string& checkpoint_dir, Module& model,
                                           AdamW& adamw, ZeroAdamW* zero,
                                           const NamedTensors* stand_ins = nullptr,
                                           CheckpointReadStats* stats = nullptr);

// Only the weights of any training checkpoint into `model` (unsharded or sharded by the AutoTP
// pass), one parameter at a time: the optimizer state is never read. Names and shapes are
// checked first, as above. For evaluation and export.
TrainingState load_checkpoint_weights(const std::string& checkpoint_dir, Module& model,
                                      CheckpointReadStats* stats = nullptr);

// The same from an already-read checkpoint (`checkpoint_dir` names it in messages); with a
// null `adamw` only the weights are loaded.
void load_unsharded_checkpoint(const UnshardedCheckpoint& saved, const std::string& checkpoint_dir,
                               Module& model, AdamW* adamw, ZeroAdamW* zero,
                               const NamedTensors* stand_ins = nullptr);

// Step directories under OUT_DIR/checkpoints that lack a readable state.json (interrupted
// saves), newest first, for a warning.
std::vector<std::string> incomplete_checkpoints(const std::string& out_dir);

}  // namespace autotp
