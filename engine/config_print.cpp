// The resolved config as text: a readable summary for the start of a run, and YAML that
// parses back to the same Config (written next to a run's outputs).
#include "core/error.h"
#include "engine/config.h"

namespace autotp {

std::string kernel_config_summary(const KernelConfig& k) {
  return fmt::format("attention {}-row blocks, dk/dv K,V {}, {}, dq {}{}",
                     64 * k.attention_row_tiles,
                     k.attention_dkdv_kv_in_registers ? "in registers" : "reloaded per tile",
                     k.attention_longest_first ? "longest blocks first" : "blocks by head",
                     k.attention_dq_from_stored_scores ? "from stored dS" : "recomputes dS",
                     k.gemm_autotune ? "; GEMM algorithms autotuned" : "");
}

std::string config_summary(const Config& c) {
  std::string s;
  const auto line = [&s](const std::string& key, const std::string& value) {
    s += fmt::format("  {:<22} {}\n", key + ":", value);
  };
  s += fmt::format("config {}{}\n", c.source, c.overrides.empty() ? "" : " (with --set overrides)");
  for (const std::string& o : c.overrides)
    line("--set", o);
  line("batch", fmt::format("train_batch_size {} = micro {} x accumulation {} x data-parallel {}",
                            c.batch.train_batch_size, c.batch.micro_batch_per_gpu,
                            c.batch.gradient_accumulation_steps, c.batch.dp_size));
  line("precision", c.bf16 ? "bf16" : c.fp16.enabled ? "fp16" : "fp32");
  const AdamWOptions& o = c.optimizer.adamw;
  line("optimizer", fmt::format("{} lr {} betas [{}, {}] eps {} weight_decay {}{}{}",
                                c.optimizer.type, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay,
                                o.decoupled_weight_decay ? "" : " (L2, adam_w_mode false)",
                                o.bias_correction ? "" : " (no bias correction)"));
  const LrScheduleConfig& l = c.scheduler;
  switch (l.type) {
    case LrScheduleType::Constant:
      line("scheduler", fmt::format("constant lr {}", l.base_lr));
      break;
    case LrScheduleType::WarmupLR:
      line("scheduler",
           fmt::format("WarmupLR {} -> {} over {} steps ({})", l.warmup_min_lr, l.warmup_max_lr,
                       l.warmup_num_steps, warmup_type_name(l.warmup_type)));
      break;
    case LrScheduleType::WarmupDecayLR:
      line("scheduler", fmt::format("WarmupDecayLR {} -> {} over {} steps ({}), linear decay to "
                                    "step {}",
                                    l.warmup_min_lr, l.warmup_max_lr, l.warmup_num_steps,
                                    warmup_type_name(l.warmup_type), l.total_num_steps));
      break;
    case LrScheduleType::WarmupCosineLR:
      line("scheduler", fmt::format("WarmupCosineLR peak {} warmup {} steps ({}, from ratio {}), "
                                    "cosine to ratio {} at step {}",
                                    l.base_lr, l.warmup_num_steps, warmup_type_name(l.warmup_type),
                                    l.warmup_min_ratio, l.cos_min_ratio, l.total_num_steps));
      break;
  }
  line("gradient_clipping",
       c.gradient_clipping > 0 ? fmt::format("{}", c.gradient_clipping) : "off");
  line("zero_optimization",
       fmt::format("stage {}, reduce_bucket_size {}, overlap_comm {}", c.zero_stage,
                   c.zero_reduce_bucket_size, c.zero_overlap_comm ? "on" : "off"));
  const TensorParallelConfig& tp = c.tensor_parallel;
  if (tp.autotp_size > 0) {
    line("tensor_parallel",
         fmt::format("autotp_size {}{}{}{}", tp.autotp_size,
                     tp.preset_model.empty() ? "" : " preset " + tp.preset_model,
                     tp.partition_config
                         ? fmt::format(" ({} layer specs)", tp.partition_config->layer_specs.size())
                         : "",
                     tp.tp_overlap_comm ? " overlap_comm" : ""));
  } else {
    line("tensor_parallel", "off");
  }
  if (!c.model.present()) {
    line("model", "(none)");
  } else if (!c.model.path.empty()) {
    line("model", "path " + c.model.path);
  } else {
    std::string fields;
    for (auto it = c.model.node.begin(); it != c.model.node.end(); ++it) {
      if (!it->second.IsScalar()) continue;
      fields += fmt::format("{}{}={}", fields.empty() ? "" : " ", it->first.Scalar(),
                            it->second.Scalar());
    }
    line("model", fields);
  }
  const DataConfig& d = c.data;
  std::string data = fmt::format("{}", data_source_type_name(d.type));
  if (d.type != DataSourceType::Synthetic)
    data += " " + (d.path.empty() ? "(embedded corpus)" : d.path);
  if (d.type == DataSourceType::Tokens) data += fmt::format(" ({})", token_dtype_name(d.dtype));
  data += fmt::format(" seq_len {} seed {}", d.seq_len, d.seed);
  if (d.vocab_size > 0) data += fmt::format(" vocab_size {}", d.vocab_size);
  line("data", data);
  const TrainConfig& t = c.train;
  line("train",
       fmt::format("steps {} seed {} log every {} checkpoint every {} eval every {} "
                   "out_dir {}",
                   t.steps, t.seed, t.log_interval,
                   t.checkpoint_interval > 0 ? std::to_string(t.checkpoint_interval) : "-",
                   t.eval_interval > 0 ? std::to_string(t.eval_interval) : "-", t.out_dir));
  line("kernels", kernel_config_summary(c.kernels));
  for (const std::string& w : c.warnings)
    s += "  warning: " + w + "\n";
  return s;
}

std::string config_to_yaml(const Config& c) {
  YAML::Emitter e;
  e.SetDoublePrecision(17);
  e << YAML::BeginMap;
  e << YAML::Key << "train_batch_size" << YAML::Value << c.batch.train_batch_size;
  e << YAML::Key << "train_micro_batch_size_per_gpu" << YAML::Value << c.batch.micro_batch_per_gpu;
  e << YAML::Key << "gradient_accumulation_steps" << YAML::Value
    << c.batch.gradient_accumulation_steps;
  e << YAML::Key << "data_parallel_size" << YAML::Value << c.batch.dp_size;
  e << YAML::Key << "gradient_clipping" << YAML::Value << c.gradient_clipping;
  e << YAML::Key << "steps_per_print" << YAML::Value << c.steps_per_print;
  e << YAML::Key << "seed" << YAML::Value << c.seed;
  e << YAML::Key << "bf16" << YAML::Value << YAML::BeginMap << YAML::Key << "enabled" << YAML::Value
    << c.bf16 << YAML::EndMap;
  e << YAML::Key << "fp16" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "enabled" << YAML::Value << c.fp16.enabled;
  e << YAML::Key << "loss_scale" << YAML::Value << c.fp16.loss_scale;
  e << YAML::Key << "initial_scale_power" << YAML::Value << c.fp16.initial_scale_power;
  e << YAML::Key << "loss_scale_window" << YAML::Value << c.fp16.loss_scale_window;
  e << YAML::Key << "hysteresis" << YAML::Value << c.fp16.hysteresis;
  e << YAML::Key << "consecutive_hysteresis" << YAML::Value << c.fp16.consecutive_hysteresis;
  e << YAML::Key << "min_loss_scale" << YAML::Value << c.fp16.min_loss_scale;
  e << YAML::EndMap;
  const AdamWOptions& o = c.optimizer.adamw;
  e << YAML::Key << "optimizer" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "type" << YAML::Value << c.optimizer.type;
  e << YAML::Key << "params" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "lr" << YAML::Value << o.lr;
  e << YAML::Key << "betas" << YAML::Value << YAML::Flow << YAML::BeginSeq << o.beta1 << o.beta2
    << YAML::EndSeq;
  e << YAML::Key << "eps" << YAML::Value << o.eps;
  e << YAML::Key << "weight_decay" << YAML::Value << o.weight_decay;
  e << YAML::Key << "bias_correction" << YAML::Value << o.bias_correction;
  if (c.optimizer.type == "Adam") {
    e << YAML::Key << "adam_w_mode" << YAML::Value << o.decoupled_weight_decay;
  }
  e << YAML::EndMap << YAML::EndMap;
  const LrScheduleConfig& l = c.scheduler;
  if (l.type != LrScheduleType::Constant) {
    e << YAML::Key << "scheduler" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "type" << YAML::Value << lr_schedule_type_name(l.type);
    e << YAML::Key << "params" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "warmup_num_steps" << YAML::Value << l.warmup_num_steps;
    e << YAML::Key << "warmup_type" << YAML::Value << warmup_type_name(l.warmup_type);
    if (l.type != LrScheduleType::WarmupCosineLR) {
      e << YAML::Key << "warmup_min_lr" << YAML::Value << l.warmup_min_lr;
      e << YAML::Key << "warmup_max_lr" << YAML::Value << l.warmup_max_lr;
    }
    if (l.type != LrScheduleType::WarmupLR) {
      e << YAML::Key << "total_num_steps" << YAML::Value << l.total_num_steps;
    }
    if (l.type == LrScheduleType::WarmupCosineLR) {
      e << YAML::Key << "warmup_min_ratio" << YAML::Value << l.warmup_min_ratio;
      e << YAML::Key << "cos_min_ratio" << YAML::Value << l.cos_min_ratio;
    }
    e << YAML::EndMap << YAML::EndMap;
  }
  e << YAML::Key << "zero_optimization" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "stage" << YAML::Value << c.zero_stage;
  e << YAML::Key << "overlap_comm" << YAML::Value << c.zero_overlap_comm;
  e << YAML::Key << "reduce_bucket_size" << YAML::Value << c.zero_reduce_bucket_size;
  e << YAML::EndMap;
  const TensorParallelConfig& tp = c.tensor_parallel;
  e << YAML::Key << "tensor_parallel" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "autotp_size" << YAML::Value << tp.autotp_size;
  if (!tp.preset_model.empty()) e << YAML::Key << "preset_model" << YAML::Value << tp.preset_model;
  e << YAML::Key << "tp_overlap_comm" << YAML::Value << tp.tp_overlap_comm;
  e << YAML::Key << "dtype" << YAML::Value << std::string(dtype_name(tp.dtype));
  e << YAML::Key << "keep_module_on_host" << YAML::Value << tp.keep_module_on_host;
  if (tp.partition_config) {
    const PartitionConfig& pc = *tp.partition_config;
    e << YAML::Key << "partition_config" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "use_default_specs" << YAML::Value << pc.use_default_specs;
    e << YAML::Key << "strict_mode" << YAML::Value << pc.strict_mode;
    e << YAML::Key << "layer_specs" << YAML::Value << YAML::BeginSeq;
    for (const LayerSpecConfig& s : pc.layer_specs) {
      e << YAML::BeginMap;
      e << YAML::Key << "patterns" << YAML::Value << YAML::BeginSeq;
      for (const std::string& p : s.patterns)
        e << YAML::SingleQuoted << p;
      e << YAML::EndSeq;
      e << YAML::Key << "partition_type" << YAML::Value << s.partition_type;
      if (s.shape) {
        e << YAML::Key << "shape" << YAML::Value << YAML::Flow << YAML::BeginSeq;
        for (size_t i = 0; i < s.shape->size(); ++i) {
          if (s.shape_nested[i]) {
            e << YAML::Flow << YAML::BeginSeq;
            for (int64_t v : (*s.shape)[i])
              e << v;
            e << YAML::EndSeq;
          } else {
            e << (*s.shape)[i][0];
          }
        }
        e << YAML::EndSeq;
      }
      if (s.partition_dim) e << YAML::Key << "partition_dim" << YAML::Value << *s.partition_dim;
      if (s.model_types) {
        e << YAML::Key << "model_types" << YAML::Value << YAML::Flow << *s.model_types;
      }
      e << YAML::Key << "gather_output" << YAML::Value << s.gather_output;
      e << YAML::Key << "grad_allreduce" << YAML::Value << s.grad_allreduce;
      e << YAML::EndMap;
    }
    e << YAML::EndSeq << YAML::EndMap;
  }
  e << YAML::Key << "tp" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "tp_size" << YAML::Value << tp.tp_size;
  e << YAML::Key << "tp_grain_size" << YAML::Value << tp.tp_grain_size;
  e << YAML::EndMap << YAML::EndMap;
  if (c.model.present()) e << YAML::Key << "model" << YAML::Value << c.model.node;
  const DataConfig& d = c.data;
  e << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "type" << YAML::Value << data_source_type_name(d.type);
  if (!d.path.empty()) e << YAML::Key << "path" << YAML::Value << d.path;
  if (d.type == DataSourceType::Tokens) {
    e << YAML::Key << "dtype" << YAML::Value << token_dtype_name(d.dtype);
  }
  e << YAML::Key << "seq_len" << YAML::Value << d.seq_len;
  e << YAML::Key << "seed" << YAML::Value << d.seed;
  if (d.vocab_size > 0) e << YAML::Key << "vocab_size" << YAML::Value << d.vocab_size;
  e << YAML::EndMap;
  const TrainConfig& t = c.train;
  e << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "steps" << YAML::Value << t.steps;
  e << YAML::Key << "seed" << YAML::Value << t.seed;
  e << YAML::Key << "log_interval" << YAML::Value << t.log_interval;
  e << YAML::Key << "checkpoint_interval" << YAML::Value << t.checkpoint_interval;
  e << YAML::Key << "out_dir" << YAML::Value << t.out_dir;
  e << YAML::Key << "eval_interval" << YAML::Value << t.eval_interval;
  e << YAML::EndMap;
  e << YAML::Key << "kernels" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "attention_row_tiles" << YAML::Value << c.kernels.attention_row_tiles;
  e << YAML::Key << "attention_dkdv_kv_in_registers" << YAML::Value
    << c.kernels.attention_dkdv_kv_in_registers;
  e << YAML::Key << "attention_longest_first" << YAML::Value << c.kernels.attention_longest_first;
  e << YAML::Key << "attention_dq_from_stored_scores" << YAML::Value
    << c.kernels.attention_dq_from_stored_scores;
  e << YAML::Key << "gemm_autotune" << YAML::Value << c.kernels.gemm_autotune;
  e << YAML::EndMap;
  e << YAML::EndMap;
  AUTOTP_ASSERT(e.good(), "config_to_yaml: emitter error {}", e.GetLastError());
  return std::string(e.c_str()) + "\n";
}

}  // namespace autotp
