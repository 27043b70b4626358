// Trainer: setup and validation, the step (accumulate, reduce over DP, clip, update), the run
// loop with progress, metrics, evaluation and checkpoints, and resuming.
#include "engine/trainer.h"

#include "autotp/apply_autotp.h"
#include "autotp/batch_check.h"
#include "autotp/from_engine_config.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "engine/checkpoint.h"
#include "engine/clip.h"
#include "engine/distributed_checkpoint.h"
#include "engine/evaluate.h"
#include "engine/metrics_log.h"
#include "engine/progress.h"
#include "engine/replica_check.h"
#include "engine/training_device.h"
#include "layers/parallel/gather_params.h"
#include "layers/parallel/grad_norm.h"
#include "models/llama.h"
#include "models/registry.h"

namespace autotp {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int64_t kTrainEvalBatches = 8;  // batches per periodic evaluation

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The config with the keys a resumed run may change (its length, logging, output) set to
// `like`'s, as YAML: two runs continue the same trajectory when these texts are equal.
std::string trajectory_yaml(Config c, const Config& like) {
  c.train.steps = like.train.steps;
  c.train.log_interval = like.train.log_interval;
  c.train.checkpoint_interval = like.train.checkpoint_interval;
  c.train.eval_interval = like.train.eval_interval;
  c.train.out_dir = like.train.out_dir;
  c.steps_per_print = like.steps_per_print;
  // Any split of the same global batch reads the same samples per step, and ZeRO changes
  // where the optimizer state lives, not the update: a resharded resume continues the run.
  if (c.batch.train_batch_size == like.batch.train_batch_size) c.batch = like.batch;
  c.zero_stage = like.zero_stage;
  // How the model is sharded over tensor-parallel ranks (its size, preset or layer specs)
  // changes where each product runs, not the model or its update.
  c.tensor_parallel = like.tensor_parallel;
  // The buckets' size and their overlap with backward change how the gradient sums travel
  // (the overlap not a single bit of the result).
  c.zero_overlap_comm = like.zero_overlap_comm;
  c.zero_reduce_bucket_size = like.zero_reduce_bucket_size;
  // WarmupDecayLR/WarmupCosineLR default total_num_steps to train.steps: that one stays.
  return config_to_yaml(c);
}

// What in `out_dir` an earlier run wrote and a fresh run would overwrite: its checkpoints
// (complete or not), metrics.jsonl and the hf/ export, as "checkpoints/ (latest
// step-00000020), metrics.jsonl, hf/"; empty when there is none.
std::string earlier_run_outputs(const std::string& out_dir) {
  std::vector<std::string> found;
  if (const auto latest = latest_training_checkpoint(out_dir)) {
    found.push_back(fmt::format("checkpoints/ (latest {})", fs::path(*latest).filename().string()));
  } else if (!incomplete_checkpoints(out_dir).empty()) {
    found.push_back("checkpoints/ (incomplete ones only)");
  }
  std::error_code ec;
  if (fs::exists(fs::path(out_dir) / "metrics.jsonl", ec)) found.push_back("metrics.jsonl");
  if (fs::exists(fs::path(out_dir) / "hf", ec)) found.push_back("hf/");
  std::string text;
  for (const std::string& f : found)
    text += (text.empty() ? "" : ", ") + f;
  return text;
}

// Leftovers of saves that were killed midway under OUT/checkpoints (".step-N.tmp.*" staging
// folders, "step-N.old.*" replaced ones): "2 (.step-00000003.tmp.1234, ...), 12.0 MiB"; empty
// when there are none. Nothing reads them; they only take space.
std::string interrupted_save_leftovers(const std::string& out_dir) {
  const fs::path root = fs::path(out_dir) / kCheckpointsDir;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return "";
  std::vector<std::string> names;
  uintmax_t bytes = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    const bool staged = name.rfind(".step-", 0) == 0 && name.find(".tmp.") != std::string::npos;
    const bool replaced = name.rfind("step-", 0) == 0 && name.find(".old.") != std::string::npos;
    if (!staged && !replaced) continue;
    names.push_back(name);
    for (const fs::directory_entry& f : fs::recursive_directory_iterator(e.path(), ec)) {
      if (f.is_regular_file(ec)) bytes += f.file_size(ec);
    }
  }
  if (names.empty()) return "";
  std::sort(names.begin(), names.end());
  return fmt::format("{} ({}{}), {:.1f} MiB", names.size(), names.front(),
                     names.size() > 1 ? ", ..." : "", static_cast<double>(bytes) / (1 << 20));
}

