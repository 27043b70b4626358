// Config parsing: a full valid config, defaults and "auto", typo'd keys (line + closest key),
// wrong types, ignored DeepSpeed keys, the batch-size equation, --set overrides, round trip.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/config.h"
#include "engine/yaml_reader.h"
#include "tests/core/nn_test_helpers.h"

namespace autotp {
namespace {

const char* kFullConfig = R"(# a complete config
train_batch_size: 16
train_micro_batch_size_per_gpu: 4
gradient_accumulation_steps: 2
data_parallel_size: 2
gradient_clipping: 1.0
steps_per_print: 5
seed: 7
bf16:
  enabled: true
optimizer:
  type: AdamW
  params:
    lr: 3.0e-4
    betas: [0.9, 0.95]
    eps: 1.0e-8
    weight_decay: 0.1
scheduler:
  type: WarmupCosineLR
  params:
    total_num_steps: 1000
    warmup_num_steps: 100
    warmup_min_ratio: 0.05
    cos_min_ratio: 0.1
    warmup_type: linear
zero_optimization:
  stage: 1
  overlap_comm: false
  reduce_bucket_size: 5e8
tensor_parallel:
  autotp_size: 2
  preset_model: Llama
  tp_overlap_comm: true
  dtype: bfloat16
  partition_config:
    use_default_specs: false
    layer_specs:
      - patterns: [".*\\.q_proj\\.weight$", ".*\\.k_proj\\.weight$"]
        partition_type: column
      - patterns: [".*\\.qkv\\.weight$"]
        partition_type: Column
        shape: [3, -1]
        partition_dim: 0
      - patterns: [".*\\.o_proj\\.weight$"]
        partition_type: row
        model_types: [Llama]
  tp:
    tp_grain_size: 64
model:
  model_type: llama
  vocab_size: 256
  hidden_size: 64
data:
  type: tokens
  path: data/train.bin
  dtype: uint32
  seq_len: 128
train:
  steps: 50
  log_interval: 10
  checkpoint_interval: 25
  out_dir: runs/test
  eval_interval: 20
)";

Config parse(const std::string& text, ConfigLoadOptions options = {}) {
  return parse_config(text, options, "test.yaml");
}

ConfigLoadOptions world(int64_t world_size) {
  ConfigLoadOptions o;
  o.world_size = world_size;
  return o;
}

ConfigLoadOptions overrides(std::vector<std::string> assignments) {
  ConfigLoadOptions o;
  o.overrides = std::move(assignments);
  return o;
}

const char* kMinimal =
    "train_micro_batch_size_per_gpu: 2\n"
    "data: {seq_len: 16, vocab_size: 50}\n"
    "train: {steps: 3}\n";

TEST(Config, AFullConfigParsesIntoTypedFields) {
  const Config c = parse(kFullConfig, world(4));
  EXPECT_EQ(c.batch.train_batch_size, 16);
  EXPECT_EQ(c.batch.micro_batch_per_gpu, 4);
  EXPECT_EQ(c.batch.gradient_accumulation_steps, 2);
  EXPECT_EQ(c.batch.dp_size, 2);  // world 4 / autotp_size 2
  EXPECT_EQ(c.gradient_clipping, 1.0);
  EXPECT_EQ(c.steps_per_print, 5);
  EXPECT_EQ(c.seed, 7u);
  EXPECT_TRUE(c.bf16);
  EXPECT_FALSE(c.fp16.enabled);
  EXPECT_EQ(c.optimizer.type, "AdamW");
  EXPECT_EQ(c.optimizer.adamw.lr, 3e-4);
  EXPECT_EQ(c.optimizer.adamw.beta2, 0.95);
  EXPECT_EQ(c.optimizer.adamw.weight_decay, 0.1);
  EXPECT_TRUE(c.optimizer.adamw.decoupled_weight_decay);
  EXPECT_EQ(c.scheduler.type, LrScheduleType::WarmupCosineLR);
  EXPECT_EQ(c.scheduler.base_lr, 3e-4);
  EXPECT_EQ(c.scheduler.total_num_steps, 1000);
  EXPECT_EQ(c.scheduler.warmup_min_ratio, 0.05);
  EXPECT_EQ(c.scheduler.warmup_type, WarmupType::Linear);
  EXPECT_EQ(c.zero_stage, 1);
  EXPECT_FALSE(c.zero_overlap_comm);
  EXPECT_EQ(c.zero_reduce_bucket_size, 500000000);  // DeepSpeed's float spelling, whole
  const TensorParallelConfig& tp = c.tensor_parallel;
  EXPECT_EQ(tp.autotp_size, 2);
  EXPECT_EQ(tp.preset_model, "llama");
  EXPECT_TRUE(tp.tp_overlap_comm);
  EXPECT_EQ(tp.dtype, DType::BF16);
  EXPECT_EQ(tp.tp_size, 2);
  EXPECT_EQ(tp.tp_grain_size, 64);
  ASSERT_TRUE(tp.partition_config.has_value());
  const auto& specs = tp.partition_config->layer_specs;
  ASSERT_EQ(specs.size(), 3u);
  EXPECT_FALSE(tp.partition_config->use_default_specs);
  EXPECT_EQ(specs[0].patterns,
            (std::vector<std::string>{".*\\.q_proj\\.weight$", ".*\\.k_proj\\.weight$"}));
  EXPECT_EQ(specs[1].partition_type, "column");
  ASSERT_TRUE(specs[1].shape.has_value());
  EXPECT_EQ(*specs[1].shape, (std::vector<std::vector<int64_t>>{{3}, {-1}}));
  EXPECT_EQ(specs[1].partition_dim, 0);
  EXPECT_EQ(specs[2].partition_type, "row");
  EXPECT_EQ(*specs[2].model_types, std::vector<std::string>{"llama"});
  EXPECT_EQ(specs[2].where, "test.yaml line 44");
  EXPECT_EQ(c.model.node["hidden_size"].as<int>(), 64);
  EXPECT_TRUE(c.model.path.empty());
  EXPECT_EQ(c.data.type, DataSourceType::Tokens);
  EXPECT_EQ(c.data.path, "data/train.bin");
  EXPECT_EQ(c.data.dtype, TokenDType::U32);
  EXPECT_EQ(c.data.seq_len, 128);
  EXPECT_EQ(c.data.vocab_size, 0);  // absent: the model's, once it is built
  EXPECT_EQ(c.data.seed, 7u);       // train.seed, which defaults to the top-level seed
  EXPECT_EQ(c.train.steps, 50);
  EXPECT_EQ(c.train.checkpoint_interval, 25);
  EXPECT_EQ(c.train.out_dir, "runs/test");
  EXPECT_EQ(c.train.eval_interval, 20);
  EXPECT_TRUE(c.warnings.empty());
}

TEST(Config, AMinimalConfigGetsDeepSpeedDefaults) {
  const Config c = parse(kMinimal);
  EXPECT_EQ(c.batch.train_batch_size, 2);
  EXPECT_EQ(c.batch.gradient_accumulation_steps, 1);
  EXPECT_EQ(c.optimizer.type, "AdamW");
  EXPECT_EQ(c.optimizer.adamw.lr, 1e-3);
  EXPECT_EQ(c.optimizer.adamw.weight_decay, 0.0);  // DeepSpeed's FusedAdam default
  EXPECT_EQ(c.scheduler.type, LrScheduleType::Constant);
  EXPECT_EQ(c.scheduler.base_lr, 1e-3);
  EXPECT_EQ(c.gradient_clipping, 0.0);
  EXPECT_EQ(c.zero_stage, 0);
  EXPECT_TRUE(c.zero_overlap_comm);
  EXPECT_EQ(c.zero_reduce_bucket_size, 4194304);  // 16 MiB of f32 gradients
  EXPECT_EQ(c.tensor_parallel.autotp_size, 0);
  EXPECT_EQ(c.tensor_parallel.dtype, DType::F16);
  EXPECT_EQ(c.data.type, DataSourceType::Synthetic);
  EXPECT_EQ(c.train.log_interval, 10);  // steps_per_print
  EXPECT_EQ(c.train.seed, 1234u);
  EXPECT_FALSE(c.model.present());
}

TEST(Config, AutoMeansTheDefault) {
  const Config c = parse(std::string(kMinimal) +
                         "gradient_accumulation_steps: auto\n"
                         "optimizer: {type: adamw, params: {lr: 0.02, weight_decay: auto}}\n"
                         "scheduler: {type: WarmupDecayLR, params: {warmup_max_lr: auto, "
                         "total_num_steps: auto, warmup_num_steps: 1}}\n");
  EXPECT_EQ(c.batch.gradient_accumulation_steps, 1);
  EXPECT_EQ(c.optimizer.adamw.weight_decay, 0.0);
  EXPECT_EQ(c.scheduler.warmup_max_lr, 0.02);  // auto: the optimizer lr
  EXPECT_EQ(c.scheduler.total_num_steps, 3);   // auto: train.steps
  // Absent, WarmupDecayLR's DeepSpeed default is 0.001 while WarmupLR's is the optimizer lr.
  const Config decay = parse(std::string(kMinimal) +
                             "optimizer: {type: Adam, params: {lr: 0.02}}\n"
                             "scheduler: {type: WarmupDecayLR}\n");
  EXPECT_EQ(decay.scheduler.warmup_max_lr, 1e-3);
  const Config plain = parse(std::string(kMinimal) +
                             "optimizer: {type: Adam, params: {lr: 0.02}}\n"
                             "scheduler: {type: WarmupLR}\n");
  EXPECT_EQ(plain.scheduler.warmup_max_lr, 0.02);
}

TEST(Config, ADecayScheduleShorterThanItsWarmupIsAWarning) {
  const Config c = parse(std::string(kMinimal) +
                         "scheduler: {type: WarmupDecayLR, params: {warmup_num_steps: 20, "
                         "total_num_steps: 5}}\n");
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_NE(c.warnings[0].find("'scheduler.params.total_num_steps' gives total_num_steps 5 < "
                               "warmup_num_steps 20"),
            std::string::npos)
      << c.warnings[0];
  EXPECT_TRUE(parse(std::string(kMinimal) +
                    "scheduler: {type: WarmupDecayLR, params: {warmup_num_steps: 2}}\n")
                  .warnings.empty());
}

TEST(Config, AdamDecouplesUnlessAdamWModeIsFalse) {
  const auto decoupled = [&](const std::string& optimizer) {
    return parse(std::string(kMinimal) + optimizer).optimizer.adamw.decoupled_weight_decay;
  };
  EXPECT_TRUE(decoupled("optimizer: {type: Adam}\n"));
  EXPECT_FALSE(decoupled("optimizer: {type: Adam, params: {adam_w_mode: false}}\n"));
  EXPECT_TRUE(decoupled("optimizer: {type: AdamW, params: {adam_w_mode: false}}\n"));
}

TEST(Config, ATypoIsAnErrorWithItsLineAndTheClosestKey) {
  const std::string text = std::string(kMinimal) + "optimzer:\n  type: AdamW\n";
  EXPECT_ERROR_CONTAINS(parse(text), "test.yaml line 4: unknown key 'optimzer'");
  EXPECT_ERROR_CONTAINS(parse(text), "closest known key: 'optimizer'");
  const std::string nested =
      std::string(kMinimal) +
      "optimizer:\n  type: AdamW\n  params:\n    lr: 0.1\n    betass: [0.9, 0.9]\n";
  EXPECT_ERROR_CONTAINS(parse(nested), "test.yaml line 8: unknown key 'optimizer.params.betass'");
  EXPECT_ERROR_CONTAINS(parse(nested), "closest known key: 'optimizer.params.betas'");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "train_batch_sise: 2\n"),
                        "closest known key: 'train_batch_size'");
  EXPECT_ERROR_CONTAINS(
      parse(std::string(kMinimal) + "tensor_parallel:\n  partition_config:\n    layer_specs:\n"
                                    "      - patterns: [a]\n        partition_typ: row\n"),
      "line 8: unknown key 'tensor_parallel.partition_config.layer_specs.0."
      "partition_typ'");
}

