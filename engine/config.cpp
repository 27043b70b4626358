// Config parsing: one MapReader per YAML section, DeepSpeed's defaults and "auto", the batch
// size rule, and the ignored DeepSpeed keys.
#include "engine/config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "engine/yaml_reader.h"

namespace autotp {

namespace {

// Top-level DeepSpeed keys that autotp accepts and ignores (with a warning).
const std::vector<std::string> kIgnoredTopLevel = {"wall_clock_breakdown",
                                                   "memory_breakdown",
                                                   "prescale_gradients",
                                                   "gradient_predivide_factor",
                                                   "sparse_gradients",
                                                   "communication_data_type",
                                                   "seq_parallel_communication_data_type",
                                                   "amp",
                                                   "activation_checkpointing",
                                                   "flops_profiler",
                                                   "tensorboard",
                                                   "wandb",
                                                   "csv_monitor",
                                                   "comet",
                                                   "comms_logger",
                                                   "aio",
                                                   "elasticity",
                                                   "autotuning",
                                                   "pipeline",
                                                   "checkpoint",
                                                   "data_efficiency",
                                                   "curriculum_learning",
                                                   "compression_training",
                                                   "zero_allow_untested_optimizer",
                                                   "zero_force_ds_cpu_optimizer",
                                                   "dump_state",
                                                   "disable_allgather",
                                                   "sparse_attention",
                                                   "eigenvalue",
                                                   "progressive_layer_drop",
                                                   "dataloader_drop_last",
                                                   "use_data_before_expert_parallelism",
                                                   "torch_autocast",
                                                   "compile",
                                                   "nebula",
                                                   "weight_quantization",
                                                   "hybrid_engine",
                                                   "timers",
                                                   "graph_harvesting",
                                                   "data_types",
                                                   "sequence_parallel_size",
                                                   "fp32_allreduce",
                                                   "gradient_accumulation_dtype",
                                                   "quantize_training",
                                                   "load_universal_checkpoint"};

const std::vector<std::string> kIgnoredZero = {"offload_optimizer",
                                               "offload_param",
                                               "contiguous_gradients",
                                               "reduce_scatter",
                                               "allgather_partitions",
                                               "allgather_bucket_size",
                                               "round_robin_gradients",
                                               "sub_group_size",
                                               "elastic_checkpoint",
                                               "load_from_fp32_weights",
                                               "cpu_offload",
                                               "cpu_offload_params",
                                               "cpu_offload_use_pin_memory",
                                               "ignore_unused_parameters",
                                               "legacy_stage1",
                                               "zero_hpz_partition_size",
                                               "zero_quantized_weights",
                                               "zero_quantized_nontrainable_weights",
                                               "zero_quantized_gradients",
                                               "memory_efficient_linear",
                                               "use_multi_rank_bucket_allreduce",
                                               "gather_16bit_weights_on_model_save",
                                               "module_granularity_threshold",
                                               "log_trace_cache_warnings",
                                               "pipeline_loading_checkpoint",
                                               "override_module_apply",
                                               "use_all_reduce_for_fetch_params",
                                               "stage3_*",
                                               "mics_*",
                                               "zeropp_loco_param",
                                               "max_live_parameters",
                                               "max_reuse_distance",
                                               "prefetch_bucket_size",
                                               "param_persistence_threshold",
                                               "model_persistence_threshold"};

// DeepSpeed's AutoTP presets (AutoTPPresets) plus autotp's mistral (autotp/presets.h),
// matched case-insensitively.
const std::vector<std::string> kPresetModels = {"llama",       "bloom", "chatglm", "mixtral",
                                                "deepseek_v2", "qwen2", "phi3",    "mistral"};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

int64_t int_at_least(MapReader& r, const std::string& key, int64_t fallback, int64_t min) {
  const std::optional<int64_t> v = r.get_int(key);
  if (!v) return fallback;
  if (*v < min) r.fail(key, fmt::format("must be >= {}, got {}", min, *v));
  return *v;
}

double float_in(MapReader& r, const std::string& key, double fallback, double min, double max) {
  const std::optional<double> v = r.get_float(key);
  if (!v) return fallback;
  if (*v < min || *v > max) {
    r.fail(key, max == HUGE_VAL ? fmt::format("must be >= {}, got {}", min, *v)
                                : fmt::format("must be in [{}, {}], got {}", min, max, *v));
  }
  return *v;
}

bool bool_or(MapReader& r, const std::string& key, bool fallback) {
  return r.get_bool(key).value_or(fallback);
}

// ---- sections ---------------------------------------------------------------

Fp16Config read_fp16(MapReader r) {
  Fp16Config c;
  c.enabled = bool_or(r, "enabled", false);
  c.loss_scale = float_in(r, "loss_scale", 0.0, 0.0, HUGE_VAL);
  c.initial_scale_power = int_at_least(r, "initial_scale_power", 16, 0);
  c.loss_scale_window = int_at_least(r, "loss_scale_window", 1000, 1);
  c.hysteresis = int_at_least(r, "hysteresis", 2, 1);
  c.consecutive_hysteresis = bool_or(r, "consecutive_hysteresis", false);
  c.min_loss_scale = float_in(r, "min_loss_scale", 1.0, 0.0, HUGE_VAL);
  r.ignore({"auto_cast", "fp16_master_weights_and_grads"});
  r.finish();
  return c;
}

bool read_bf16(MapReader r) {
  const bool enabled = bool_or(r, "enabled", false);
  r.ignore({"immediate_grad_update", "check_grad_overflow", "bf16_master_weights_and_grads",
            "bf16_optimizer_states", "auto_cast"});
  r.finish();
  return enabled;
}

OptimizerConfig read_optimizer(MapReader r) {
  OptimizerConfig c;
  AdamWOptions& o = c.adamw;
  o.weight_decay = 0.0;  // DeepSpeed's FusedAdam default
  const std::string type = r.get_string("type").value_or("AdamW");
  const std::string t = lower(type);
  if (t == "adamw") {
    c.type = "AdamW";
  } else if (t == "adam") {
    c.type = "Adam";
  } else {
    r.fail("type", fmt::format("'{}' is not supported (supported: AdamW, Adam)", type));
  }
  MapReader p = r.get_map("params");
  o.lr = float_in(p, "lr", 1e-3, 0.0, HUGE_VAL);
  if (const auto betas = p.get_float_list("betas")) {
    if (betas->size() != 2 || (*betas)[0] < 0 || (*betas)[0] >= 1 || (*betas)[1] < 0 ||
        (*betas)[1] >= 1) {
      p.fail("betas", "must be two numbers in [0, 1), e.g. [0.9, 0.999]");
    }
    o.beta1 = (*betas)[0];
    o.beta2 = (*betas)[1];
  }
  o.eps = float_in(p, "eps", 1e-8, 0.0, HUGE_VAL);
  o.weight_decay = float_in(p, "weight_decay", 0.0, 0.0, HUGE_VAL);
  o.bias_correction = bool_or(p, "bias_correction", true);
  const bool adam_w_mode = bool_or(p, "adam_w_mode", true);
  // DeepSpeed: type AdamW always decouples; type Adam follows adam_w_mode (default true).
  o.decoupled_weight_decay = c.type == "AdamW" || adam_w_mode;
  if (bool_or(p, "amsgrad", false)) p.fail("amsgrad", "is not supported by autotp (use false)");
  p.ignore({"torch_adam", "fused", "set_grad_none", "foreach", "capturable"});
  p.finish();
  r.finish();
  return c;
}

LrScheduleConfig read_scheduler(MapReader r, double optimizer_lr, int64_t train_steps) {
  LrScheduleConfig c;
  c.base_lr = optimizer_lr;
  const std::optional<std::string> type = r.get_string("type");
  if (!type) {
    r.fail("type",
           "is required in the scheduler section (WarmupLR, WarmupDecayLR or "
           "WarmupCosineLR; omit the section for a constant rate)");
  }
  if (*type == "WarmupLR" || *type == "WarmupDecayLR" || *type == "WarmupCosineLR") {
    c.type = lr_schedule_type_from_name(*type);
  } else if (*type == "LRRangeTest" || *type == "OneCycle") {
    r.fail("type", fmt::format("'{}' is a DeepSpeed scheduler that autotp does not implement "
                               "(supported: WarmupLR, WarmupDecayLR, WarmupCosineLR)",
                               *type));
  } else {
    r.fail(
        "type",
        fmt::format("'{}' is not a known scheduler (closest: '{}'; supported: "
                    "WarmupLR, WarmupDecayLR, WarmupCosineLR)",
                    *type, closest_match(*type, {"WarmupLR", "WarmupDecayLR", "WarmupCosineLR"})));
  }
  MapReader p = r.get_map("params");
  c.warmup_num_steps = int_at_least(p, "warmup_num_steps", 1000, 1);
  if (const auto wt = p.get_string("warmup_type")) {
    if (*wt != "log" && *wt != "linear") {
      p.fail("warmup_type", fmt::format("must be 'log' or 'linear', got '{}'", *wt));
    }
    c.warmup_type = warmup_type_from_name(*wt);
  }
  if (c.type == LrScheduleType::WarmupLR || c.type == LrScheduleType::WarmupDecayLR) {
    c.warmup_min_lr = float_in(p, "warmup_min_lr", 0.0, 0.0, HUGE_VAL);
    // Absent: DeepSpeed's default (WarmupLR: the optimizer lr; WarmupDecayLR: 0.001).
    // "auto": the optimizer lr, as the Hugging Face integration fills it.
    const double absent_max = c.type == LrScheduleType::WarmupLR ? optimizer_lr : 1e-3;
    c.warmup_max_lr = float_in(
        p, "warmup_max_lr", p.is_auto("warmup_max_lr") ? optimizer_lr : absent_max, 0.0, HUGE_VAL);
  }
  if (c.type == LrScheduleType::WarmupDecayLR || c.type == LrScheduleType::WarmupCosineLR) {
    // Absent or "auto": the run's length, train.steps.
    c.total_num_steps = int_at_least(p, "total_num_steps", train_steps, 1);
    if (c.total_num_steps < c.warmup_num_steps) {
      p.warn(p.present("total_num_steps") ? "total_num_steps" : "warmup_num_steps",
             fmt::format("gives total_num_steps {} < warmup_num_steps {}: the rate decays "
                         "before the warmup ends (DeepSpeed warns the same)",
                         c.total_num_steps, c.warmup_num_steps));
    }
  }
  if (c.type == LrScheduleType::WarmupCosineLR) {
    c.warmup_min_ratio = float_in(p, "warmup_min_ratio", 0.0, 0.0, 1.0);
    c.cos_min_ratio = float_in(p, "cos_min_ratio", 0.0001, 0.0, 1.0);
  }
  p.ignore({"last_batch_iteration"});
  p.finish();
  r.finish();
  LrSchedule check(c);  // validates the combination
  return c;
}

std::optional<std::vector<std::vector<int64_t>>> read_spec_shape(MapReader& r,
                                                                 std::vector<bool>& nested) {
  const YAML::Node node = r.get_node("shape");
  if (!node.IsDefined() || node.IsNull()) return std::nullopt;
  const char* expected =
      "must be a list of positive sizes or -1, with at most one nested list of positive sizes "
      "(e.g. [3, -1] or [[1024, 256, 256], -1])";
  if (!node.IsSequence() || node.size() == 0) r.fail("shape", expected);
  std::vector<std::vector<int64_t>> shape;
  int nested_count = 0;
  for (const YAML::Node& entry : node) {
    std::vector<int64_t> sizes;
    int64_t v = 0;
    if (entry.IsScalar() && YAML::convert<int64_t>::decode(entry, v) && (v > 0 || v == -1)) {
      sizes.push_back(v);
      nested.push_back(false);
    } else if (entry.IsSequence() && entry.size() > 0) {
      for (const YAML::Node& s : entry) {
        if (!s.IsScalar() || !YAML::convert<int64_t>::decode(s, v) || v <= 0) {
          r.fail("shape", expected);
        }
        sizes.push_back(v);
      }
      nested.push_back(true);
      ++nested_count;
    } else {
      r.fail("shape", expected);
    }
    shape.push_back(std::move(sizes));
  }
  if (nested_count > 1) r.fail("shape", expected);
  return shape;
}

LayerSpecConfig read_layer_spec(MapReader r) {
  LayerSpecConfig s;
  s.where = r.where();
  const auto patterns = r.get_string_list("patterns");
  if (!patterns || patterns->empty()) {
    r.fail("patterns",
           "is required: a list of regular expressions matched against "
           "parameter names such as 'model.layers.0.self_attn.q_proj.weight'");
  }
  s.patterns = *patterns;
  if (const auto type = r.get_string("partition_type")) {
    s.partition_type = lower(*type);
    if (s.partition_type != "row" && s.partition_type != "column" && s.partition_type != "skip") {
      r.fail("partition_type", fmt::format("must be row, column or skip, got '{}'", *type));
    }
  }
  s.shape = read_spec_shape(r, s.shape_nested);
  s.partition_dim = r.get_int("partition_dim");
  if (s.partition_dim && *s.partition_dim < 0) {
    r.fail("partition_dim", fmt::format("must be >= 0, got {}", *s.partition_dim));
  }
  if (s.partition_dim && s.shape && *s.partition_dim >= static_cast<int64_t>(s.shape->size())) {
    r.fail("partition_dim",
           fmt::format("is {} but shape has {} entries", *s.partition_dim, s.shape->size()));
  }
  if (const auto types = r.get_string_list("model_types")) {
    std::vector<std::string> lowered;
    for (const std::string& t : *types)
      lowered.push_back(lower(t));
    s.model_types = lowered;
  }
  s.gather_output = bool_or(r, "gather_output", false);
  if (s.gather_output && s.partition_type != "column") {
    r.fail("gather_output", "applies to column specs only");
  }
  if (s.gather_output && s.shape) {
    r.fail("gather_output", "cannot be combined with shape (DeepSpeed does not implement it)");
  }
  s.grad_allreduce = bool_or(r, "grad_allreduce", false);
  r.finish();
  return s;
}

PartitionConfig read_partition_config(MapReader r, const YamlSource& source) {
  PartitionConfig c;
  c.use_default_specs = bool_or(r, "use_default_specs", true);
  c.strict_mode = bool_or(r, "strict_mode", false);
  int_at_least(r, "tp_size", 1, 1);  // DeepSpeed overwrites it with autotp_size
  const YAML::Node specs = r.get_node("layer_specs");
  if (specs.IsDefined() && !specs.IsNull()) {
    if (!specs.IsSequence()) r.fail("layer_specs", "must be a list of layer specs");
    for (size_t i = 0; i < specs.size(); ++i) {
      c.layer_specs.push_back(read_layer_spec(
          MapReader(specs[i], r.full_key("layer_specs") + "." + std::to_string(i), source)));
    }
  }
  r.ignore({"embedding_partition_dim", "lm_head_patterns"});
  r.finish();
  return c;
}

TensorParallelConfig read_tensor_parallel(MapReader r, const YamlSource& source) {
  TensorParallelConfig c;
  c.autotp_size = int_at_least(r, "autotp_size", 0, 0);
  if (const auto preset = r.get_string("preset_model")) {
    c.preset_model = lower(*preset);
    if (std::find(kPresetModels.begin(), kPresetModels.end(), c.preset_model) ==
        kPresetModels.end()) {
      r.fail("preset_model",
             fmt::format("'{}' is not a known preset (closest: '{}'; known: llama, bloom, "
                         "chatglm, mixtral, deepseek_v2, qwen2, phi3, mistral)",
                         *preset, closest_match(c.preset_model, kPresetModels)));
    }
  }
  c.tp_overlap_comm = bool_or(r, "tp_overlap_comm", false);
  if (auto dtype = r.get_string("dtype")) {
    std::string name = *dtype;
    if (name.rfind("torch.", 0) == 0) name = name.substr(6);
    if (name != "float16" && name != "fp16" && name != "half" && name != "bfloat16" &&
        name != "bf16" && name != "float32" && name != "fp32" && name != "float" && name != "f16" &&
        name != "f32") {
      r.fail("dtype", fmt::format("must be float16, bfloat16 or float32, got '{}'", *dtype));
    }
    c.dtype = dtype_from_name(name);
  }
  c.keep_module_on_host = bool_or(r, "keep_module_on_host", false);
  if (r.present("partition_config")) {
    c.partition_config = read_partition_config(r.get_map("partition_config"), source);
  }
  // TPConfig sub-section, under its name or its alias.
  const bool has_tp = r.present("tp"), has_long = r.present("tensor_parallel");
  if (has_tp && has_long) {
    r.fail("tp", "and 'tensor_parallel.tensor_parallel' are the same section; give one");
  }
  MapReader sub = r.get_map(has_long ? "tensor_parallel" : "tp");
  c.tp_size = int_at_least(sub, "tp_size", 1, 1);
  c.tp_grain_size = int_at_least(sub, "tp_grain_size", 1, 1);
  if (c.tp_size != 1 && c.tp_size != c.autotp_size) {
    sub.fail("tp_size", fmt::format("must be 1 or equal to autotp_size ({}), got {}", c.autotp_size,
                                    c.tp_size));
  }
  sub.ignore({"mpu", "tp_group"});
  sub.finish();
  if (c.autotp_size > 0) c.tp_size = c.autotp_size;
  r.ignore({"replace_with_kernel_inject", "kernel_inject", "injection_policy_tuple"});
  r.finish();
  return c;
}

ModelSection read_model(MapReader& root) {
  ModelSection m;
  m.where = root.where("model");
  const YAML::Node node = root.get_node("model");
  if (!node.IsDefined() || node.IsNull()) return m;
  if (!node.IsMap()) {
    root.fail("model",
              "must be a map: Hugging Face config.json fields, or 'path:' to a "
              "config.json or a checkpoint directory");
  }
  m.node = node;
  if (const YAML::Node path = node["path"]; path.IsDefined()) {
    if (!path.IsScalar() || path.Scalar().empty()) {
      root.fail("model", "has a 'path' that is not a file or directory name");
    }
    m.path = path.Scalar();
  }
  return m;
}

DataConfig read_data(MapReader r, uint64_t default_seed) {
  DataConfig c;
  const std::string type = r.get_string("type").value_or("synthetic");
  if (type != "synthetic" && type != "tokens" && type != "text") {
    r.fail("type", fmt::format("must be synthetic, tokens or text, got '{}'", type));
  }
  c.type = data_source_type_from_name(type);
  c.path = r.get_string("path").value_or("");
  if (c.type == DataSourceType::Tokens && c.path.empty()) {
    r.fail("path", "is required for data type 'tokens' (a flat uint16/uint32 token file)");
  }
  // A file given to the synthetic stream would be silently unused.
  if (c.type == DataSourceType::Synthetic && !c.path.empty()) {
    r.fail("path", fmt::format("is given, but data.type is '{}', which reads no file (set type: "
                               "tokens for a token file, or text for a text file)",
                               type));
  }
  if (const auto dtype = r.get_string("dtype")) {
    // The default width is accepted anywhere: earlier versions wrote it into every saved
    // config (run directories' config.yaml, checkpoints' state.json).
    if (c.type != DataSourceType::Tokens && *dtype != "uint16") {
      r.fail("dtype", fmt::format("is the token file's integer width, but data.type is '{}' "
                                  "(set type: tokens)",
                                  type));
    }
    if (*dtype != "uint16" && *dtype != "uint32") {
      r.fail("dtype", fmt::format("must be uint16 or uint32, got '{}'", *dtype));
    }
    c.dtype = token_dtype_from_name(*dtype);
  }
  const std::optional<int64_t> seq_len = r.get_int("seq_len");
  if (!seq_len) r.fail("seq_len", "is required: the number of tokens per training row");
  if (*seq_len < 1) r.fail("seq_len", fmt::format("must be >= 1, got {}", *seq_len));
  c.seq_len = *seq_len;
  c.seed = static_cast<uint64_t>(int_at_least(r, "seed", static_cast<int64_t>(default_seed), 0));
  // Absent (0): the vocabulary of the model that reads the data, resolved once it is built
  // (resolve_data_config), so `autotp eval --model DIR` takes DIR's, not the config's.
  c.vocab_size = int_at_least(r, "vocab_size", 0, 2);
  r.finish();
  return c;
}

TrainConfig read_train(MapReader r, uint64_t default_seed, int64_t steps_per_print) {
  TrainConfig c;
  const std::optional<int64_t> steps = r.get_int("steps");
  if (!steps) r.fail("steps", "is required: the number of optimizer steps to train");
  if (*steps < 1) r.fail("steps", fmt::format("must be >= 1, got {}", *steps));
  c.steps = *steps;
  c.seed = static_cast<uint64_t>(int_at_least(r, "seed", static_cast<int64_t>(default_seed), 0));
  c.log_interval = int_at_least(r, "log_interval", steps_per_print, 1);
  c.checkpoint_interval = int_at_least(r, "checkpoint_interval", 0, 0);
  c.out_dir = r.get_string("out_dir").value_or("runs/autotp");
  if (c.out_dir.empty()) r.fail("out_dir", "must not be empty");
  c.eval_interval = int_at_least(r, "eval_interval", 0, 0);
  r.finish();
  return c;
}

KernelConfig read_kernels(MapReader r, int64_t autotp_size) {
  KernelConfig k;
  k.attention_row_tiles = int_at_least(r, "attention_row_tiles", 1, 1);
  if (k.attention_row_tiles > 2) {
    r.fail("attention_row_tiles",
           fmt::format("must be 1 (64-row blocks) or 2 (128-row blocks), got {}",
                       k.attention_row_tiles));
  }
  k.attention_dkdv_kv_in_registers = bool_or(r, "attention_dkdv_kv_in_registers", false);
  k.attention_longest_first = bool_or(r, "attention_longest_first", true);
  k.attention_dq_from_stored_scores = bool_or(r, "attention_dq_from_stored_scores", false);
  k.gemm_autotune = bool_or(r, "gemm_autotune", false);
  if (k.gemm_autotune && autotp_size > 1) {
    // Each rank would time and choose on its own: the replicated parameters (norms, an
    // unsharded lm_head), whose gradients every TP rank computes locally, would drift apart.
    r.fail("gemm_autotune",
           fmt::format("cannot be combined with tensor parallelism (tensor_parallel.autotp_size "
                       "{}): TP ranks keep their replicated parameters bit-identical by running "
                       "the same GEMM algorithms, and each rank's timings could pick others",
                       autotp_size));
  }
  if (k.attention_dq_from_stored_scores && k.attention_dkdv_kv_in_registers) {
    r.fail("attention_dq_from_stored_scores",
           "cannot be combined with attention_dkdv_kv_in_registers: true (the stored-score "
           "backward has its own dk/dv kernel); set one of the two");
  }
  r.finish();
  return k;
}

}  // namespace

ops::AttentionKernels attention_kernels_for(const KernelConfig& kernels, int64_t head_dim) {
  const bool needs_small_head_dim =
      kernels.attention_row_tiles != 1 || kernels.attention_dkdv_kv_in_registers;
  AUTOTP_CHECK(!needs_small_head_dim || head_dim <= 64,
               "kernels: attention_row_tiles {} / attention_dkdv_kv_in_registers {} need a head "
               "dim of at most 64; the model's head_dim is {} (leave both at their defaults)",
               kernels.attention_row_tiles, kernels.attention_dkdv_kv_in_registers, head_dim);
  ops::AttentionKernels variant;
  variant.row_tiles_per_warp = static_cast<int>(kernels.attention_row_tiles);
  variant.dkdv_kv_in_registers = kernels.attention_dkdv_kv_in_registers;
  variant.longest_first = kernels.attention_longest_first;
  variant.dq_from_stored_scores = kernels.attention_dq_from_stored_scores;
  return variant;
}

BatchConfig resolve_batch_sizes(std::optional<int64_t> train_batch_size,
                                std::optional<int64_t> micro_batch_per_gpu,
                                std::optional<int64_t> gradient_accumulation_steps,
                                int64_t dp_size) {
  AUTOTP_CHECK(dp_size >= 1, "batch sizes: the data-parallel size must be >= 1, got {}", dp_size);
  const auto check_positive = [](const std::optional<int64_t>& v, const char* name) {
    AUTOTP_CHECK(!v || *v >= 1, "batch sizes: {} must be >= 1, got {}", name, *v);
  };
  check_positive(train_batch_size, "train_batch_size");
  check_positive(micro_batch_per_gpu, "train_micro_batch_size_per_gpu");
  check_positive(gradient_accumulation_steps, "gradient_accumulation_steps");
  const char* rule =
      "train_batch_size = train_micro_batch_size_per_gpu x "
      "gradient_accumulation_steps x data-parallel size";
  BatchConfig b;
  b.dp_size = dp_size;
  const auto& tbs = train_batch_size;
  const auto& micro = micro_batch_per_gpu;
  const auto& accum = gradient_accumulation_steps;
  // Derives the one unknown factor, or explains why it is not a whole number.
  const auto divide = [&](int64_t total, int64_t known, const std::string& known_text,
                          const char* unknown) {
    AUTOTP_CHECK(total % known == 0,
                 "batch sizes: {} must hold, but train_batch_size {} is not divisible by {} = {} "
                 "(so {} would not be a whole number)",
                 rule, total, known_text, known, unknown);
    return total / known;
  };
  if (tbs && micro && accum) {
    AUTOTP_CHECK(*tbs == *micro * *accum * dp_size,
                 "batch sizes: {} does not hold: {} != {} x {} x {} = {}", rule, *tbs, *micro,
                 *accum, dp_size, *micro * *accum * dp_size);
    b.train_batch_size = *tbs;
    b.micro_batch_per_gpu = *micro;
    b.gradient_accumulation_steps = *accum;
  } else if (tbs && micro) {
    b.train_batch_size = *tbs;
    b.micro_batch_per_gpu = *micro;
    b.gradient_accumulation_steps =
        divide(*tbs, *micro * dp_size,
               fmt::format("train_micro_batch_size_per_gpu x data-parallel size = {} x {}", *micro,
                           dp_size),
               "gradient_accumulation_steps");
  } else if (tbs && accum) {
    b.train_batch_size = *tbs;
    b.gradient_accumulation_steps = *accum;
    b.micro_batch_per_gpu = divide(
        *tbs, *accum * dp_size,
        fmt::format("gradient_accumulation_steps x data-parallel size = {} x {}", *accum, dp_size),
        "train_micro_batch_size_per_gpu");
  } else if (micro) {
    b.micro_batch_per_gpu = *micro;
    b.gradient_accumulation_steps = accum.value_or(1);
    b.train_batch_size = *micro * b.gradient_accumulation_steps * dp_size;
  } else if (tbs) {
    b.train_batch_size = *tbs;
    b.gradient_accumulation_steps = 1;
    b.micro_batch_per_gpu = divide(*tbs, dp_size, fmt::format("the data-parallel size {}", dp_size),
                                   "train_micro_batch_size_per_gpu");
  } else {
    AUTOTP_FAIL(
        "batch sizes: give train_batch_size or train_micro_batch_size_per_gpu (or "
        "both); {}",
        rule);
  }
  return b;
}

Config config_from_yaml(YAML::Node root, const ConfigLoadOptions& options,
                        const std::string& source_name) {
  Config cfg;
  cfg.source = source_name;
  YamlSource source;
  source.name = source_name;
  source.warnings = &cfg.warnings;
  for (const std::string& assignment : options.overrides) {
    source.overridden.insert(apply_override(root, assignment));
    cfg.overrides.push_back(assignment);
  }

  MapReader r(root, "", source);
  r.ignore(kIgnoredTopLevel);
  // The top-level keys read below: a misspelled one is named first (rather than, say, the
  // batch sizes or 'train.steps' its misspelling leaves missing).
  r.expect_only({"seed", "steps_per_print", "gradient_clipping", "bf16", "bfloat16", "fp16",
                 "zero_optimization", "optimizer", "tensor_parallel", "model", "train", "kernels",
                 "data", "scheduler", "data_parallel_size", "train_batch_size",
                 "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"});
  cfg.seed = static_cast<uint64_t>(int_at_least(r, "seed", 1234, 0));
  cfg.steps_per_print = int_at_least(r, "steps_per_print", 10, 1);
  cfg.gradient_clipping = float_in(r, "gradient_clipping", 0.0, 0.0, HUGE_VAL);

  const bool has_bf16 = r.present("bf16"), has_bfloat16 = r.present("bfloat16");
  if (has_bf16 && has_bfloat16) r.fail("bfloat16", "is the old name of 'bf16'; give one");
  cfg.bf16 = read_bf16(r.get_map(has_bfloat16 ? "bfloat16" : "bf16"));
  cfg.fp16 = read_fp16(r.get_map("fp16"));
  if (cfg.bf16 && cfg.fp16.enabled) {
    r.fail("fp16", "and bf16 are both enabled; enable at most one");
  }

  {
    MapReader zero = r.get_map("zero_optimization");
    cfg.zero_stage = int_at_least(zero, "stage", 0, 0);
    if (cfg.zero_stage > 2) {
      zero.fail("stage",
                fmt::format("is {}, but autotp implements ZeRO stages 0, 1 and 2", cfg.zero_stage));
    }
    cfg.zero_overlap_comm = bool_or(zero, "overlap_comm", true);
    // DeepSpeed configs often write it as a float (5e8): any whole number is accepted.
    if (const std::optional<double> size = zero.get_float("reduce_bucket_size")) {
      if (*size < 1 || *size != std::floor(*size) || *size > 1e12) {
        zero.fail("reduce_bucket_size",
                  fmt::format("must be a whole number of elements in [1, 1e12], got {}", *size));
      }
      cfg.zero_reduce_bucket_size = static_cast<int64_t>(*size);
    }
    zero.ignore(kIgnoredZero);
    zero.finish();
  }

  if (r.present("optimizer")) {
    cfg.optimizer = read_optimizer(r.get_map("optimizer"));
  } else {
    cfg.optimizer.adamw.weight_decay = 0.0;  // DeepSpeed's FusedAdam default
  }
  cfg.tensor_parallel = read_tensor_parallel(r.get_map("tensor_parallel"), source);
  cfg.model = read_model(r);
  for (const std::string& path : source.overridden) {
    if (path.rfind("model.", 0) == 0) cfg.model.overridden.push_back(path.substr(6));
  }
  cfg.train = read_train(r.get_map("train"), cfg.seed, cfg.steps_per_print);
  cfg.kernels = read_kernels(r.get_map("kernels"), cfg.tensor_parallel.autotp_size);
  cfg.data = read_data(r.get_map("data"), cfg.train.seed);
  cfg.scheduler.base_lr = cfg.optimizer.adamw.lr;
  if (r.present("scheduler")) {
    cfg.scheduler = read_scheduler(r.get_map("scheduler"), cfg.optimizer.adamw.lr, cfg.train.steps);
  }

  // Batch sizes on the data-parallel size.
  const int64_t tp = std::max<int64_t>(1, cfg.tensor_parallel.autotp_size);
  const std::optional<int64_t> dp_key = r.get_int("data_parallel_size");
  if (dp_key && *dp_key < 1)
    r.fail("data_parallel_size", fmt::format("must be >= 1, got {}", *dp_key));
  int64_t dp = dp_key.value_or(1);
  if (options.world_size) {
    const int64_t world = *options.world_size;
    AUTOTP_CHECK(world >= 1 && world % tp == 0,
                 "{}: the world size {} is not divisible by tensor_parallel.autotp_size {}",
                 r.where("tensor_parallel"), world, tp);
    if (dp_key && *dp_key != world / tp) {
      r.fail("data_parallel_size", fmt::format("is {}, but world size {} / autotp_size {} gives {}",
                                               *dp_key, world, tp, world / tp));
    }
    dp = world / tp;
  }
  const std::optional<int64_t> tbs = r.get_int("train_batch_size");
  const std::optional<int64_t> micro = r.get_int("train_micro_batch_size_per_gpu");
  const std::optional<int64_t> accum = r.get_int("gradient_accumulation_steps");
  try {
    cfg.batch = resolve_batch_sizes(tbs, micro, accum, dp);
  } catch (const Error& e) {
    AUTOTP_FAIL("{}: {}", tbs ? r.where("train_batch_size") : source_name, e.what());
  }
  r.finish();
  return cfg;
}

Config parse_config(const std::string& yaml_text, const ConfigLoadOptions& options,
                    const std::string& source_name) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    AUTOTP_FAIL("{} line {}: invalid YAML: {}", source_name, e.mark.line + 1, e.msg);
  }
  return config_from_yaml(root, options, source_name);
}

Config load_config_file(const std::string& path, const ConfigLoadOptions& options) {
  AUTOTP_CHECK(!std::filesystem::is_directory(path), "config file '{}' is a directory", path);
  std::ifstream in(path);
  AUTOTP_CHECK(in.good(), "cannot read config file '{}'", path);
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), options, path);
}

}  // namespace autotp
