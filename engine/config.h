// The typed training config, parsed from YAML that mirrors DeepSpeed's JSON config plus
// autotp's model/data/train sections; strict keys, typed values, resolved batch sizes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "core/dtype.h"
#include "core/ops/nn.h"
#include "engine/data.h"
#include "engine/lr_schedule.h"
#include "engine/optimizer.h"

namespace autotp {

// DeepSpeed's batch keys, resolved so that
//   train_batch_size = train_micro_batch_size_per_gpu * gradient_accumulation_steps * dp_size.
struct BatchConfig {
  int64_t train_batch_size = 1;
  int64_t micro_batch_per_gpu = 1;
  int64_t gradient_accumulation_steps = 1;
  int64_t dp_size = 1;  // data-parallel size (world size / TP size)
};

// DeepSpeed's rule with the data-parallel size in place of the world size: any two of the
// three keys determine the third; train_batch_size alone means accumulation 1; micro alone
// means accumulation 1; all three must satisfy the equation. Errors show the equation with
// the numbers.
BatchConfig resolve_batch_sizes(std::optional<int64_t> train_batch_size,
                                std::optional<int64_t> micro_batch_per_gpu,
                                std::optional<int64_t> gradient_accumulation_steps,
                                int64_t dp_size);

struct Fp16Config {
  bool enabled = false;
  double loss_scale = 0.0;  // 0: dynamic loss scaling
  int64_t initial_scale_power = 16;
  int64_t loss_scale_window = 1000;
  int64_t hysteresis = 2;
  bool consecutive_hysteresis = false;
  double min_loss_scale = 1.0;
};

struct OptimizerConfig {
  std::string type = "AdamW";  // "AdamW" (the default) or "Adam", matched case-insensitively
  // lr, betas, eps, weight_decay from optimizer.params (DeepSpeed defaults: lr 1e-3,
  // betas [0.9, 0.999], eps 1e-8, weight_decay 0). AdamW always decouples the decay; Adam
  // decouples unless params.adam_w_mode is false (as DeepSpeed's FusedAdam).
  AdamWOptions adamw;
};

// One tensor_parallel.partition_config.layer_specs entry, as written (checked later by the
// AutoTP spec code). Each shape entry is an int (size, or -1) or one nested list of ints.
struct LayerSpecConfig {
  std::vector<std::string> patterns;
  std::string partition_type = "column";                   // lower-cased: row | column | skip
  std::optional<std::vector<std::vector<int64_t>>> shape;  // entry = {n} or the nested list
  std::vector<bool> shape_nested;                          // parallel to *shape
  std::optional<int64_t> partition_dim;
  std::optional<std::vector<std::string>> model_types;
  bool gather_output = false;
  bool grad_allreduce = false;
  std::string where;  // "config.yaml line 30", for later error messages
};

struct PartitionConfig {
  bool use_default_specs = true;
  bool strict_mode = false;
  std::vector<LayerSpecConfig> layer_specs;
};

// DeepSpeed's tensor_parallel section (TPTrainingConfig), raw.
struct TensorParallelConfig {
  int64_t autotp_size = 0;   // 0 disables AutoTP
  std::string preset_model;  // lower-cased; empty when unset
  bool tp_overlap_comm = false;
  DType dtype = DType::F16;  // DeepSpeed's default float16; checked for conflicts only
  bool keep_module_on_host = false;
  std::optional<PartitionConfig> partition_config;
  int64_t tp_size = 1;        // tp.tp_size: 1 or autotp_size
  int64_t tp_grain_size = 1;  // tp.tp_grain_size
};

// autotp's `model` section, kept as YAML for the model registry: either inline Hugging Face
// config.json fields, or `path:` to a config.json or a checkpoint directory.
struct ModelSection {
  YAML::Node node;    // the whole section as written (with its line marks); null when absent
  std::string path;   // model.path when given
  std::string where;  // location of the section, for the registry's messages
  // Its fields given with --set ("rope_theta" for --set model.rope_theta=...): an error about
  // one of them names the --set rather than the file's line.
  std::vector<std::string> overridden;
  bool present() const { return node.IsMap(); }
};

struct TrainConfig {
  int64_t steps = 0;                // required, >= 1
  uint64_t seed = 1234;             // default: the top-level seed
  int64_t log_interval = 10;        // default: steps_per_print
  int64_t checkpoint_interval = 0;  // 0: no periodic checkpoints
  std::string out_dir = "runs/autotp";
  int64_t eval_interval = 0;  // 0: no periodic evaluation
};

// kernels (autotp): variants of the CUDA tensor-core attention kernels. Every variant gives
// bit-identical results (the CPU emulation tests check it); they differ in speed by GPU, so
// `autotp bench` with --set kernels.* measures them. Head dims up to 64; bf16/f16 on CUDA.
struct KernelConfig {
  int64_t attention_row_tiles = 1;              // 16-row tiles per warp: 64- or 128-row blocks
  bool attention_dkdv_kv_in_registers = false;  // dk/dv kernel keeps K/V fragments in registers
  bool attention_longest_first = true;          // grid order: longest blocks first, or by head
  // The backward stores dS from its dk/dv pass and reads it back for dq (any head dim; a
  // transient B Hq S^2 / 2 16-bit buffer when causal); not with the K/V-in-registers kernel.
  bool attention_dq_from_stored_scores = false;
  // Each CUDA GEMM shape's first calls time cuBLASLt's candidate algorithms and later calls
  // run the fastest (ops::set_gemm_autotune); off: the heuristic's first pick, always.
  bool gemm_autotune = false;
  bool is_default() const {
    return attention_row_tiles == 1 && !attention_dkdv_kv_in_registers && attention_longest_first &&
           !attention_dq_from_stored_scores && !gemm_autotune;
  }
};

// The attention kernel variant of `kernels` for a model of head dim `head_dim`: an error naming
// the keys when a variant is asked of a head dim above 64 (before the model is built).
ops::AttentionKernels attention_kernels_for(const KernelConfig& kernels, int64_t head_dim);

// The default zero_optimization.reduce_bucket_size, in elements: 16 MiB of f32 gradients
// (DeepSpeed's 5e8 suits GPUs with large buffers, not the CPU engine).
inline constexpr int64_t kDefaultReduceBucketSize = int64_t{1} << 22;

struct Config {
  BatchConfig batch;
  double gradient_clipping = 0.0;  // 0: no clipping
  bool bf16 = false;
  Fp16Config fp16;
  OptimizerConfig optimizer;
  LrScheduleConfig scheduler;  // type Constant when the section is absent
  int64_t zero_stage = 0;      // 0, 1 or 2
  // zero_optimization.overlap_comm: DP gradient buckets launch during the last backward pass.
  bool zero_overlap_comm = true;
  // zero_optimization.reduce_bucket_size: gradient elements per DP collective (16 MiB of f32).
  int64_t zero_reduce_bucket_size = kDefaultReduceBucketSize;
  int64_t steps_per_print = 10;
  uint64_t seed = 1234;
  TensorParallelConfig tensor_parallel;
  ModelSection model;
  DataConfig data;
  TrainConfig train;
  KernelConfig kernels;