// A misspelled top-level key is the error, not what its misspelling leaves missing (the batch
// sizes, 'train.steps', 'data.seq_len').
TEST(Config, AMisspelledTopLevelKeyIsNamedBeforeTheKeysItLeavesMissing) {
  EXPECT_ERROR_CONTAINS(parse("train_micro_batch_size_per_gpus: 2\n"
                              "data: {seq_len: 16, vocab_size: 50}\ntrain: {steps: 3}\n"),
                        "test.yaml line 1: unknown key 'train_micro_batch_size_per_gpus' (closest "
                        "known key: 'train_micro_batch_size_per_gpu')");
  EXPECT_ERROR_CONTAINS(parse("train_micro_batch_size_per_gpu: 2\n"
                              "data: {seq_len: 16, vocab_size: 50}\ntrian: {steps: 3}\n"),
                        "test.yaml line 3: unknown key 'trian' (closest known key: 'train')");
  EXPECT_ERROR_CONTAINS(parse("train_micro_batch_size_per_gpu: 2\n"
                              "dataset: {seq_len: 16, vocab_size: 50}\ntrain: {steps: 3}\n"),
                        "test.yaml line 2: unknown key 'dataset' (closest known key: 'data')");
}

// data.path and data.dtype read nothing unless the type reads a file: never silently unused.
TEST(Config, DataPathOrDtypeWithoutAFileReadingTypeIsAnError) {
  const std::string head = "train_micro_batch_size_per_gpu: 2\ntrain: {steps: 3}\n";
  EXPECT_ERROR_CONTAINS(parse(head + "data: {seq_len: 16, vocab_size: 50, path: t.bin}\n"),
                        "'data.path' is given, but data.type is 'synthetic', which reads no file");
  EXPECT_ERROR_CONTAINS(parse(head + "data: {type: text, seq_len: 16, dtype: uint32}\n"),
                        "'data.dtype' is the token file's integer width, but data.type is 'text'");
  // The default width, which earlier versions wrote into every saved config, is accepted.
  EXPECT_EQ(parse(head + "data: {type: text, seq_len: 16, dtype: uint16}\n").data.seq_len, 16);
  EXPECT_EQ(parse(head + "data: {type: text, seq_len: 16, path: a.txt}\n").data.path, "a.txt");
}