// The first line where two configs' YAML texts differ, as "KEY_LINE (checkpoint) -> LINE
// (now)", for the warning about a resumed run whose trajectory will differ.
std::string first_difference(const std::string& saved, const std::string& now) {
  std::istringstream a(saved), b(now);
  std::string la, lb;
  while (true) {
    const bool more_a = static_cast<bool>(std::getline(a, la));
    const bool more_b = static_cast<bool>(std::getline(b, lb));
    if (!more_a && !more_b) return "";
    if (!more_a) la.clear();
    if (!more_b) lb.clear();
    if (la != lb) {
      const auto trim = [](const std::string& l) {
        const size_t start = l.find_first_not_of(' ');
        return start == std::string::npos ? std::string("(nothing)") : l.substr(start);
      };
      return fmt::format("'{}' in the checkpoint, '{}' now", trim(la), trim(lb));
    }
  }
}

}  // namespace

DataConfig resolve_data_config(const DataConfig& data, const ModelConfig& model) {
  DataConfig d = data;
  if (d.type == DataSourceType::Text) {
    AUTOTP_CHECK(model.vocab_size >= 256,
                 "data: type text yields byte tokens 0..255, but the model's vocab_size is {} "
                 "(needs >= 256)",
                 model.vocab_size);
  } else if (d.vocab_size == 0) {
    d.vocab_size = model.vocab_size;
  } else {
    AUTOTP_CHECK(d.vocab_size <= model.vocab_size,
                 "data: vocab_size {} exceeds the model's vocab_size {} (tokens would index past "
                 "the embedding)",
                 d.vocab_size, model.vocab_size);
  }
  AUTOTP_CHECK(d.seq_len <= model.max_position_embeddings,
               "data: seq_len {} exceeds the model's max_position_embeddings {}", d.seq_len,
               model.max_position_embeddings);
  // Checked here, before anything is allocated, rather than by the first forward.
  AUTOTP_CHECK(!model.sliding_window || d.seq_len <= *model.sliding_window,
               "data: seq_len {} exceeds the model's sliding_window {} (sliding-window attention "
               "is not implemented; sequences up to the window are exact)",
               d.seq_len, *model.sliding_window);
  return d;
}