  std::vector<std::string> warnings;   // one line per ignored DeepSpeed key
  std::vector<std::string> overrides;  // the --set assignments applied, in order
  std::string source;                  // the file name, or "<string>"
};

struct ConfigLoadOptions {
  std::vector<std::string> overrides;  // "a.b.c=value", applied in order before validation
  // The number of processes. When given, the data-parallel size is world_size / TP size and
  // data_parallel_size (if set) must agree; when not, it is data_parallel_size or 1.
  std::optional<int64_t> world_size;
};

// Parses and validates; throws autotp::Error with one clear message (key path, line, what was
// expected, the closest known key for a typo).
Config load_config_file(const std::string& path, const ConfigLoadOptions& options = {});
Config parse_config(const std::string& yaml_text, const ConfigLoadOptions& options = {},
                    const std::string& source_name = "<string>");
// From an already-loaded tree. The overrides are applied to `root` itself (yaml-cpp nodes are
// handles, so the caller's tree changes), which keeps the line marks for messages.
Config config_from_yaml(YAML::Node root, const ConfigLoadOptions& options = {},
                        const std::string& source_name = "<string>");

// The resolved config as readable text, one "key: value" per line, grouped by section.
std::string config_summary(const Config& config);

// The `kernels` section in one line (config_summary's, and `autotp bench`'s report).
std::string kernel_config_summary(const KernelConfig& kernels);
// The resolved config as YAML that parse_config accepts and that resolves to the same Config.
std::string config_to_yaml(const Config& config);

}  // namespace autotp
