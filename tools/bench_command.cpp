// `autotp bench`: real training steps (forward, backward, AdamW) of the config's model on
// synthetic tokens, timed per phase by GPU events (one host wait per step), reported as text
// and JSON.
// With --kernels N, N more steps run under the kernel profiler (CUPTI) after the timed ones,
// and the GPU time of every kernel per step is reported beside the step time.
#include "tools/bench_command.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>

#include "core/autograd/grad_mode.h"
#include "core/device_timer.h"
#include "core/error.h"
#include "core/io/json.h"
#include "core/kernel_profiler.h"
#include "core/ops/linalg.h"
#include "engine/config.h"
#include "engine/data.h"
#include "engine/evaluate.h"
#include "engine/mixed_precision.h"
#include "engine/model_source.h"
#include "engine/optimizer.h"
#include "models/llama.h"
#include "models/registry.h"
#include "tools/bench_options.h"
#include "tools/config_notes.h"
#include "tools/flops.h"
#ifdef AUTOTP_WITH_CUDA
#include "core/cuda_allocator.h"
#endif

namespace autotp::tools {

const char* const kBenchUsage =
    "autotp bench CONFIG.yaml [--steps N] [--warmup K] [--json FILE] [--device cpu|cuda] "
    "[--dtype f32|bf16] [--kernels N] [--set key.path=value ...]";

namespace {

// What kernels.gemm_autotune found: the searched shapes, how many of them left the heuristic's
// pick, and one call of each with the heuristic's pick and with the kept algorithm.
void print_gemm_autotune(const kernels::GemmAutotuneReport& r) {
  std::printf(
      "gemm autotune %lld shapes searched (%lld candidates timed), %lld run another "
      "algorithm than the heuristic's first; one call of each: %.3f ms -> %.3f ms",
      static_cast<long long>(r.shapes_searched), static_cast<long long>(r.candidates_timed),
      static_cast<long long>(r.shapes_changed), r.heuristic_ms, r.chosen_ms);
  if (r.shapes_searching > 0) {
    std::printf("; %lld shapes still searching (their calls ran timed candidates)",
                static_cast<long long>(r.shapes_searching));
  }
  std::printf("\n");
}

// The kernels' GPU time per step, longest first, with their share of the summed GPU time;
// names shortened to their first 100 characters (the JSON keeps them whole).
void print_kernel_table(const std::vector<KernelTime>& kernels, int64_t steps, double step_ms) {
  double total = 0.0;
  for (const KernelTime& k : kernels)
    total += k.total_ms;
  const double per_step = total / static_cast<double>(steps);
  std::printf(
      "kernels       %.2f ms of GPU time per step over %lld profiled steps (%.2f ms wall "
      "per step under the profiler; the gap is time the GPU sat idle)\n",
      per_step, static_cast<long long>(steps), step_ms);
  std::printf("  %9s %7s %6s  %s\n", "ms/step", "calls", "share", "kernel");
  size_t shown = 0;
  for (const KernelTime& k : kernels) {
    if (++shown > 40) break;
    const double ms = k.total_ms / static_cast<double>(steps);
    std::printf("  %9.3f %7.1f %5.1f%%  %.100s\n", ms,
                static_cast<double>(k.calls) / static_cast<double>(steps),
                total > 0.0 ? 100.0 * k.total_ms / total : 0.0, k.name.c_str());
  }
  if (kernels.size() > shown)
    std::printf("  ... %zu more in the JSON report\n", kernels.size() - shown);
}

}  // namespace

int run_bench(const std::vector<std::string>& raw_args) {
  const BenchOptions args = parse_bench_options(raw_args, "bench", kBenchUsage, "--steps", 10, 3);
  ConfigLoadOptions load;
  load.overrides = args.overrides;
  const Config config = load_config_file(args.config_path, load);
  print_config_warnings(config, "bench");
  note_unsharded_run(config, "bench");

  const Device device = bench_device(args, "bench");
  const bool use_cuda = device.is_cuda();
  AUTOTP_CHECK(args.kernel_steps == 0 || use_cuda,
               "bench: --kernels profiles GPU kernels: it "
               "needs --device cuda");
  // bf16: bf16 weights and activations with f32 master weights and optimizer state (DeepSpeed's
  // bf16.enabled); f32: everything in f32 (no TF32).
  const DType dtype = bench_dtype(args, device, use_cuda && config.bf16, "bench");
  const bool bf16 = dtype == DType::BF16;

  ModelSource source = resolve_model_source(config.model);
  ModelConfig model_config = source.config;
  model_config.resolve_defaults();
  const int64_t seq_len = config.data.seq_len > 0 ? config.data.seq_len : 512;
  const int64_t micro_batch = config.batch.micro_batch_per_gpu;

  // Synthetic tokens over the model's vocabulary: the data path costs nothing measurable.
  DataConfig data;
  data.type = DataSourceType::Synthetic;
  data.seq_len = seq_len;
  data.seed = config.seed;
  data.vocab_size = model_config.vocab_size;
  std::shared_ptr<const TokenSource> tokens(make_token_source(data));
  DataLayout layout;
  layout.micro_batch = micro_batch;
  DataLoader loader(tokens, seq_len, layout);

  std::printf("bench: building %s (%s) on %s ...\n", model_config.model_type.c_str(),
              dtype_name(dtype).data(), device.str().c_str());
  std::fflush(stdout);
  // Built and initialized directly on the device (the Philox init gives the CPU's values);
  // a checkpoint's weights would not change the timing, so only its config is used.
  const ops::AttentionKernels attention_kernels =
      attention_kernels_for(config.kernels, model_config.head_dim);
  std::shared_ptr<CausalLM> model = create_model(model_config, config.train.seed, dtype, device);
  set_attention_kernels(*model, attention_kernels);
  ops::set_gemm_autotune(device, config.kernels.gemm_autotune);
  model->train();
  // f32 masters only where the model is bf16; an f32 model updates in place.
  std::unique_ptr<AdamW> plain;
  std::unique_ptr<MixedPrecisionOptimizer> mixed;
  if (bf16) {
    mixed = std::make_unique<MixedPrecisionOptimizer>(model->named_parameters(),
                                                      config.optimizer.adamw);
  } else {
    plain = std::make_unique<AdamW>(model->named_parameters(), config.optimizer.adamw);
  }
  const int64_t params = model->num_parameters();
  const FlopCount flops = training_flops_per_token(model_config, params, seq_len);
  const std::string device_name = use_cuda ? cuda_device_name(0) : std::string("cpu");
#ifdef AUTOTP_WITH_CUDA
  if (use_cuda) CudaCachingAllocator::for_device(0).reset_peak();
#endif

  // Phase boundaries of a step. On CUDA they are events timed by the GPU and the host waits
  // once per step (after the optimizer), as the PyTorch script does: nothing inside the step
  // waits for the GPU (host ids and labels are checked on the host, uploads go through pinned
  // staging buffers), so the host queues work ahead of the GPU as in training. The step time
  // is the host's wall time from the step's start to the end of its work on the GPU.
  enum Mark { kStart, kForwardDone, kBackwardDone, kOptimizerDone, kMarks };
  std::unique_ptr<DeviceTimer> timer;
  if (use_cuda) {
    cuda_memory::synchronize(0);
    timer = std::make_unique<DeviceTimer>(0, kMarks);
  }
  std::array<BenchClock::time_point, kMarks> host_marks;
  auto mark = [&](Mark m) {
    host_marks[m] = BenchClock::now();
    if (timer) timer->mark(m);
  };
  auto phase_ms = [&](Mark from, Mark to) {
    return timer ? timer->elapsed_ms(from, to)
                 : std::chrono::duration<double, std::milli>(host_marks[to] - host_marks[from])
                       .count();
  };

  std::vector<double> forward_ms, backward_ms, optimizer_ms, step_ms, host_queue_ms;
  double last_loss = 0.0;
  // cudaMalloc calls during the timed steps: a steady step reuses cached blocks only.
  int64_t device_mallocs_before = 0, device_mallocs_timed = 0;
  auto device_malloc_calls = [&]() -> int64_t {
#ifdef AUTOTP_WITH_CUDA
    if (use_cuda) return CudaCachingAllocator::for_device(0).stats().device_malloc_calls;
#endif
    return 0;
  };
  std::unique_ptr<KernelProfiler> profiler;
  std::vector<KernelTime> kernels;
  double profiled_step_ms = 0.0;
  const int64_t timed_end = args.warmup + args.count;
  for (int64_t i = 0; i < timed_end + args.kernel_steps; ++i) {
    if (i == timed_end) profiler = std::make_unique<KernelProfiler>();
    if (i == args.warmup) device_mallocs_before = device_malloc_calls();
    const Batch batch = loader.batch(i, 0);
    mark(kStart);
    // Ids and labels stay on the host: the embedding and the loss check them there and upload
    // them without a host wait (uploaded here, both would be copied back to be checked).
    const Tensor loss = next_token_loss(model->forward(batch.input_ids), batch.labels);
    mark(kForwardDone);
    loss.backward();
    mark(kBackwardDone);
    if (mixed) {
      mixed->step();
      mixed->zero_grad();
    } else {
      plain->step();
      plain->zero_grad();
    }
    mark(kOptimizerDone);
    // The host's time to queue the step: near the step time, the GPU waits for the host.
    const double queued =
        std::chrono::duration<double, std::milli>(host_marks[kOptimizerDone] - host_marks[kStart])
            .count();
    if (timer) timer->wait(kOptimizerDone);
    const double step = ms_since(host_marks[kStart]);
    const double fwd = phase_ms(kStart, kForwardDone), bwd = phase_ms(kForwardDone, kBackwardDone),
                 opt = phase_ms(kBackwardDone, kOptimizerDone);
    last_loss = loss.item();
    AUTOTP_CHECK(std::isfinite(last_loss), "bench: the loss became {} at step {}", last_loss, i);
    if (i >= timed_end) {
      profiled_step_ms += step / static_cast<double>(args.kernel_steps);
    } else if (i >= args.warmup) {
      forward_ms.push_back(fwd);
      backward_ms.push_back(bwd);
      optimizer_ms.push_back(opt);
      step_ms.push_back(step);
      host_queue_ms.push_back(queued);
      if (i + 1 == timed_end) device_mallocs_timed = device_malloc_calls() - device_mallocs_before;
    }
  }

  if (profiler) kernels = profiler->stop();

  const double tokens_per_step = static_cast<double>(micro_batch * seq_len);
  const double step_s = mean_of(step_ms) / 1e3;
  const double tokens_per_s = tokens_per_step / step_s;
  const double achieved = flops.flops_per_token * tokens_per_s;
  // A peak of 0 means none known (plain values: GCC 12 -O3 misreads optional<double> here).
  const double peak = use_cuda ? dense_bf16_peak_flops(device_name).value_or(0.0) : 0.0;
  int64_t peak_memory = 0;
#ifdef AUTOTP_WITH_CUDA
  if (use_cuda)
    peak_memory = static_cast<int64_t>(CudaCachingAllocator::for_device(0).stats().peak_bytes);
#endif

  std::printf("device        %s\n", device_name.c_str());
  std::printf("model         %s, %lld parameters (N = %lld in 6 N), %s\n",
              model_config.model_type.c_str(), static_cast<long long>(params),
              static_cast<long long>(flops.non_embedding_params), dtype_name(dtype).data());
  std::printf("batch         %lld x %lld tokens per step (%lld warm-up + %lld timed steps)\n",
              static_cast<long long>(micro_batch), static_cast<long long>(seq_len),
              static_cast<long long>(args.warmup), static_cast<long long>(args.count));
  std::printf("step          %.2f ms (forward %.2f, backward %.2f, optimizer %.2f, comm 0)\n",
              mean_of(step_ms), mean_of(forward_ms), mean_of(backward_ms), mean_of(optimizer_ms));
  std::printf("throughput    %.0f tokens/s, %.2f TFLOP/s\n", tokens_per_s, achieved / 1e12);
  std::printf("flops         %s\n", flops.formula.c_str());
  std::printf("kernels       %s\n", kernel_config_summary(config.kernels).c_str());
  if (peak > 0.0) {
    std::printf("mfu           %.2f %% of %.0f TFLOP/s (dense bf16 peak of %s)\n",
                100.0 * achieved / peak, peak / 1e12, device_name.c_str());
  } else {
    std::printf("mfu           n/a (no dense bf16 peak known for %s)\n", device_name.c_str());
  }
  std::printf("host          %.2f ms to queue a step", mean_of(host_queue_ms));
  if (use_cuda) {
    std::printf(", %lld cudaMalloc calls in the timed steps",
                static_cast<long long>(device_mallocs_timed));
  }
  std::printf("\n");
  if (use_cuda)
    std::printf("peak memory   %.2f GiB\n", static_cast<double>(peak_memory) / (1 << 30));
  std::printf("last loss     %.4f\n", last_loss);
  const kernels::GemmAutotuneReport autotune = ops::gemm_autotune_report(device);
  if (config.kernels.gemm_autotune && use_cuda) print_gemm_autotune(autotune);
  if (profiler) print_kernel_table(kernels, args.kernel_steps, profiled_step_ms);

  json::Value out = json::Value::object();
  out.set("device", json::Value(device_name));
  out.set("model_type", json::Value(model_config.model_type));
  out.set("dtype", json::Value(std::string(dtype_name(dtype))));
  out.set("params", json::Value(params));
  out.set("non_embedding_params", json::Value(flops.non_embedding_params));
  out.set("micro_batch", json::Value(micro_batch));
  out.set("seq_len", json::Value(seq_len));
  out.set("steps", json::Value(args.count));
  out.set("step_ms", json::Value(mean_of(step_ms)));
  out.set("forward_ms", json::Value(mean_of(forward_ms)));
  out.set("backward_ms", json::Value(mean_of(backward_ms)));
  out.set("optimizer_ms", json::Value(mean_of(optimizer_ms)));
  out.set("communication_ms", json::Value(0.0));
  // How the phases were timed. Figures before session 13 synchronized between phases; later
  // ones labelled "gpu events, one host wait per step" still waited inside the step (labels and
  // ids read back to be checked, blocking uploads in the loss and the embedding's backward).
  out.set("phase_timing",
          json::Value(std::string(use_cuda ? "gpu events, one host wait per step, none inside it"
                                           : "host clock")));
  out.set("host_queue_ms", json::Value(mean_of(host_queue_ms)));
  out.set("device_malloc_calls_timed", json::Value(device_mallocs_timed));
  out.set("tokens_per_s", json::Value(tokens_per_s));
  out.set("flops_per_token", json::Value(flops.flops_per_token));
  out.set("flops_formula", json::Value(flops.formula));
  out.set("achieved_tflops", json::Value(achieved / 1e12));
  out.set("peak_bf16_tflops", peak > 0.0 ? json::Value(peak / 1e12) : json::Value());
  out.set("mfu", peak > 0.0 ? json::Value(achieved / peak) : json::Value());
  out.set("peak_memory_bytes", json::Value(peak_memory));
  out.set("last_loss", json::Value(last_loss));
  out.set("kernel_config", json::Value(kernel_config_summary(config.kernels)));
  if (config.kernels.gemm_autotune && use_cuda) {
    json::Value tuned = json::Value::object();
    tuned.set("shapes_searched", json::Value(autotune.shapes_searched));
    tuned.set("shapes_changed", json::Value(autotune.shapes_changed));
    tuned.set("shapes_searching", json::Value(autotune.shapes_searching));
    tuned.set("candidates_timed", json::Value(autotune.candidates_timed));
    tuned.set("heuristic_ms_one_call_each", json::Value(autotune.heuristic_ms));
    tuned.set("chosen_ms_one_call_each", json::Value(autotune.chosen_ms));
    out.set("gemm_autotune", std::move(tuned));
  }
  if (profiler) {
    out.set("profiled_steps", json::Value(args.kernel_steps));
    out.set("profiled_step_ms", json::Value(profiled_step_ms));
    json::Value list = json::Value::array();
    for (const KernelTime& k : kernels) {
      json::Value entry = json::Value::object();
      entry.set("name", json::Value(k.name));
      entry.set("calls_per_step",
                json::Value(static_cast<double>(k.calls) / static_cast<double>(args.kernel_steps)));
      entry.set("ms_per_step", json::Value(k.total_ms / static_cast<double>(args.kernel_steps)));
      list.push(std::move(entry));
    }
    out.set("kernels", std::move(list));
  }
  emit_json_report(out.dump(), args, "bench");
  return 0;
}

}  // namespace autotp::tools