Trainer::Trainer(Config config, TrainerOptions options)
    : config_(std::move(config)), options_(std::move(options)), schedule_(config_.scheduler) {
  out_dir_ = options_.out_dir.empty() ? config_.train.out_dir : options_.out_dir;
  config_.train.out_dir = out_dir_;
  grid_ = options_.grid;
  const int64_t dp_size = grid_ ? grid_->dp()->size() : 1;
  // Every check a rank makes on its own before the first collective ends in that collective
  // (a rank that failed alone would leave the others waiting in it): each rank sends its
  // failure, or world rank 0 its view of the output directory, and all stop together.
  std::exception_ptr local_failure;
  std::string earlier;  // world rank 0's: an earlier run in the out dir (fresh runs only)
  try {
    AUTOTP_CHECK(!fs::exists(out_dir_) || fs::is_directory(out_dir_),
                 "output directory '{}' exists and is not a directory", out_dir_);
    AUTOTP_CHECK(options_.dtype == DType::F32 || options_.dtype == DType::F64,
                 "trainer: parameters must be f32 or f64, got {}", dtype_name(options_.dtype));
    device_ = options_.device;
    check_training_device(device_, "trainer: device " + device_.str());
    const bool mixed = options_.force_master_weights ||
                       (device_.is_cuda() && (config_.bf16 || config_.fp16.enabled));
    AUTOTP_CHECK(!mixed || options_.dtype == DType::F32,
                 "trainer: mixed precision keeps f32 master weights, so the parameter dtype must "
                 "be f32, got {}",
                 dtype_name(options_.dtype));
    if (device_.is_cuda()) cuda_set_current_device(device_.index);  // kernels launch there

    // The process grid must be the one the config describes.
    const int64_t tp_config = std::max<int64_t>(1, config_.tensor_parallel.autotp_size);
    const int64_t tp_size = grid_ ? grid_->tp()->size() : 1;
    const int64_t world = grid_ ? grid_->world()->size() : 1;
    AUTOTP_CHECK(tp_config == tp_size,
                 "tensor_parallel.autotp_size is {} but this run has {} process(es) with tp = {}: "
                 "launch with mpirun -np {} (autotp_size x data_parallel_size)",
                 config_.tensor_parallel.autotp_size, world, tp_size,
                 tp_config * config_.batch.dp_size);
    AUTOTP_CHECK(config_.batch.dp_size == dp_size,
                 "data_parallel_size is {} but this run has {} process(es): dp = world {} / "
                 "autotp_size {} = {} (launch with mpirun -np {}, or set data_parallel_size to {})",
                 config_.batch.dp_size, world, world, tp_size, dp_size,
                 config_.batch.dp_size * tp_size, dp_size);
    // Decided on world rank 0, which writes the run's files: another rank looking for itself
    // could do so after rank 0 had started this run's own files.
    if (!options_.resume && !options_.overwrite && is_rank0()) {
      earlier = earlier_run_outputs(out_dir_);
    }
  } catch (...) {
    local_failure = std::current_exception();
  }
  if (grid_) {
    std::string mine = "O" + earlier;
    if (local_failure) {
      try {
        std::rethrow_exception(local_failure);
      } catch (const std::exception& e) {
        mine = std::string("F") + e.what();
      }
    }
    const std::vector<std::vector<uint8_t>> all =
        grid_->world()->exchange_bytes(std::vector<uint8_t>(mine.begin(), mine.end()));
    for (size_t r = 0; r < all.size() && !local_failure; ++r) {
      if (!all[r].empty() && all[r][0] == 'F') {
        AUTOTP_FAIL("rank {} stopped in the trainer's setup: {}", r,
                    std::string(all[r].begin() + 1, all[r].end()));
      }
    }
    if (!all[0].empty()) earlier.assign(all[0].begin() + 1, all[0].end());
  }
  if (local_failure) std::rethrow_exception(local_failure);
  AUTOTP_CHECK(earlier.empty(),
               "output directory '{}' holds an earlier run ({}), which a fresh run would "
               "overwrite: give --resume to continue it, --overwrite to replace it, or another "
               "--out (TrainerOptions: resume, overwrite, out_dir)",
               out_dir_, earlier);
  if (!is_rank0()) options_.out = nullptr;  // only world rank 0 prints
  if (const std::string leftovers = is_rank0() ? interrupted_save_leftovers(out_dir_) : "";
      !leftovers.empty()) {
    notes_.push_back(fmt::format(
        "warning: {}/{} holds leftovers of interrupted saves: {}; nothing reads them (delete "
        "them to free the space)",
        out_dir_, kCheckpointsDir, leftovers));
  }
  if (device_.is_cpu()) {
    if (config_.bf16) notes_.push_back("bf16.enabled: the CPU trainer computes in fp32");
    if (config_.fp16.enabled) notes_.push_back("fp16.enabled: the CPU trainer computes in fp32");
  } else {
    notes_.push_back(
        fmt::format("device: {} ({})", device_.str(), cuda_device_name(device_.index)));
  }
  if (config_.zero_stage > 0 && !grid_) {
    notes_.push_back(fmt::format("zero_optimization.stage {}: nothing to shard on one process",
                                 config_.zero_stage));
  }

  // Model and data are validated against each other before the model is allocated.
  model_source_ = resolve_model_source(config_.model);
  const ops::AttentionKernels attention_kernels =
      attention_kernels_for(config_.kernels, model_source_.config.head_dim);
  const DataConfig data = resolve_data_config(config_.data, model_source_.config);
  source_ = make_token_source(data);
  AUTOTP_CHECK(source_->vocab_size() <= model_source_.config.vocab_size,
               "data: {} has tokens up to {}, beyond the model's vocab_size {}",
               source_->describe(), source_->vocab_size() - 1, model_source_.config.vocab_size);
  DataLayout layout;
  layout.micro_batch = config_.batch.micro_batch_per_gpu;
  layout.grad_accum = config_.batch.gradient_accumulation_steps;
  layout.dp_rank = grid_ ? grid_->dp()->rank() : 0;
  layout.dp_size = dp_size;
  loader_ = std::make_unique<DataLoader>(source_, data.seq_len, layout);
  if (config_.train.eval_interval > 0) {
    DataConfig eval_data = data;
    eval_data.seed = data.seed + kEvalSeedOffset;
    DataLayout eval_layout;
    eval_layout.micro_batch = layout.micro_batch;
    eval_loader_ = std::make_unique<DataLoader>(
        std::shared_ptr<const TokenSource>(make_token_source(eval_data)), data.seq_len,
        eval_layout);
  }

  // Built on the host on every device, so a CUDA run starts from the CPU run's weights.
  model_ = build_model(model_source_, config_.train.seed, options_.dtype);
  set_attention_kernels(*model_, attention_kernels);
  ops::set_gemm_autotune(device_, config_.kernels.gemm_autotune);  // the device's every GEMM
  // Tensor parallelism: every rank built the full model from the same seed (or checkpoint);
  // the AutoTP pass keeps this rank's shards and moves them to the device, before the
  // optimizer sees the parameters.
  if (grid_ && grid_->tp()->size() > 1) {
    AutoTPConfig tp_config = autotp_config_from(config_.tensor_parallel);
    tp_config.training = true;
    ApplyOptions apply;
    apply.print_warnings = is_rank0();
    apply.device = device_;
    AutoTPResult sharded = apply_autotp(*model_, tp_config, *grid_, apply);
    tp_grad_allreduce_ = sharded.grad_allreduce;
    notes_.push_back(fmt::format(
        "tensor parallelism: {} Linear layers sharded over tp = {}{}", sharded.replaced_layers,
        grid_->tp()->size(),
        device_.is_cpu() ? ""
                         : (tp_config.keep_module_on_host
                                ? " on the host (keep_module_on_host), shards moved to the device"
                                : " on the device")));
  } else if (!device_.is_cpu()) {
    model_->to(device_);
  }
  model_->train();
  setup_precision();
  setup_parallel();

  if (options_.resume) {
    const std::string from = options_.resume_dir.empty() ? out_dir_ : options_.resume_dir;
    // A checkpoint directory itself (RUN/checkpoints/step-N) resumes from exactly that step; a
    // run directory from its latest complete checkpoint.
    const bool named_checkpoint = fs::exists(fs::path(from) / kCheckpointManifestFile);
    const std::optional<std::string> checkpoint =
        named_checkpoint ? std::optional<std::string>(from) : latest_training_checkpoint(from);
    AUTOTP_CHECK(named_checkpoint || fs::path(from).parent_path().filename() != kCheckpointsDir,
                 "--resume: '{}' is not a complete checkpoint: its {} is missing (an interrupted "
                 "save?)",
                 from, kCheckpointManifestFile);
    AUTOTP_CHECK(checkpoint.has_value(),
                 "--resume: no checkpoint under '{}' (expected {}/checkpoints/latest; set "
                 "train.checkpoint_interval to write checkpoints)",
                 from, from);
    for (const std::string& partial :
         named_checkpoint ? std::vector<std::string>{} : incomplete_checkpoints(from)) {
      if (partial <= *checkpoint) continue;
      std::string reason = "unreadable";
      try {
        read_training_state(partial);
      } catch (const Error& e) {
        reason = e.what();
      }
      notes_.push_back(fmt::format(
          "warning: {} is skipped, not a complete checkpoint (an interrupted save?): {}", partial,
          reason));
    }
    const std::string pointer = named_checkpoint ? "" : latest_checkpoint_pointer(from);
    if (!pointer.empty() && fs::path(*checkpoint).filename().string() != pointer) {
      notes_.push_back(fmt::format(
          "warning: {}/checkpoints/latest names {}, which is not a complete checkpoint; resuming "
          "from the newest complete one instead",
          from, pointer));
    }
    const TrainingState state = load_checkpoint(*checkpoint);
    AUTOTP_CHECK(state.step >= 0, "{}: step {} is negative", *checkpoint, state.step);
    step_ = resumed_from_ = state.step;
    tokens_seen_ = state.tokens_seen;
    notes_.push_back(fmt::format("resumed from {} (step {})", *checkpoint, state.step));
    if (!state.config_yaml.empty()) {
      try {
        const Config saved = parse_config(state.config_yaml, {}, *checkpoint + "/state.json");
        const std::string saved_yaml = trajectory_yaml(saved, config_);
        const std::string now_yaml = trajectory_yaml(config_, config_);
        if (saved_yaml != now_yaml) {
          notes_.push_back(fmt::format(
              "warning: the config differs from the checkpoint's beyond train.steps, "
              "logging, output and parallel layout keys ({}), so the trajectory will differ "
              "from an uninterrupted run",
              first_difference(saved_yaml, now_yaml)));
        }
      } catch (const Error&) {
        notes_.push_back("warning: the checkpoint's saved config could not be read back");
      }
    }
  } else if (const std::string earlier = earlier_run_outputs(out_dir_); !earlier.empty()) {
    notes_.push_back(
        fmt::format("warning: --overwrite: {} holds an earlier run ({}); this run deletes its "
                    "checkpoints/, hf/ and metrics.jsonl when it starts",
                    out_dir_, earlier));
  }
}