TEST(Config, AWrongTypeNamesTheKeyItsLineAndTheExpectedType) {
  EXPECT_ERROR_CONTAINS(parse("train_micro_batch_size_per_gpu: 2\ndata: {seq_len: 8}\n"
                              "train:\n  steps: ten\n"),
                        "test.yaml line 4: 'train.steps' must be an integer, got 'ten'");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "gradient_clipping: [1]\n"),
                        "'gradient_clipping' must be a number, got a list");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "bf16: {enabled: maybe}\n"),
                        "'bf16.enabled' must be true or false, got 'maybe'");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "optimizer: AdamW\n"),
                        "'optimizer' must be a map, got 'AdamW'");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "optimizer: {type: Lamb}\n"),
                        "'optimizer.type' 'Lamb' is not supported (supported: AdamW, Adam)");
}

TEST(Config, BadValuesAreErrorsNamingTheKey) {
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "zero_optimization: {stage: 3}\n"),
                        "'zero_optimization.stage' is 3, but autotp implements ZeRO stages 0, 1 "
                        "and 2");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "bf16: {enabled: true}\n"
                                                      "fp16: {enabled: true}\n"),
                        "and bf16 are both enabled");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "scheduler: {type: OneCycle}\n"),
                        "'OneCycle' is a DeepSpeed scheduler that autotp does not implement");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "scheduler: {type: WarmupCosinLR}\n"),
                        "closest: 'WarmupCosineLR'");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "scheduler: {type: WarmupCosineLR, "
                                                      "params: {warmup_max_lr: 0.1}}\n"),
                        "unknown key 'scheduler.params.warmup_max_lr'");
  EXPECT_ERROR_CONTAINS(
      parse(std::string(kMinimal) + "scheduler: {type: WarmupLR, params: {warmup_type: cosine}}\n"),
      "'scheduler.params.warmup_type' must be 'log' or 'linear'");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "tensor_parallel: {preset_model: lama}\n"),
                        "closest: 'llama'");
  EXPECT_ERROR_CONTAINS(
      parse(std::string(kMinimal) + "tensor_parallel: {autotp_size: 4, tp: {tp_size: 2}}\n"),
      "must be 1 or equal to autotp_size (4), got 2");
  EXPECT_ERROR_CONTAINS(parse("train_micro_batch_size_per_gpu: 2\ntrain: {steps: 3}\n"),
                        "'data.seq_len' is required");
  EXPECT_ERROR_CONTAINS(parse("train_micro_batch_size_per_gpu: 2\ndata: {type: tokens, "
                              "seq_len: 8}\ntrain: {steps: 3}\n"),
                        "'data.path' is required for data type 'tokens'");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "seed: 1\nseed: 2\n"),
                        "key 'seed' appears twice");
  EXPECT_ERROR_CONTAINS(parse("train: {steps: 3\n"), "test.yaml line 2: invalid YAML");
}

