// `autotp bench-ops`: one op at a time at the config's training shapes, forward and backward
// timed with device synchronization; work is counted as useful FLOPs (GEMM-like ops) or as the
// bytes the op must move at least (memory-bound ops), and set against the device's peak.
#include "tools/bench_ops_command.h"

#include <cmath>
#include <cstdio>
#include <functional>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/io/json.h"
#include "core/ops.h"
#include "core/random.h"
#include "engine/config.h"
#include "engine/model_source.h"
#include "engine/optimizer.h"
#include "tools/bench_options.h"
#include "tools/config_notes.h"
#include "tools/flops.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/tensor_core_attention.h"
#include "kernels/stored_score_pieces.h"
#endif

namespace autotp::tools {

const char* const kBenchOpsUsage =
    "autotp bench-ops CONFIG.yaml [--iters N] [--warmup K] [--json FILE] [--device cpu|cuda] "
    "[--dtype f32|bf16] [--set key.path=value ...]";

namespace {

// What one op is measured against: FLOPs (tensor-core bound) or bytes (memory bound), for the
// forward and the backward pass.
enum class Bound { Flops, Bytes };

struct OpResult {
  std::string name, shape, work;  // work: how forward/backward work was counted
  Bound bound = Bound::Bytes;
  double forward_work = 0.0, backward_work = 0.0;  // FLOPs or bytes
  double forward_ms = 0.0, backward_ms = 0.0;      // 0 backward: not timed (no backward)
  std::string implementation = {};                 // which kernels ran, where it varies
};

// The attention kernels that run for this device, dtype and head dim.
std::string attention_implementation(const Device& device, [[maybe_unused]] DType dtype,
                                     [[maybe_unused]] int64_t dim) {
  if (device.is_cpu()) return "CPU reference";
#ifdef AUTOTP_WITH_CUDA
  if (kernels::cuda::tensor_core_attention_applies(static_cast<int>(dtype), dim)) {
    return "tensor-core flash attention (mma.sync)";
  }
#endif
  return "row-per-warp kernels (f32/f64, or a head dim outside 32/64/96/128)";
}

struct Context {
  Device device;
  DType dtype;
  int64_t iters, warmup;
  std::function<void()> sync;
  uint64_t seed = 1;

  // Inputs in [-1, 1] of the benchmark's dtype (leaves with a gradient when `grad`).
  Tensor input(const Shape& shape, bool grad = true) { return input_of(dtype, shape, grad); }
  Tensor input_of(DType type, const Shape& shape, bool grad) {
    Tensor t = Tensor::empty(shape, type, device);
    fill_uniform(t, 1234, seed++ << 32, -1.0, 1.0);
    if (grad) t.set_requires_grad(true);
    return t;
  }

