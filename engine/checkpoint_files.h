// Pieces shared by the HF and training checkpoint code: a model's tensors in save order,
// strict loading of checkpoint weights by name, and replacing a directory by renames.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/io/sharded_safetensors.h"
#include "core/module.h"

namespace autotp::checkpoint_files {

// Every state_dict() entry of `model` in module order (parameters, then buffers, then names
// that only state_dict lists), as save_sharded wants them.
std::vector<std::pair<std::string, Tensor>> ordered_state(const Module& model);

// The dtype of the model's first parameter (its "own" dtype); F32 for a model without any.
DType model_dtype(const Module& model);

// Copies the tensors of `weights` into `model`'s state by name, converting each to the dtype
// of the tensor it replaces. Before anything is copied, every name and shape is checked:
// missing and unexpected tensors, shape mismatches and dtypes autotp cannot read are reported
// together in one error that names weights.dir(). With `tied_lm_head_allowed`, a checkpoint
// tensor "lm_head.weight" that the model does not have (tied embeddings) is accepted and
// ignored when its shape equals model.embed_tokens.weight's, as transformers does.
void load_weights(const Module& model, const io::SafetensorsCheckpoint& weights,
                  bool tied_lm_head_allowed);

// Moves the finished directory `staged` to `target`: directly when `target` does not exist,
// else `target` is renamed aside, `staged` renamed in and the old one removed, so `target`
// always names a complete directory (during the swap it is briefly absent, never partial).
void replace_directory(const std::string& staged, const std::string& target);

// fsync on a directory, so the renames in it survive a crash (no error where unsupported).
void sync_directory(const std::string& dir);

}  // namespace autotp::checkpoint_files