TEST(Config, IgnoredDeepSpeedKeysGiveOneWarningEach) {
  const Config c = parse(std::string(kMinimal) +
                         "wall_clock_breakdown: false\n"
                         "zero_optimization:\n  stage: 2\n  contiguous_gradients: true\n"
                         "  stage3_max_live_parameters: 1000\n");
  ASSERT_EQ(c.warnings.size(), 3u);
  const auto has_warning = [&](const std::string& needle) {
    for (const std::string& w : c.warnings) {
      if (w.find(needle) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(
      has_warning("test.yaml line 4: 'wall_clock_breakdown' is a DeepSpeed setting that "
                  "autotp does not implement; ignored"));
  EXPECT_TRUE(has_warning("test.yaml line 7: 'zero_optimization.contiguous_gradients'"));
  EXPECT_TRUE(has_warning("test.yaml line 8: 'zero_optimization.stage3_max_live_parameters'"));
  EXPECT_EQ(c.zero_stage, 2);
}

TEST(Config, ZeroOverlapCommAndReduceBucketSizeAreReadAndCheckedByKey) {
  const Config c = parse(std::string(kMinimal) +
                         "zero_optimization: {stage: 2, overlap_comm: false, "
                         "reduce_bucket_size: 1000}\n");
  EXPECT_FALSE(c.zero_overlap_comm);
  EXPECT_EQ(c.zero_reduce_bucket_size, 1000);
  EXPECT_TRUE(c.warnings.empty());  // real keys now, not ignored DeepSpeed ones
  const Config on = parse(std::string(kMinimal) + "zero_optimization: {overlap_comm: true}\n");
  EXPECT_TRUE(on.zero_overlap_comm);
  EXPECT_ERROR_CONTAINS(
      parse(std::string(kMinimal) + "zero_optimization:\n  overlap_comm: sometimes\n"),
      "test.yaml line 5: 'zero_optimization.overlap_comm' must be true or false, got "
      "'sometimes'");
  EXPECT_ERROR_CONTAINS(
      parse(std::string(kMinimal) + "zero_optimization: {reduce_bucket_size: big}\n"),
      "'zero_optimization.reduce_bucket_size' must be a number, got 'big'");
  EXPECT_ERROR_CONTAINS(
      parse(std::string(kMinimal) + "zero_optimization: {reduce_bucket_size: [1]}\n"),
      "'zero_optimization.reduce_bucket_size' must be a number, got a list");
  for (const char* bad : {"0", "-5", "1.5", "2e12"}) {
    EXPECT_ERROR_CONTAINS(
        parse(std::string(kMinimal) + "zero_optimization: {reduce_bucket_size: " + bad + "}\n"),
        "'zero_optimization.reduce_bucket_size' must be a whole number of "
        "elements in [1, 1e12], got");
  }
  EXPECT_EQ(parse(std::string(kMinimal), overrides({"zero_optimization.reduce_bucket_size=64"}))
                .zero_reduce_bucket_size,
            64);
}

TEST(Config, KernelVariantsAreReadCheckedAndRoundTripped) {
  const Config d = parse(kMinimal);
  EXPECT_TRUE(d.kernels.is_default());
  const Config c = parse(std::string(kMinimal) +
                         "kernels:\n  attention_row_tiles: 2\n"
                         "  attention_dkdv_kv_in_registers: true\n");
  EXPECT_EQ(c.kernels.attention_row_tiles, 2);
  EXPECT_TRUE(c.kernels.attention_dkdv_kv_in_registers);
  const Config back = parse(config_to_yaml(c));
  EXPECT_EQ(back.kernels.attention_row_tiles, 2);
  EXPECT_TRUE(back.kernels.attention_dkdv_kv_in_registers);
  EXPECT_NE(config_summary(c).find("attention 128-row blocks, dk/dv K,V in registers"),
            std::string::npos)
      << config_summary(c);
  EXPECT_EQ(parse(std::string(kMinimal), overrides({"kernels.attention_row_tiles=2"}))
                .kernels.attention_row_tiles,
            2);
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "kernels:\n  attention_row_tiles: 3\n"),
                        "test.yaml line 5: 'kernels.attention_row_tiles' must be 1 (64-row "
                        "blocks) or 2 (128-row blocks), got 3");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "kernels:\n  attention_row_tile: 2\n"),
                        "attention_row_tiles");
  // A variant with a head dim above 64: one error naming the keys, before any model exists.
  EXPECT_EQ(attention_kernels_for(c.kernels, 64).row_tiles_per_warp, 2);
  EXPECT_TRUE(attention_kernels_for(c.kernels, 64).dkdv_kv_in_registers);
  EXPECT_NO_THROW(attention_kernels_for(d.kernels, 128));
  // The block order applies to every head dim.
  const Config by_head =
      parse(std::string(kMinimal) + "kernels: {attention_longest_first: false}\n");
  EXPECT_FALSE(by_head.kernels.attention_longest_first);
  EXPECT_FALSE(parse(config_to_yaml(by_head)).kernels.attention_longest_first);
  EXPECT_FALSE(attention_kernels_for(by_head.kernels, 128).longest_first);
  EXPECT_TRUE(attention_kernels_for(d.kernels, 128).longest_first);
  EXPECT_NE(config_summary(by_head).find("blocks by head"), std::string::npos);
  // dq from stored scores: any head dim, round-tripped, exclusive with K/V in registers.
  const Config stored =
      parse(std::string(kMinimal) + "kernels: {attention_dq_from_stored_scores: true}\n");
  EXPECT_TRUE(stored.kernels.attention_dq_from_stored_scores);
  EXPECT_FALSE(stored.kernels.is_default());
  EXPECT_TRUE(parse(config_to_yaml(stored)).kernels.attention_dq_from_stored_scores);
  EXPECT_TRUE(attention_kernels_for(stored.kernels, 128).dq_from_stored_scores);
  EXPECT_FALSE(attention_kernels_for(d.kernels, 128).dq_from_stored_scores);
  EXPECT_NE(config_summary(stored).find("dq from stored dS"), std::string::npos)
      << config_summary(stored);
  EXPECT_ERROR_CONTAINS(
      parse(std::string(kMinimal) + "kernels:\n  attention_dkdv_kv_in_registers: true\n"
                                    "  attention_dq_from_stored_scores: true\n"),
      "'kernels.attention_dq_from_stored_scores' cannot be combined with "
      "attention_dkdv_kv_in_registers");
  EXPECT_ERROR_CONTAINS(attention_kernels_for(c.kernels, 128),
                        "kernels: attention_row_tiles 2 / attention_dkdv_kv_in_registers true "
                        "need a head dim of at most 64; the model's head_dim is 128");
  // GEMM autotune: off by default, round-tripped, named in the summary only when on.
  EXPECT_FALSE(d.kernels.gemm_autotune);
  EXPECT_EQ(config_summary(d).find("GEMM"), std::string::npos) << config_summary(d);
  const Config tuned = parse(std::string(kMinimal) + "kernels: {gemm_autotune: true}\n");
  EXPECT_TRUE(tuned.kernels.gemm_autotune);
  EXPECT_FALSE(tuned.kernels.is_default());
  EXPECT_TRUE(parse(config_to_yaml(tuned)).kernels.gemm_autotune);
  EXPECT_FALSE(parse(config_to_yaml(d)).kernels.gemm_autotune);
  EXPECT_NE(config_summary(tuned).find("GEMM algorithms autotuned"), std::string::npos)
      << config_summary(tuned);
  EXPECT_TRUE(parse(std::string(kMinimal), overrides({"kernels.gemm_autotune=true"}))
                  .kernels.gemm_autotune);
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "kernels:\n  gemm_autotune: sometimes\n"),
                        "gemm_autotune");
  EXPECT_ERROR_CONTAINS(
      parse(std::string(kMinimal) +
            "tensor_parallel: {autotp_size: 2}\nkernels: {gemm_autotune: true}\n"),
      "'kernels.gemm_autotune' cannot be combined with tensor parallelism "
      "(tensor_parallel.autotp_size 2)");
  EXPECT_TRUE(parse(std::string(kMinimal) +
                    "tensor_parallel: {autotp_size: 1}\nkernels: {gemm_autotune: true}\n")
                  .kernels.gemm_autotune);
}