void Trainer::note(const std::string& text) const {
  if (options_.out != nullptr) {
    std::fprintf(options_.out, "%s\n", text.c_str());
    std::fflush(options_.out);
  }
}

StepRecord Trainer::step() {
  const auto start = Clock::now();
  const int64_t n = step_;  // 0-based index of this step
  const int64_t accumulation = config_.batch.gradient_accumulation_steps;
  StepRecord r;
  r.step = n + 1;
  r.lr = schedule_.lr_for_step(n);
  optimizer_->set_lr(r.lr);
  zero_grads();
  // Mixed precision on one process with one backward per step, no loss scaler and nothing
  // that inspects the master gradients before the update.
  const bool mixed_reads_model_grads = mixed_ && !grid_ && accumulation == 1 &&
                                       mixed_->loss_scaler() == nullptr &&
                                       !options_.before_gradient_reduction;
  // The micro-batch losses stay on the device until every backward has been queued.
  const Tensor losses = Tensor::empty({accumulation}, DType::F64, device_);  // [accumulation]
  for (int64_t m = 0; m < accumulation; ++m) {
    const Batch batch = loader_->batch(n, m);  // host tensors
    // Every TP rank of a replica must train on the same batch: checked once, cheaply.
    if (grid_ && grid_->tp()->size() > 1 && history_.empty() && m == 0) {
      check_tp_batch_consistency(batch.input_ids, *grid_->tp());
    }
    // Ids and labels stay on the host: the embedding and the loss check them there and upload
    // them without a host wait (device copies would be read back to be checked).
    Tensor loss = next_token_loss(model_->forward(batch.input_ids), batch.labels);  // scalar
    losses.narrow(0, m, 1).copy_(loss.detach().reshape({1}));
    if (accumulation > 1) loss = ops::div(loss, static_cast<double>(accumulation));
    if (mixed_) loss = mixed_->scale_loss(loss);
    if (overlap_dp_ && m + 1 == accumulation) {
      // The last backward launches each DP gradient bucket once its gradients are final
      // (with mixed precision the buckets hold the masters' gradients, which are copied after
      // backward: they launch at the reduction instead).
      if (zero_) {
        zero_->arm();
      } else {
        reducer_->arm(ReduceCollective::AllReduce);
      }
    }
    loss.backward();
    // Into the f32 master gradients, unless the step's one backward leaves them where they
    // are: then the norm and AdamW read the model gradients directly (no f32 copy of them).
    if (mixed_ && !mixed_reads_model_grads) mixed_->accumulate_grads();
    r.tokens += batch.labels.numel();
  }
  double loss_sum = 0.0;
  const std::vector<double> values = losses.to_vector();  // the step's one read of the losses
  for (int64_t m = 0; m < accumulation; ++m) {
    const double value = values[static_cast<size_t>(m)];
    AUTOTP_CHECK(std::isfinite(value),
                 "step {}: the loss is {} (micro-batch {} of {}); stopping before the update, "
                 "no checkpoint was written for this step",
                 n + 1, value, m + 1, accumulation);
    loss_sum += value;
  }
  r.loss = loss_sum / static_cast<double>(accumulation);
  if (tp_grad_allreduce_) tp_grad_allreduce_->all_reduce_grads();
  if (options_.before_gradient_reduction) options_.before_gradient_reduction(n + 1, *optimizer_);
  // fp16 skips a step whose gradients overflowed, and every rank must skip it together: an
  // inf or NaN in any gradient this rank holds (read before the reduction, which with mixed
  // precision has not started yet) counts, also one its norm leaves out (a replicated
  // parameter off TP rank 0).
  const bool loss_scaling = mixed_ && mixed_->loss_scaler() != nullptr;
  const bool local_overflow = loss_scaling && grid_ && grads_have_inf_or_nan(optimizer_->params());
  r.grad_norm = reduce_and_clip();
  // After the gradient reduction: no other DP collective may come between arm() and it.
  if (grid_ && grid_->dp()->size() > 1) {
    const Tensor sums = Tensor::from_vector({loss_sum, static_cast<double>(r.tokens)}, {2},
                                            DType::F64);  // [2]
    grid_->dp()->all_reduce(sums);
    const std::vector<double> v = sums.to_vector();
    r.loss = v[0] / static_cast<double>(accumulation * grid_->dp()->size());
    r.tokens = static_cast<int64_t>(v[1]);
  }
  // With fp16 loss scaling an overflow is expected now and then: the scaler skips the update.
  AUTOTP_CHECK(loss_scaling || std::isfinite(r.grad_norm),
               "step {}: the gradient norm is {} (loss {}); stopping before the update, no "
               "checkpoint was written for this step",
               n + 1, r.grad_norm, r.loss);
  // One decision for the whole job: any rank's overflow before the reduction, or a non-finite
  // global norm (the reduced gradients of every rank), skips the step on every rank.
  std::optional<bool> overflow_everywhere;
  if (loss_scaling && grid_) {
    const Tensor flag = Tensor::from_vector({local_overflow ? 1.0 : 0.0}, {1}, DType::F64);
    grid_->world()->all_reduce(flag, ReduceOp::Max);
    overflow_everywhere = flag.item() > 0.0 || !std::isfinite(r.grad_norm);
  }
  if (zero_) {
    const bool update = !mixed_ || mixed_->record_overflow(overflow_everywhere.value_or(false));
    r.skipped = !update;
    if (update) {
      zero_->set_lr(r.lr);
      zero_->step();
      if (mixed_) mixed_->write_model_params();  // ZeRO updated the masters
    }
  } else if (mixed_) {
    r.skipped = !mixed_->step(overflow_everywhere);
  } else {
    optimizer_->step();
  }
  zero_grads();
  step_ = n + 1;
  tokens_seen_ += r.tokens;
#ifndef NDEBUG
  // Debug builds check every step that replicas have not diverged (release: at checkpoints).
  if (grid_) check_replicas_identical(*model_, *grid_, fmt::format("after step {}", step_));
#endif
  r.seconds = seconds_since(start);
  history_.push_back(r);
  return r;
}