  // Mean forward and backward time of fn over the timed iterations; the backward seeds the
  // output with `grad_out` (or skips it when undefined).
  void time(OpResult& r, const std::vector<Tensor>& leaves, const std::function<Tensor()>& fn,
            const Tensor& grad_out) {
    std::vector<double> fwd, bwd;
    for (int64_t i = 0; i < warmup + iters; ++i) {
      for (const Tensor& leaf : leaves)
        leaf.zero_grad();
      sync();
      const auto t0 = BenchClock::now();
      const Tensor out = fn();
      sync();
      const double f = ms_since(t0);
      double b = 0.0;
      if (grad_out.defined()) {
        const auto t1 = BenchClock::now();
        out.backward(grad_out);
        sync();
        b = ms_since(t1);
      }
      if (i >= warmup) {
        fwd.push_back(f);
        bwd.push_back(b);
      }
    }
    r.forward_ms = mean_of(fwd);
    r.backward_ms = mean_of(bwd);
  }
};

std::string shape_of(const std::vector<int64_t>& dims) {
  return shape_str(Shape(dims));
}

}  // namespace

int run_bench_ops(const std::vector<std::string>& raw_args) {
  const BenchOptions args =
      parse_bench_options(raw_args, "bench-ops", kBenchOpsUsage, "--iters", 10, 2);
  ConfigLoadOptions load;
  load.overrides = args.overrides;
  const Config config = load_config_file(args.config_path, load);
  print_config_warnings(config, "bench-ops");
  note_unsharded_run(config, "bench-ops");
  const Device device = bench_device(args, "bench-ops");
  const bool use_cuda = device.is_cuda();
  const DType dtype = bench_dtype(args, device, use_cuda, "bench-ops");
  const bool bf16 = dtype == DType::BF16;
  const std::string device_name = use_cuda ? cuda_device_name(0) : std::string("cpu");

  ModelConfig m = resolve_model_source(config.model).config;
  m.resolve_defaults();
  const int64_t seq = config.data.seq_len > 0 ? config.data.seq_len : 512;
  const int64_t batch = config.batch.micro_batch_per_gpu;
  const int64_t tokens = batch * seq, hidden = m.hidden_size, ffn = m.intermediate_size;
  const int64_t hq = m.num_attention_heads, hkv = m.num_key_value_heads, dim = m.head_dim;
  const int64_t vocab = m.vocab_size;
  const double e = static_cast<double>(dtype_size(dtype));  // bytes per element

  Context ctx{device, dtype, args.count, args.warmup, [&] {
                if (use_cuda) cuda_memory::synchronize(0);
              }};
  std::printf("bench-ops: %s shapes of %s on %s (%s), %lld x %lld tokens\n", m.model_type.c_str(),
              args.config_path.c_str(), device_name.c_str(), dtype_name(dtype).data(),
              static_cast<long long>(batch), static_cast<long long>(seq));
  std::fflush(stdout);
  std::vector<OpResult> results;

  {  // causal attention with grouped-query heads
    OpResult r{"attention", fmt::format("B{} Hq{} Hkv{} S{} D{}", batch, hq, hkv, seq, dim),
               "useful causal FLOPs: forward 2 products x 2 B Hq S^2 D / 2, backward 2.5x that",
               Bound::Flops};
    r.forward_work = 4.0 * static_cast<double>(batch * hq) * static_cast<double>(seq) *
                     static_cast<double>(seq) * static_cast<double>(dim) / 2.0;
    r.backward_work = 2.5 * r.forward_work;
    r.implementation = attention_implementation(device, dtype, dim);
    const Tensor q = ctx.input({batch, hq, seq, dim}), k = ctx.input({batch, hkv, seq, dim});
    const Tensor v = ctx.input({batch, hkv, seq, dim});
    ctx.time(
        r, {q, k, v}, [&] { return ops::scaled_dot_product_attention(q, k, v, true); },
        ctx.input({batch, hq, seq, dim}, false));
    results.push_back(r);
  }
#ifdef AUTOTP_WITH_CUDA
  // The tensor-core kernels alone (no autograd around them) as training runs them, with two
  // 16-row tiles per warp in the forward and dq kernels (128-row blocks), with the dk/dv
  // kernel keeping its K/V fragments in registers, with the grids' blocks by head instead of
  // longest first, and with dq read from the dS the dk/dv kernel stores: identical results, so
  // a GPU run says which is faster on this device.
  if (use_cuda && dim <= 64 &&
      kernels::cuda::tensor_core_attention_applies(static_cast<int>(dtype), dim)) {
    const Tensor q = ctx.input({batch, hq, seq, dim}, false);
    const Tensor k = ctx.input({batch, hkv, seq, dim}, false);
    const Tensor v = ctx.input({batch, hkv, seq, dim}, false);
    const Tensor dout = ctx.input({batch, hq, seq, dim}, false);
    const Tensor out = Tensor::empty({batch, hq, seq, dim}, dtype, device);
    const Tensor lse = Tensor::empty({batch, hq, seq}, DType::F32, device);
    const Tensor delta = Tensor::empty({batch, hq, seq}, DType::F32, device);
    const Tensor dq = Tensor::empty({batch, hq, seq, dim}, dtype, device);
    const Tensor dk = Tensor::empty({batch, hkv, seq, dim}, dtype, device);
    const Tensor dv = Tensor::empty({batch, hkv, seq, dim}, dtype, device);
    const double scale = 1.0 / std::sqrt(static_cast<double>(dim));
    const int code = static_cast<int>(dtype);
    const kernels::AttentionLayouts layouts =
        kernels::contiguous_attention_layouts(hq, hkv, seq, dim);
    struct Variant {
      int tiles;
      bool kv_in_registers;
      bool longest_first;
      bool stored_scores;
    };
    const int64_t score_elements = kernels::stored_score_buffer_elements(
        kernels::stored_score_pieces(batch, hq, hkv, seq, true, INT64_MAX), hq, hkv, seq, true);
    const Tensor scores = Tensor::empty({score_elements}, dtype, device);
    for (const Variant variant : {Variant{1, false, true, false}, Variant{2, false, true, false},
                                  Variant{1, true, true, false}, Variant{1, false, false, false},
                                  Variant{1, false, true, true}}) {
      const int tiles = variant.tiles;
      OpResult r{
          fmt::format("attention kernels, {} row tile{}/warp{}{}{}", tiles, tiles > 1 ? "s" : "",
                      variant.kv_in_registers ? ", dk/dv K,V in registers" : "",
                      variant.longest_first ? "" : ", blocks by head",
                      variant.stored_scores ? ", dq from stored dS" : ""),
          fmt::format("B{} Hq{} Hkv{} S{} D{}", batch, hq, hkv, seq, dim),
          "as attention; the kernels alone (forward; dq and dk/dv)", Bound::Flops};
      r.forward_work = results.front().forward_work;
      r.backward_work = results.front().backward_work;
      r.implementation = fmt::format(
          "tensor-core flash attention, {}-row forward and dq blocks, dk/dv K,V {}, {}{}",
          tiles * 64,
          variant.kv_in_registers ? "fragments in registers" : "reloaded per query tile",
          variant.longest_first ? "longest blocks first" : "blocks by head",
          variant.stored_scores
              ? fmt::format(", dS stored by dk/dv and read back by dq ({:.0f} MiB)",
                            static_cast<double>(scores.numel()) * 2.0 / (1024.0 * 1024.0))
              : "");
      kernels::cuda::TensorCoreBackwardOptions options;
      options.dq_row_tiles_per_warp = tiles;
      options.dkdv_kv_in_registers = variant.kv_in_registers;
      options.longest_first = variant.longest_first;
      options.stored_scores = variant.stored_scores ? scores.raw_data() : nullptr;
      options.stored_scores_elements = score_elements;
      std::vector<double> fwd, bwd;
      for (int64_t i = 0; i < ctx.warmup + ctx.iters; ++i) {
        ctx.sync();
        const auto t0 = BenchClock::now();
        kernels::cuda::tensor_core_attention_forward(
            code, out.raw_data(), lse.raw_data(), q.raw_data(), k.raw_data(), v.raw_data(), batch,
            hq, hkv, seq, dim, scale, true, layouts, nullptr, tiles, variant.longest_first);
        ctx.sync();
        const double f = ms_since(t0);
        const auto t1 = BenchClock::now();
        kernels::cuda::tensor_core_attention_backward(
            code, dq.raw_data(), dk.raw_data(), dv.raw_data(), q.raw_data(), k.raw_data(),
            v.raw_data(), out.raw_data(), lse.raw_data(), dout.raw_data(), delta.raw_data(), batch,
            hq, hkv, seq, dim, scale, true, layouts, nullptr, options);
        ctx.sync();
        if (i >= ctx.warmup) {
          fwd.push_back(f);
          bwd.push_back(ms_since(t1));
        }
      }
      r.forward_ms = mean_of(fwd);
      r.backward_ms = mean_of(bwd);
      results.push_back(r);
    }
  }
#endif
  {  // the MLP's up projection: a GEMM at the model's largest inner shape
    OpResult r{"gemm (mlp up projection)", fmt::format("M{} K{} N{}", tokens, hidden, ffn),
               "2 M N K forward, 4 M N K backward (input and weight gradients)", Bound::Flops};
    r.forward_work =
        2.0 * static_cast<double>(tokens) * static_cast<double>(hidden) * static_cast<double>(ffn);
    r.backward_work = 2.0 * r.forward_work;
    const Tensor x = ctx.input({tokens, hidden}), w = ctx.input({ffn, hidden});
    ctx.time(
        r, {x, w}, [&] { return ops::linear(x, w); }, ctx.input({tokens, ffn}, false));
    results.push_back(r);
  }
  {  // the output projection with its residual: the residual as the GEMM's C input, and the
     // GEMM followed by a separate add (what the decoder layer ran before session 14)
    const double flops = 2.0 * static_cast<double>(tokens) * static_cast<double>(hidden) *
                         static_cast<double>(hidden);
    const Tensor x = ctx.input({tokens, hidden}), w = ctx.input({hidden, hidden});
    const Tensor residual = ctx.input({tokens, hidden});
    const Tensor grad = ctx.input({tokens, hidden}, false);
    OpResult fused{"gemm + residual in C", fmt::format("M{} K{} N{}", tokens, hidden, hidden),
                   "2 M N K forward, 4 M N K backward; the residual is the GEMM's C input",
                   Bound::Flops};
    fused.forward_work = flops;
    fused.backward_work = 2.0 * flops;
    ctx.time(
        fused, {x, w, residual}, [&] { return ops::linear_add(x, w, Tensor(), residual); }, grad);
    results.push_back(fused);
    OpResult separate{"gemm, then residual add", fused.shape,
                      "as gemm + residual, with the residual added by a separate kernel",
                      Bound::Flops};
    separate.forward_work = flops;
    separate.backward_work = 2.0 * flops;
    ctx.time(
        separate, {x, w, residual}, [&] { return ops::add(residual, ops::linear(x, w)); }, grad);
    results.push_back(separate);
  }
  const double n_hidden = static_cast<double>(tokens * hidden);
  {
    OpResult r{"rms_norm", shape_of({tokens, hidden}),
               "bytes: forward reads x, writes y; backward reads x and dy, writes dx",
               Bound::Bytes};
    r.forward_work = 2.0 * n_hidden * e;
    r.backward_work = 3.0 * n_hidden * e;
    const Tensor x = ctx.input({tokens, hidden}), w = ctx.input({hidden});
    ctx.time(
        r, {x, w}, [&] { return ops::rms_norm(x, w, 1e-5); }, ctx.input({tokens, hidden}, false));
    results.push_back(r);
  }
  const double n_ffn = static_cast<double>(tokens * ffn);
  {
    OpResult r{"swiglu", shape_of({tokens, ffn}),
               "bytes: forward reads gate and up, writes out; backward reads gate, up and dout, "
               "writes both gradients",
               Bound::Bytes};
    r.forward_work = 3.0 * n_ffn * e;
    r.backward_work = 5.0 * n_ffn * e;
    const Tensor gate = ctx.input({tokens, ffn}), up = ctx.input({tokens, ffn});
    ctx.time(
        r, {gate, up}, [&] { return ops::swiglu(gate, up); }, ctx.input({tokens, ffn}, false));
    results.push_back(r);
  }
  {
    OpResult r{"rope (queries)", shape_of({batch, hq, seq, dim}),
               "bytes: forward reads x, writes y; backward reads dy, writes dx", Bound::Bytes};
    r.forward_work = 2.0 * static_cast<double>(batch * hq * seq * dim) * e;
    r.backward_work = r.forward_work;
    auto [cos, sin] = ops::rotary_tables(seq, dim, m.rope_theta);
    const Tensor c = cos.to(dtype).to(device), s = sin.to(dtype).to(device);
    const Tensor x = ctx.input({batch, hq, seq, dim});
    ctx.time(
        r, {x}, [&] { return ops::apply_rotary(x, c, s); },
        ctx.input({batch, hq, seq, dim}, false));
    results.push_back(r);
  }
  {
    OpResult r{"cross_entropy", shape_of({tokens, vocab}),
               "bytes: forward reads the logits once; backward reads them, writes their gradient",
               Bound::Bytes};
    const double n = static_cast<double>(tokens * vocab);
    r.forward_work = n * e;
    r.backward_work = 2.0 * n * e;
    const Tensor logits = ctx.input({tokens, vocab});
    std::vector<int64_t> ids(static_cast<size_t>(tokens));
    for (int64_t i = 0; i < tokens; ++i)
      ids[static_cast<size_t>(i)] = (i * 7919) % vocab;
    const Tensor targets = Tensor::from_vector_i64(ids, {tokens}, DType::I64, device);
    ctx.time(
        r, {logits}, [&] { return ops::cross_entropy(logits, targets); },
        Tensor::ones({}, dtype, device));
    results.push_back(r);
  }
  {  // AdamW over f32 parameters the size of one decoder layer's MLP (bf16: with model copies)
    const int64_t elements = 3 * hidden * ffn;
    OpResult r{"adamw", shape_of({elements}),
               bf16 ? "bytes per element: f32 param, grad, m, v read; param, m, v written; bf16 "
                      "copy written (30)"
                    : "bytes per element: f32 param, grad, m, v read; param, m, v written (28)",
               Bound::Bytes};
    r.forward_work = static_cast<double>(elements) * (bf16 ? 30.0 : 28.0);
    Tensor param = ctx.input_of(DType::F32, {elements}, true);
    AdamW adamw({{"w", param}}, config.optimizer.adamw);
    if (bf16) adamw.set_model_copies({Tensor::empty({elements}, DType::BF16, device)});
    const Tensor grad = ctx.input_of(DType::F32, {elements}, false);
    ctx.time(
        r, {},
        [&] {
          param.set_grad(grad);
          adamw.step();
          return Tensor();
        },
        Tensor());
    results.push_back(r);
    if (bf16) {
      // As a bf16 training step runs it (one backward per step, no loss scaler): the model's
      // bf16 gradients read directly, widened inside the kernel.
      OpResult direct{"adamw (bf16 gradients)", shape_of({elements}),
                      "bytes per element: f32 param, m, v and bf16 grad read; param, m, v and the "
                      "bf16 copy written (28)",
                      Bound::Bytes};
      direct.forward_work = static_cast<double>(elements) * 28.0;
      const Tensor grad16 = ctx.input_of(DType::BF16, {elements}, false);
      ctx.time(
          direct, {},
          [&] {
            adamw.step_with_grads({grad16});
            return Tensor();
          },
          Tensor());
      results.push_back(direct);
    }
  }

  const double peak_flops = use_cuda ? dense_bf16_peak_flops(device_name).value_or(0.0) : 0.0;
  const double peak_bytes =
      use_cuda ? memory_bandwidth_bytes_per_s(device_name).value_or(0.0) : 0.0;
  std::printf("%-26s %-22s %10s %10s %12s %12s %9s %9s\n", "op", "shape", "fwd ms", "bwd ms",
              "fwd rate", "bwd rate", "fwd peak", "bwd peak");
  json::Value ops_json = json::Value::array();
  for (const OpResult& r : results) {
    const bool flops = r.bound == Bound::Flops;
    const double scale = flops ? 1e12 : 1e9;  // TFLOP/s or GB/s
    const double peak = flops ? peak_flops : peak_bytes;
    auto rate = [](double work, double ms) { return ms > 0.0 ? work / (ms / 1e3) : 0.0; };
    const double fwd_rate = rate(r.forward_work, r.forward_ms);
    const double bwd_rate = rate(r.backward_work, r.backward_ms);
    auto percent = [&](double achieved) {
      return peak > 0.0 && achieved > 0.0 ? fmt::format("{:.1f} %", 100.0 * achieved / peak)
                                          : std::string("n/a");
    };
    const char* unit = flops ? "TFLOP/s" : "GB/s";
    std::printf(
        "%-26s %-22s %10.3f %10.3f %12s %12s %9s %9s\n", r.name.c_str(), r.shape.c_str(),
        r.forward_ms, r.backward_ms, fmt::format("{:.1f} {}", fwd_rate / scale, unit).c_str(),
        r.backward_ms > 0.0 ? fmt::format("{:.1f} {}", bwd_rate / scale, unit).c_str() : "-",
        percent(fwd_rate).c_str(), percent(bwd_rate).c_str());
    json::Value o = json::Value::object();
    o.set("op", json::Value(r.name))
        .set("shape", json::Value(r.shape))
        .set("bound", json::Value(std::string(flops ? "flops" : "bytes")))
        .set("work", json::Value(r.work))
        .set("implementation",
             r.implementation.empty() ? json::Value() : json::Value(r.implementation))
        .set("forward_ms", json::Value(r.forward_ms))
        .set("backward_ms", json::Value(r.backward_ms))
        .set("forward_work", json::Value(r.forward_work))
        .set("backward_work", json::Value(r.backward_work))
        .set("forward_rate", json::Value(fwd_rate))
        .set("backward_rate", json::Value(bwd_rate))
        .set("forward_of_peak", peak > 0.0 ? json::Value(fwd_rate / peak) : json::Value())
        .set("backward_of_peak",
             peak > 0.0 && r.backward_ms > 0.0 ? json::Value(bwd_rate / peak) : json::Value());
    ops_json.push(o);
  }
  for (const OpResult& r : results) {
    if (!r.implementation.empty())
      std::printf("%s: %s\n", r.name.c_str(), r.implementation.c_str());
  }
  if (peak_flops > 0.0 || peak_bytes > 0.0) {
    std::printf("peaks: %.0f TFLOP/s dense bf16, %.0f GB/s memory (%s datasheet)\n",
                peak_flops / 1e12, peak_bytes / 1e9, device_name.c_str());
  }
  json::Value out = json::Value::object();
  out.set("device", json::Value(device_name))
      .set("dtype", json::Value(std::string(dtype_name(dtype))))
      .set("iters", json::Value(args.count))
      .set("peak_bf16_flops", peak_flops > 0.0 ? json::Value(peak_flops) : json::Value())
      .set("peak_bytes_per_s", peak_bytes > 0.0 ? json::Value(peak_bytes) : json::Value())
      .set("ops", ops_json);
  emit_json_report(out.dump(), args, "bench-ops");
  return 0;
}

}  // namespace autotp::tools