TEST(Config, BatchSizesFollowDeepSpeedsRuleOnTheDataParallelSize) {
  EXPECT_EQ(resolve_batch_sizes(32, 4, std::nullopt, 2).gradient_accumulation_steps, 4);
  EXPECT_EQ(resolve_batch_sizes(32, std::nullopt, 4, 2).micro_batch_per_gpu, 4);
  EXPECT_EQ(resolve_batch_sizes(std::nullopt, 4, 3, 2).train_batch_size, 24);
  const BatchConfig only_total = resolve_batch_sizes(8, std::nullopt, std::nullopt, 2);
  EXPECT_EQ(only_total.micro_batch_per_gpu, 4);
  EXPECT_EQ(only_total.gradient_accumulation_steps, 1);
  EXPECT_EQ(resolve_batch_sizes(std::nullopt, 4, std::nullopt, 3).train_batch_size, 12);
}

TEST(Config, InconsistentBatchSizesShowTheEquationWithTheNumbers) {
  EXPECT_ERROR_CONTAINS(resolve_batch_sizes(32, 4, 2, 2),
                        "train_batch_size = train_micro_batch_size_per_gpu x "
                        "gradient_accumulation_steps x data-parallel size does not hold: "
                        "32 != 4 x 2 x 2 = 16");
  EXPECT_ERROR_CONTAINS(resolve_batch_sizes(30, 4, std::nullopt, 2),
                        "train_batch_size 30 is not divisible by "
                        "train_micro_batch_size_per_gpu x data-parallel size = 4 x 2 = 8");
  EXPECT_ERROR_CONTAINS(resolve_batch_sizes(std::nullopt, std::nullopt, 2, 1),
                        "give train_batch_size or train_micro_batch_size_per_gpu");
  EXPECT_ERROR_CONTAINS(resolve_batch_sizes(0, 1, 1, 1), "train_batch_size must be >= 1");
  // Through the YAML, with the key's line and the world size.
  EXPECT_ERROR_CONTAINS(parse("train_batch_size: 8\ntrain_micro_batch_size_per_gpu: 2\n"
                              "gradient_accumulation_steps: 2\ndata: {seq_len: 8}\n"
                              "train: {steps: 1}\n",
                              world(4)),
                        "test.yaml line 1: batch sizes: train_batch_size = "
                        "train_micro_batch_size_per_gpu x gradient_accumulation_steps x "
                        "data-parallel size does not hold: 8 != 2 x 2 x 4 = 16");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "data_parallel_size: 2\n", world(4)),
                        "'data_parallel_size' is 2, but world size 4 / autotp_size 1 gives 4");
}