double Trainer::evaluate_now() {
  AUTOTP_ASSERT(eval_loader_ != nullptr, "no evaluation loader");
  return evaluate(*model_, *eval_loader_, kTrainEvalBatches).loss;
}

void Trainer::save_checkpoint() {
  TrainingState state;
  state.step = step_;
  state.seed = config_.train.seed;
  state.tokens_seen = tokens_seen_;
  state.config_yaml = config_to_yaml(config_);
  if (mixed_ && mixed_->loss_scaler() != nullptr)
    state.loss_scaler = mixed_->loss_scaler()->state();
  if (!grid_) {
    save_training_checkpoint(out_dir_, *checkpoint_model(), *optimizer_, state);
    return;
  }
  check_replicas_identical(*model_, *grid_, fmt::format("before the step {} checkpoint", step_));
  // With mixed precision the f32 master weights stand in for the low-precision parameters.
  save_distributed_checkpoint(out_dir_, *model_, *optimizer_, zero_.get(), state, *grid_,
                              mixed_ ? &mixed_->master_params() : nullptr);
}

std::shared_ptr<const CausalLM> Trainer::checkpoint_model() const {
  // Device tensors are written through host copies (io::save_safetensors); only world rank 0
  // writes the weights.
  if (!mixed_ || !is_rank0()) return model_;
  return host_f32_model_with(*model_, mixed_->master_params());
}

