// Checkpoints: Hugging Face model directories (config.json + safetensors, what transformers
// loads as is) and training checkpoints (weights, optimizer state, step, RNG and data
// position), each written under a temporary name and renamed so a crash never destroys the
// last good one.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/io/json.h"
#include "engine/mixed_precision.h"
#include "engine/optimizer.h"
#include "models/causal_lm.h"

namespace autotp {

// ---- Hugging Face directories ------------------------------------------------------------

// Reads DIR/config.json into a ModelConfig (errors name the file and key). DIR may also be
// the path of a config.json file itself.
ModelConfig load_hf_config(const std::string& dir);

// Builds the model DIR/config.json describes and loads its weights (model.safetensors or the
// sharded index) into it, converting to `dtype`. Names must match exactly: missing and
// unexpected tensors are reported together in one error naming the directory. A tied model's
// redundant lm_head.weight (some HF checkpoints carry one) is ignored, as transformers does.
std::shared_ptr<CausalLM> load_hf_model(const std::string& dir, DType dtype = DType::F32);

// Writes DIR/config.json (the fields transformers needs to build the same model, including
// "architectures" and "model_type") and the weights (sharded above max_shard_bytes), into a
// temporary sibling directory that is then renamed over DIR. `dtype` is the saved dtype
// (e.g. bf16 to halve the size; default: the model's own). An existing DIR must be empty or
// a model directory (config.json or safetensors weights); anything else is refused.
void export_hf_model(const CausalLM& model, const std::string& dir,
                     std::optional<DType> dtype = std::nullopt,
                     int64_t max_shard_bytes = 5LL << 30);

// ---- training checkpoints -----------------------------------------------------------------

// File names every training checkpoint layout shares: the manifest (written last) and the
// optimizer state of a one-process (or tp = 1, ZeRO 0) run.
inline constexpr const char* kCheckpointManifestFile = "state.json";
// The folder of a run's checkpoints: RUN/checkpoints/step-00000020, RUN/checkpoints/latest.
inline constexpr const char* kCheckpointsDir = "checkpoints";
inline constexpr const char* kCheckpointOptimizerFile = "optimizer.safetensors";

// Everything besides weights and optimizer state that resuming needs.
struct TrainingState {
  int64_t step = 0;   // optimizer steps completed
  uint64_t seed = 0;  // the run's seed (data and init are pure functions of seed + step)
  int64_t tokens_seen = 0;
  std::string config_yaml;  // the resolved config the run was started with
  // fp16's dynamic loss scaler at the save (absent without loss scaling), so that a resumed
  // run skips and rescales exactly as the uninterrupted one.
  std::optional<LossScalerState> loss_scaler;
};

// Writes OUT_DIR/checkpoints/step-<NNNNNNNN>/ (config.json + model.safetensors, so the
// directory is also an HF model directory for load_hf_model and transformers;
// optimizer.safetensors; state.json, written last) through a temporary directory renamed into
// place (replacing an earlier save of the same step; other checkpoints are kept), then updates
// OUT_DIR/checkpoints/latest (a one-line file, itself replaced atomically). Returns the
// checkpoint directory.
std::string save_training_checkpoint(const std::string& out_dir, const CausalLM& model,
                                     const AdamW& optimizer, const TrainingState& state);

// The directory `latest` points at under OUT_DIR/checkpoints, or nullopt when none exists.
// A directory without a complete state.json (an interrupted save) is never returned: when
// `latest` is missing or names one, the complete step-<N> directory with the highest N.
std::optional<std::string> latest_training_checkpoint(const std::string& out_dir);
// The directory name OUT_DIR/checkpoints/latest holds ("step-00000020"), whether or not that
// directory exists and is complete; empty when the file is missing or unreadable.
std::string latest_checkpoint_pointer(const std::string& out_dir);

// DIR/state.json read and checked (the format, version, step), and the JSON that
// save_training_checkpoint writes there. Distributed saves (engine/distributed_checkpoint.h) add
// keys.
TrainingState read_training_state(const std::string& checkpoint_dir);
json::Value training_state_json(const TrainingState& state);

// Loads a checkpoint directory into an existing model and optimizer (shapes and names
// checked; weights converted to the model's dtypes) and returns its TrainingState.
TrainingState load_training_checkpoint(const std::string& checkpoint_dir, CausalLM& model,
                                       AdamW& optimizer);

}  // namespace autotp