TEST(Config, SetOverridesApplyBeforeValidation) {
  const Config c = parse(
      kMinimal,
      overrides({"train.steps=20", "optimizer.params.lr=0.5", "optimizer.params.betas=[0.8, 0.9]",
                 "tensor_parallel.autotp_size=2", "data.type=text", "data.path=corpus.txt"}));
  EXPECT_EQ(c.train.steps, 20);
  EXPECT_EQ(c.optimizer.adamw.lr, 0.5);
  EXPECT_EQ(c.optimizer.adamw.beta1, 0.8);
  EXPECT_EQ(c.tensor_parallel.autotp_size, 2);
  EXPECT_EQ(c.data.type, DataSourceType::Text);
  EXPECT_EQ(c.overrides.size(), 6u);
  // Errors in overridden keys point at the --set, not at a line.
  EXPECT_ERROR_CONTAINS(parse(kMinimal, overrides({"train.stpes=5"})),
                        "--set train.stpes: unknown key 'train.stpes' (closest known key: "
                        "'train.steps')");
  EXPECT_ERROR_CONTAINS(parse(kMinimal, overrides({"train.steps=many"})),
                        "--set train.steps: 'train.steps' must be an integer, got 'many'");
  EXPECT_ERROR_CONTAINS(parse(kMinimal, overrides({"train.steps"})), "expected key.path=value");
}