TrainingState Trainer::load_checkpoint(const std::string& dir) {
  // Files are read on the host and copied into the device tensors.
  if (!mixed_) return load_any_training_checkpoint(dir, *model_, *optimizer_, zero_.get());
  // The saved weights are the f32 masters (checkpoint_model, or the stand-ins of a distributed
  // save): loaded into the masters, which then write the low-precision model weights.
  const TrainingState state = load_any_training_checkpoint(dir, *model_, *optimizer_, zero_.get(),
                                                           &mixed_->master_params());
  mixed_->write_model_params();
  // A checkpoint without a scaler state (bf16, f32) leaves fp16 at its configured start.
  if (state.loss_scaler && mixed_->loss_scaler() != nullptr)
    mixed_->set_loss_scaler_state(*state.loss_scaler);
  return state;
}

void Trainer::zero_grads() {
  if (mixed_) {
    mixed_->zero_grad();  // the model's and the masters' (ZeRO's parameters are the masters)
  } else {
    optimizer_->zero_grad();  // also ZeRO's parameters
  }
}

void Trainer::setup_precision() {
  AdamWOptions adamw = config_.optimizer.adamw;
  adamw.lr = schedule_.lr_for_step(0);
  const bool low_precision = device_.is_cuda() && (config_.bf16 || config_.fp16.enabled);
  if (!low_precision && !options_.force_master_weights) {
    plain_ = std::make_unique<AdamW>(model_->named_parameters(), adamw);
    optimizer_ = plain_.get();
    return;
  }
  const DType low =
      low_precision ? (config_.bf16 ? DType::BF16 : DType::F16) : options_.dtype;  // f32
  // The f32 values (held here) become the masters exactly; the model keeps them rounded.
  const NamedTensors exact = model_->named_parameters();
  if (low != options_.dtype) model_->to(device_, low);
  std::optional<LossScalerOptions> scaling;
  // force_master_weights runs fp16's loss scaling with f32 weights on the CPU (tests).
  if (config_.fp16.enabled && (low_precision || options_.force_master_weights)) {
    scaling = LossScalerOptions::from_config(config_.fp16);
  }
  mixed_ = std::make_unique<MixedPrecisionOptimizer>(model_->named_parameters(), adamw, scaling);
  mixed_->set_master_weights(exact);
  optimizer_ = &mixed_->adamw();
  if (tp_grad_allreduce_) {
    // The model's gradients go to the masters after each backward: sum the masters' instead.
    auto masters = std::make_shared<ReplicatedGradAllreduce>(grid_->tp());
    for (const std::string& name : tp_grad_allreduce_->names()) {
      for (const auto& [master_name, master] : mixed_->master_params()) {
        if (master_name == name) masters->mark(name, master);
      }
    }
    AUTOTP_ASSERT(masters->names().size() == tp_grad_allreduce_->names().size(),
                  "grad_allreduce parameters without masters");
    tp_grad_allreduce_ = masters;
  }
  notes_.push_back(fmt::format(
      "{}: {} weights and activations, f32 master weights and optimizer state{}",
      !low_precision ? "force_master_weights" : (config_.bf16 ? "bf16.enabled" : "fp16.enabled"),
      dtype_name(low),
      scaling ? fmt::format(", {} loss scale {}", scaling->dynamic ? "dynamic" : "static",
                            scaling->initial_scale)
              : std::string()));
}

bool Trainer::is_rank0() const {
  return !grid_ || grid_->world()->rank() == 0;
}

