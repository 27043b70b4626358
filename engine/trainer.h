// The trainer: a model from the config's model section, AdamW (or ZeRO-partitioned AdamW),
// the LR schedule, accumulation, clipping, data parallelism, metrics, checkpoints, HF export.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/comm/parallel_grid.h"
#include "core/device.h"
#include "core/dtype.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/data.h"
#include "engine/lr_schedule.h"
#include "engine/mixed_precision.h"
#include "engine/model_source.h"
#include "engine/optimizer.h"
#include "engine/training_device.h"
#include "engine/zero_optimizer.h"
#include "layers/parallel/grad_norm.h"
#include "models/causal_lm.h"

namespace autotp {

struct TrainerOptions {
  std::string out_dir;  // empty: config.train.out_dir
  // Continue from the latest checkpoint under resume_dir (empty: the out dir). An error when
  // there is none.
  bool resume = false;
  std::string resume_dir;
  // A fresh run (no resume) into an out dir that holds an earlier run's checkpoints,
  // metrics.jsonl or hf/ export is an error unless this is set (`autotp train --overwrite`):
  // the run would overwrite them.
  bool overwrite = false;
  // Parameter dtype. The trainer runs f32; f64 serves the reference tests.
  DType dtype = DType::F32;
  // Where the model trains: the CPU or a CUDA device (with a grid, each rank's own; `autotp
  // train` picks the GPU of the rank's node-local index). On CUDA the model is built on the
  // host exactly as on the CPU (the same weights from the seed or checkpoint), sharded by the
  // AutoTP pass (tensor_parallel.keep_module_on_host: on the host, else on the device) and
  // moved to the device; batches move there, losses and the gradient norm are read back once
  // per step. bf16.enabled / fp16.enabled then train bf16 / f16 weights behind f32 master
  // weights and optimizer state (engine/mixed_precision.h; fp16 with dynamic loss scaling);
  // on the CPU they are noted and ignored (the CPU computes in fp32).
  Device device = Device::cpu();
  // Tests: train through the mixed-precision path (f32 master weights and their AdamW behind
  // the model's weights, as bf16.enabled does on CUDA) on any device, with f32 parameters. On
  // the CPU the model weights stay f32, so the run must equal the plain run bit for bit, which
  // checks that path (accumulation, reduction, clipping, ZeRO, checkpoints) without a GPU.
  bool force_master_weights = false;
  // Tests (fault injection): called each step after the backward passes, before the gradients
  // are reduced and clipped, with the step number (1-based) and the optimizer whose params()
  // hold the gradients (the f32 masters under mixed precision).
  std::function<void(int64_t step, const AdamW& optimizer)> before_gradient_reduction;
  std::FILE* out = stdout;            // summary, progress and notes; nullptr: silent
  std::optional<bool> live_progress;  // a live progress bar; default: `out` is a terminal
  bool export_hf = true;              // write OUT/hf at the end of run()
  // The process grid (world = dp x tp) of a multi-rank run; null: one process. Its sizes must
  // match the config's data_parallel_size and tensor_parallel.autotp_size.
  std::shared_ptr<ParallelGrid> grid;
  // Gradient averaging packs about this many bytes of gradients per collective; empty:
  // zero_optimization.reduce_bucket_size elements of the parameter dtype.
  std::optional<int64_t> reduce_bucket_bytes;
};

// What one optimizer step did.
struct StepRecord {
  int64_t step = 0;        // optimizer steps completed after this one (1-based)
  double loss = 0.0;       // mean of the micro-batch losses (unscaled) over every DP rank
  double lr = 0.0;         // the rate this step used
  double grad_norm = 0.0;  // global gradient norm before clipping
  int64_t tokens = 0;      // tokens this step trained on (all DP ranks)
  double seconds = 0.0;    // wall time of the step
  // fp16 loss scaling: the gradients overflowed (on some rank, or in the global norm), so
  // every rank skipped the update and lowered the loss scale, as DeepSpeed does.
  bool skipped = false;
};

// Everything is a function of the step number: batch(step, micro_step) from the data loader,
// lr_for_step(step) from the schedule, so a run resumed from a checkpoint (weights, optimizer
// moments, step) continues the exact trajectory (bit for bit on CPU).
//
// Each step: lr = schedule.lr_for_step(n); for each of the gradient_accumulation_steps
// micro-batches, loss_m = next_token_loss(model(inputs), labels) and backward(loss_m /
// accumulation) so the gradients sum to the mean's; clip by global norm when
// gradient_clipping > 0; AdamW step. A non-finite loss or gradient norm stops with an error
// naming the step before anything is updated or saved.
//
// With a grid: each DP rank reads its own micro-batches (DataLoader's dp_rank/dp_size), the
// gradients are averaged over the DP group in buckets launched during the last micro-batch's
// backward (zero_optimization.overlap_comm; GradientReducer; ZeRO 1/2 partition the
// optimizer state and gradients, ZeroAdamW), every rank applies the same update, and only
// world rank 0 prints and writes files, except the weight shards and optimizer partitions of
// a checkpoint, which their ranks write (engine/distributed_checkpoint.h).
class Trainer {
 public:
  // Validates and builds everything (model, data, optimizer; loads the checkpoint when
  // resuming) before training starts.
  explicit Trainer(Config config, TrainerOptions options = {});