TEST(Config, ApplyOverrideEditsTheTree) {
  YAML::Node root = YAML::Load("a: {b: 1}\nlist: [{x: 1}, {x: 2}]\nscalar: 3\n");
  EXPECT_EQ(apply_override(root, "a.b=5"), "a.b");
  EXPECT_EQ(root["a"]["b"].as<int>(), 5);
  apply_override(root, "new.deep.key=hello");
  EXPECT_EQ(root["new"]["deep"]["key"].as<std::string>(), "hello");
  apply_override(root, "list.1.x=7");
  EXPECT_EQ(root["list"][1]["x"].as<int>(), 7);
  apply_override(root, "a.b=");
  EXPECT_TRUE(root["a"]["b"].IsNull());
  EXPECT_ERROR_CONTAINS(apply_override(root, "scalar.x=1"), "'scalar' holds '3'");
  EXPECT_ERROR_CONTAINS(apply_override(root, "list.5.x=1"), "'list' is a list of 2 entries");
  EXPECT_ERROR_CONTAINS(apply_override(root, "a..b=1"), "empty segment");
  EXPECT_ERROR_CONTAINS(apply_override(root, "a.b=[1"), "is not valid YAML");
}

TEST(Config, ModelSectionIsKeptForTheRegistry) {
  const Config c = parse(std::string(kMinimal) + "model:\n  path: checkpoints/tiny\n");
  EXPECT_EQ(c.model.path, "checkpoints/tiny");
  EXPECT_EQ(c.model.where, "test.yaml line 4");
  EXPECT_ERROR_CONTAINS(parse(std::string(kMinimal) + "model: llama\n"), "'model' must be a map");
}