void Trainer::setup_parallel() {
  const NamedTensors& params = optimizer_->params();
  norm_counts_.assign(params.size(), true);
  if (!grid_) return;
  if (grid_->tp()->size() > 1) {
    // Replicated parameters count once per TP group (on TP rank 0), sharded ones everywhere.
    // The trained parameters (the model's, or their masters) follow the model's order.
    std::vector<const void*> sharded;
    for (const GradNormParam& p : classify_parameters(*model_)) {
      if (p.tensor_model_parallel) sharded.push_back(p.param.raw_data());
    }
    const NamedTensors model_params = model_->named_parameters();
    AUTOTP_ASSERT(model_params.size() == params.size(), "{} model parameters, {} trained",
                  model_params.size(), params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const bool is_sharded = std::find(sharded.begin(), sharded.end(),
                                        model_params[i].second.raw_data()) != sharded.end();
      norm_counts_[i] = is_sharded || grid_->tp()->rank() == 0;
    }
  }
  const int64_t item = static_cast<int64_t>(params.front().second.itemsize());
  int64_t total = 0;
  for (const auto& [name, p] : params)
    total += p.numel();
  const auto mib = [](int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); };
  const int dp = grid_->dp()->size();
  notes_.push_back(fmt::format("collectives: {} over {} ranks{}", grid_->world()->backend(),
                               grid_->world()->size(),
                               grid_->world()->backend() == "mpi" && device_.is_cuda()
                                   ? " (GPU tensors staged through host memory)"
                                   : ""));
  const int64_t bucket_bytes =
      options_.reduce_bucket_bytes.value_or(config_.zero_reduce_bucket_size * item);
  // Replicated per-head parameters (Qwen3's q_norm) get their TP gradient sum after backward,
  // so their buckets could not launch from backward (and ZeRO 2 would free them first).
  overlap_dp_ = config_.zero_overlap_comm && dp > 1 && !tp_grad_allreduce_;
  if (config_.zero_overlap_comm && dp > 1 && tp_grad_allreduce_) {
    notes_.push_back(
        "zero_optimization.overlap_comm: off for this model, whose replicated per-head "
        "parameters are summed over the TP group after backward; the DP reduction follows it");
  }
  const std::string when = dp == 1       ? ""
                           : overlap_dp_ ? ", reduced during the last backward pass"
                                         : ", reduced after backward";
  if (config_.zero_stage > 0) {
    AdamWOptions o = optimizer_->options();
    zero_ = std::make_unique<ZeroAdamW>(params, o, static_cast<int>(config_.zero_stage),
                                        grid_->dp(), bucket_bytes);
    notes_.push_back(fmt::format(
        "data parallel: dp = {}, ZeRO stage {}, {} gradient buckets{}; per rank: optimizer "
        "state {:.3f} MiB, gradients {:.3f} MiB (unpartitioned: {:.3f} MiB, {:.3f} MiB)",
        dp, config_.zero_stage, zero_->num_buckets(), when, mib(zero_->optimizer_state_bytes()),
        mib(zero_->gradient_bytes()), mib(2 * total * item), mib(total * item)));
    return;
  }
  if (dp > 1) reducer_ = std::make_unique<GradientReducer>(params, grid_->dp(), bucket_bytes);
  notes_.push_back(fmt::format(
      "data parallel: dp = {}, ZeRO stage 0, {} gradient buckets{}; per rank: optimizer state "
      "{:.3f} MiB, gradients {:.3f} MiB",
      dp, reducer_ ? reducer_->num_buckets() : 0, when, mib(2 * total * item), mib(total * item)));
}

double Trainer::reduce_and_clip() {
  const NamedTensors& params = optimizer_->params();
  const double max_norm = config_.gradient_clipping;
  if (!grid_ && mixed_)
    return max_norm > 0.0 ? mixed_->clip_grad_norm(max_norm) : mixed_->grad_norm();
  if (!grid_) {
    return max_norm > 0.0 ? clip_grad_norm(params, max_norm) : global_grad_norm(params);
  }
  // The squared norm of what this rank holds, summed over the groups that split it.
  double sq = 0.0;
  if (zero_) {
    zero_->reduce_gradients();
    sq = zero_->partition_grad_sq_sum(norm_counts_);
  } else {
    if (reducer_) reducer_->all_reduce_mean();  // now identical on every DP rank
    NamedTensors counted;
    for (size_t i = 0; i < params.size(); ++i) {
      if (norm_counts_[i]) counted.push_back(params[i]);
    }
    sq = grad_sq_sum(counted);  // one read from the device
  }
  const Tensor sums = Tensor::from_vector({sq}, {1}, DType::F64);  // [1]
  if (zero_ && grid_->dp()->size() > 1) grid_->dp()->all_reduce(sums);
  if (grid_->tp()->size() > 1) grid_->tp()->all_reduce(sums);
  const double norm = std::sqrt(sums.to_vector()[0]);
  if (max_norm > 0.0 && std::isfinite(norm)) {
    const double coef = clip_coefficient(norm, max_norm);
    if (coef < 1.0) {
      if (zero_) {
        zero_->scale_partition_grad(coef);
      } else {
        scale_grads(params, coef);
      }
    }
  }
  return norm;
}