  // Trains up to config.train.steps: prints the config summary, writes OUT/config.yaml and
  // OUT/metrics.jsonl (one record per logged step: step, loss, lr, grad_norm, tokens_per_s,
  // elapsed_s; eval_loss at evaluation steps), a progress line per logged step (the first, every
  // log_interval-th and the last), an evaluation every eval_interval steps, a checkpoint
  // every checkpoint_interval steps and at the last step, and finally OUT/hf.
  void run();

  // One optimizer step, without logging or saving.
  StepRecord step();

  int64_t current_step() const { return step_; }  // optimizer steps completed
  int64_t total_steps() const { return config_.train.steps; }
  bool resumed() const { return resumed_from_ > 0; }
  CausalLM& model() { return *model_; }
  // The AdamW over the trained f32 parameters: the model's, or the master weights with mixed
  // precision. Unused for updates when zero() is set.
  AdamW& optimizer() { return *optimizer_; }
  ZeroAdamW* zero() { return zero_.get(); }  // ZeRO stage 1/2 runs only
  // bf16/fp16 on CUDA only: the master weights and the loss scaler.
  MixedPrecisionOptimizer* mixed_precision() { return mixed_.get(); }
  Device device() const { return device_; }
  // This process's CUDA allocator peak in GiB (0 on the CPU); run() resets it after setup, so
  // from then on it measures training (the logged lines, metrics.jsonl's peak_mem_gib, done:).
  double peak_memory_gib() const { return device_peak_memory_gib(device_); }
  GradientReducer* reducer() { return reducer_.get(); }  // ZeRO 0 with dp > 1 only
  const Config& config() const { return config_; }
  const std::string& out_dir() const { return out_dir_; }
  const DataLoader& data() const { return *loader_; }
  // The steps this Trainer ran, in order.
  const std::vector<StepRecord>& history() const { return history_; }

 private:
  void note(const std::string& text) const;
  double evaluate_now();
  void save_checkpoint();
  void setup_precision();  // plain AdamW, or bf16/fp16 weights behind f32 masters (CUDA)
  void setup_parallel();
  void zero_grads();
  // The model a checkpoint writes: the model, or (mixed precision) a host f32 copy holding
  // the master weights, so a resumed run continues from the exact f32 values.
  std::shared_ptr<const CausalLM> checkpoint_model() const;
  TrainingState load_checkpoint(const std::string& dir);
  double reduce_and_clip();  // DP gradient reduction, global norm, clipping; returns the norm
  bool is_rank0() const;

  Config config_;
  TrainerOptions options_;
  std::string out_dir_;
  ModelSource model_source_;
  Device device_;
  std::shared_ptr<CausalLM> model_;
  std::unique_ptr<AdamW> plain_;                    // f32/f64 parameters, updated in place
  std::unique_ptr<MixedPrecisionOptimizer> mixed_;  // bf16/fp16 parameters on CUDA
  AdamW* optimizer_ = nullptr;                      // plain_, or mixed_'s AdamW over the masters
  std::shared_ptr<ParallelGrid> grid_;
  std::unique_ptr<GradientReducer> reducer_;  // ZeRO 0 with dp > 1
  std::unique_ptr<ZeroAdamW> zero_;           // ZeRO 1/2 with a grid
  bool overlap_dp_ = false;  // the DP gradient buckets launch during the last backward pass
  // AutoTP (tp > 1): the replicated parameters whose gradients are summed over the TP group
  // after every backward (e.g. Qwen3's per-head norms; their masters with mixed precision);
  // null when there are none.
  std::shared_ptr<ReplicatedGradAllreduce> tp_grad_allreduce_;
  std::vector<bool> norm_counts_;  // per parameter: counted in the global norm on this rank
  LrSchedule schedule_;
  std::shared_ptr<const TokenSource> source_;
  std::unique_ptr<DataLoader> loader_;
  std::unique_ptr<DataLoader> eval_loader_;  // the evaluation stream (eval_interval > 0)
  int64_t step_ = 0;
  int64_t resumed_from_ = 0;
  int64_t tokens_seen_ = 0;
  std::vector<std::string> notes_;  // printed after the summary
  std::vector<StepRecord> history_;
};

// The data section as the trainer uses it: data.vocab_size defaults to the model's, and the
// source's vocabulary must fit the model's (errors name both).
DataConfig resolve_data_config(const DataConfig& data, const ModelConfig& model);

}  // namespace autotp