TEST(Config, ResolvedYamlParsesBackToTheSameConfig) {
  const Config a = parse(kFullConfig, world(4));
  const Config b = parse(config_to_yaml(a), world(4));
  EXPECT_EQ(b.batch.train_batch_size, a.batch.train_batch_size);
  EXPECT_EQ(b.batch.gradient_accumulation_steps, a.batch.gradient_accumulation_steps);
  EXPECT_EQ(b.optimizer.adamw.lr, a.optimizer.adamw.lr);
  EXPECT_EQ(b.optimizer.adamw.beta2, a.optimizer.adamw.beta2);
  EXPECT_EQ(b.scheduler.type, a.scheduler.type);
  EXPECT_EQ(b.scheduler.cos_min_ratio, a.scheduler.cos_min_ratio);
  EXPECT_EQ(b.scheduler.warmup_min_ratio, a.scheduler.warmup_min_ratio);
  EXPECT_EQ(b.tensor_parallel.dtype, a.tensor_parallel.dtype);
  EXPECT_EQ(b.tensor_parallel.partition_config->layer_specs[1].shape,
            a.tensor_parallel.partition_config->layer_specs[1].shape);
  EXPECT_EQ(b.tensor_parallel.partition_config->layer_specs[0].patterns,
            a.tensor_parallel.partition_config->layer_specs[0].patterns);
  EXPECT_EQ(b.model.node["hidden_size"].as<int>(), 64);
  EXPECT_EQ(b.data.path, a.data.path);
  EXPECT_EQ(b.data.seed, a.data.seed);
  EXPECT_EQ(b.train.eval_interval, a.train.eval_interval);
  EXPECT_EQ(b.bf16, a.bf16);
  EXPECT_EQ(b.zero_overlap_comm, a.zero_overlap_comm);
  EXPECT_EQ(b.zero_reduce_bucket_size, a.zero_reduce_bucket_size);
  EXPECT_TRUE(b.warnings.empty());
}

TEST(Config, SummaryShowsTheResolvedValues) {
  const Config c = parse(kFullConfig, world(4));
  const std::string s = config_summary(c);
  EXPECT_NE(s.find("train_batch_size 16 = micro 4 x accumulation 2 x data-parallel 2"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("AdamW lr 0.0003 betas [0.9, 0.95]"), std::string::npos) << s;
  EXPECT_NE(s.find("WarmupCosineLR peak 0.0003"), std::string::npos) << s;
  EXPECT_NE(s.find("precision:"), std::string::npos) << s;
  EXPECT_NE(s.find("tokens data/train.bin (uint32) seq_len 128"), std::string::npos) << s;
  EXPECT_NE(s.find("steps 50"), std::string::npos) << s;
  EXPECT_NE(s.find("stage 1, reduce_bucket_size 500000000, overlap_comm off"), std::string::npos)
      << s;
}

TEST(Config, LoadsFromAFileAndNamesAMissingOne) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / "autotp_test_config_load.yaml";
  {
    std::ofstream out(path);
    out << kMinimal << "optimzer: {}\n";
  }
  EXPECT_ERROR_CONTAINS(load_config_file(path.string()),
                        path.string() + " line 4: unknown key 'optimzer'");
  std::filesystem::remove(path);
  EXPECT_ERROR_CONTAINS(load_config_file("/nonexistent/autotp.yaml"),
                        "cannot read config file '/nonexistent/autotp.yaml'");
  const std::string folder = std::filesystem::temp_directory_path().string();
  EXPECT_ERROR_CONTAINS(load_config_file(folder), "config file '" + folder + "' is a directory");
}

TEST(Config, EditDistanceCountsSingleCharacterEdits) {
  EXPECT_EQ(edit_distance("optimizer", "optimzer"), 1u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(closest_match("stpes", {"seed", "steps", "out_dir"}), "steps");
}

}  // namespace
}  // namespace autotp