void Trainer::run() {
  const int64_t total = config_.train.steps;
  const TrainConfig& t = config_.train;
  ProgressPrinter printer(options_.out, options_.live_progress.value_or(is_terminal(options_.out)));
  if (options_.out != nullptr) {
    std::fputs(config_summary(config_).c_str(), options_.out);
  }
  const std::string precision =
      mixed_ ? fmt::format("{} with f32 master weights",
                           dtype_name(mixed_->model_params().front().second.dtype()))
             : std::string(dtype_name(options_.dtype));
  note(fmt::format("model: {} {} ({} parameters, {}{}), {}", model_source_.config.model_type,
                   model_source_.config.architecture(), model_->num_parameters(), precision,
                   device_.is_cpu() ? "" : " on " + device_.str(), model_source_.description));
  note(fmt::format("data: {}", source_->describe()));
  for (const std::string& n : notes_)
    note(n);
  note(fmt::format("output: {}", out_dir_));

  std::optional<MetricsLog> metrics;  // world rank 0 writes files
  if (is_rank0()) {
    if (options_.overwrite && !resumed()) {
      // --overwrite: the earlier run's outputs go first, so none of its checkpoints (or a
      // `latest` naming one) can be taken for this run's.
      std::error_code ec;
      for (const char* name : {kCheckpointsDir, "hf", "metrics.jsonl"})
        fs::remove_all(fs::path(out_dir_) / name, ec);
    }
    fs::create_directories(out_dir_);
    io::write_file_atomically((fs::path(out_dir_) / "config.yaml").string(),
                              config_to_yaml(config_));
    metrics.emplace((fs::path(out_dir_) / "metrics.jsonl").string(), resumed_from_);
  }

  reset_device_peak_memory(device_);  // from here on the peak measures training
  const auto start = Clock::now();
  const int64_t first = step_;
  double interval_loss = 0.0;
  int64_t interval_steps = 0, interval_tokens = 0;
  auto interval_start = start;
  while (step_ < total) {
    const StepRecord r = step();
    interval_loss += r.loss;
    interval_tokens += r.tokens;
    ++interval_steps;
    const bool log_now =
        r.step == 1 || r.step % t.log_interval == 0 || r.step == total || r.step == first + 1;
    const bool eval_now = t.eval_interval > 0 && (r.step % t.eval_interval == 0 || r.step == total);
    if (log_now || eval_now) {
      const double elapsed = seconds_since(start);
      const double interval_s = seconds_since(interval_start);
      ProgressLine line;
      line.step = r.step;
      line.total_steps = total;
      line.loss = interval_loss / static_cast<double>(interval_steps);
      line.lr = r.lr;
      line.grad_norm = r.grad_norm;
      line.tokens_per_s = interval_s > 0 ? static_cast<double>(interval_tokens) / interval_s : 0.0;
      line.elapsed_s = elapsed;
      line.eta_s =
          elapsed / static_cast<double>(r.step - first) * static_cast<double>(total - r.step);
      std::string text = format_progress_line(line);
      json::Value record = json::Value::object();
      record.set("step", r.step)
          .set("loss", line.loss)
          .set("lr", line.lr)
          .set("grad_norm", line.grad_norm)
          .set("tokens_per_s", line.tokens_per_s)
          .set("elapsed_s", line.elapsed_s);
      if (eval_now) {
        const double eval_loss = evaluate_now();
        text += fmt::format(" | eval loss {:.4f} (ppl {:.2f})", eval_loss, std::exp(eval_loss));
        record.set("eval_loss", eval_loss);
      }
      if (device_.is_cuda()) {
        const double peak = peak_memory_gib();  // this rank's allocator, since setup
        text += fmt::format(" | peak mem {:.2f} GiB", peak);
        record.set("peak_mem_gib", peak);
      }
      if (r.skipped) {
        text += " | overflow: update skipped";
        record.set("skipped", true);
      }
      printer.line(text);
      if (metrics) metrics->append(record);
      interval_loss = 0.0;
      interval_steps = interval_tokens = 0;
      interval_start = Clock::now();
    } else {
      printer.bar(r.step, total, r.loss);
    }
    if (t.checkpoint_interval > 0 && (r.step % t.checkpoint_interval == 0 || r.step == total)) {
      save_checkpoint();
    }
  }
  printer.clear_bar();
  if (step_ == first) {
    note(fmt::format("nothing to train: the run is already at step {} of {}", step_, total));
  }
  if (options_.export_hf) {
    const std::string hf = (fs::path(out_dir_) / "hf").string();
    if (grid_ && grid_->tp()->size() > 1) {
      // The TP group of DP rank 0 gathers the full weights (every ZeRO stage keeps whole
      // TP-local weights on each rank); its TP rank 0, world rank 0, writes them.
      if (grid_->dp()->rank() == 0) {
        std::vector<Module*> modules;
        for (const auto& [path, m] : model_->named_modules())
          modules.push_back(m.get());
        GatherReplacedLayerParams full(modules);
        if (grid_->tp()->rank() == 0) export_hf_model(*model_, hf);
      }
    } else if (is_rank0()) {
      export_hf_model(*model_, hf);
    }
    note(fmt::format(
        "done: {} steps in {}{}; wrote {}/metrics.jsonl, {}/config.yaml and {} (a Hugging Face "
        "model directory)",
        step_ - first, format_duration(seconds_since(start)),
        device_.is_cuda() ? fmt::format(", peak GPU memory {:.2f} GiB", peak_memory_gib()) : "",
        out_dir_, out_dir_, hf));
  }
  if (grid_) grid_->world()->barrier();  // the export is on disk before any rank returns
}

}  // namespace autotp
