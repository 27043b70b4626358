// Training on CUDA against the CPU reference: the fused multi-tensor AdamW (f32/f64 and
// master weights with bf16/f16 model copies), a tiny Llama's forward/backward, 10 training
// steps in f32 and in bf16 mixed precision, the Trainer on CUDA (trajectory, bf16, resume),
// and keep_module_on_host's device memory. *_CUDA tests skip, saying why, without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autotp/apply_autotp.h"
#include "core/autograd/grad_mode.h"
#include "core/cuda_allocator.h"
#include "core/ops.h"
#include "engine/clip.h"
#include "engine/config.h"
#include "engine/data.h"
#include "engine/mixed_precision.h"
#include "engine/optimizer.h"
#include "engine/trainer.h"
#include "models/llama.h"
#include "models/registry.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/engine/trainer_test_helpers.h"
#include "tests/support/mirrored_group.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using autotp::testing::all_close;
using autotp::testing::kCudaF64Tolerance;
using autotp::testing::quiet_on;
using autotp::testing::random_tensor;
using autotp::testing::TempDir;
using autotp::testing::Tolerance;
using autotp::testing::tolerance_for;
using autotp::testing::train_to_the_end;
using autotp::testing::trajectory_config;

const Device kCpu = Device::cpu();
const Device kCuda = Device::cuda(0);

#define SKIP_WITHOUT_CUDA() \
  if (!cuda_available())    \
  GTEST_SKIP() << "no CUDA device: CUDA training is compared with the CPU on GPUs"

constexpr double kF32Unit = 0x1p-24;  // unit roundoff of f32
constexpr double kBf16Unit = 0x1p-9;  // unit roundoff of bf16
constexpr Tolerance kExact{0.0, 0.0};

Tensor host(const Tensor& t) {
  return t.detach().to(kCpu);
}

// ---- fused AdamW -----------------------------------------------------------------------------

// Odd sizes: single elements, sizes around the 32768-element chunk (kAdamWChunkElements), a 2-D
// weight spanning three chunks, and a norm weight (excluded from decay).
struct ParamSpec {
  const char* name;
  Shape shape;
};
const std::vector<ParamSpec> kSpecs = {{"a.weight", {1}},          {"b.weight", {7}},
                                       {"c.weight", {3, 5}},       {"d.bias", {32769}},
                                       {"e.weight", {129, 600}},   {"f.weight", {32767}},
                                       {"model.norm.weight", {33}}};

NamedTensors make_params(DType dtype, Device device, uint64_t seed = 21) {
  NamedTensors params;
  for (size_t i = 0; i < kSpecs.size(); ++i) {
    Tensor t = random_tensor(kSpecs[i].shape, seed + i, DType::F64).to(dtype).to(device).detach();
    t.set_requires_grad(true);
    params.emplace_back(kSpecs[i].name, t);
  }
  return params;
}

// Gradient of parameter i at step t (fixed values, f64 host -> dtype); "b.weight" has none
// at step 2, so its step count lags (per-parameter bias corrections in one launch).
void set_grads(const NamedTensors& params, int t, DType grad_dtype) {
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i].second;
    if (i == 1 && t == 2) {
      p.zero_grad();
      continue;
    }
    const Tensor g = random_tensor(kSpecs[i].shape, 500 + 31 * t + i, DType::F64, -3.0, 3.0);
    p.set_grad(g.to(grad_dtype).to(p.device()));
  }
}

std::vector<AdamWOptions> option_sets() {
  AdamWOptions adamw;  // decoupled decay, exclusion of biases and norms
  adamw.lr = 0.01;
  adamw.weight_decay = 0.1;
  adamw.no_weight_decay = exclude_bias_and_norm;
  AdamWOptions small_beta1 = adamw;  // the other lerp branch (1 - beta1 >= 0.5)
  small_beta1.beta1 = 0.3;
  small_beta1.beta2 = 0.9;
  AdamWOptions adam = adamw;  // coupled (L2) decay, no bias correction
  adam.decoupled_weight_decay = false;
  adam.bias_correction = false;
  adam.weight_decay = 0.05;
  return {adamw, small_beta1, adam};
}

// Each GPU parameter equals its CPU twin bitwise; the first that does not is named.
::testing::AssertionResult same_params(const NamedTensors& gpu, const NamedTensors& cpu,
                                       const std::string& what) {
  for (size_t i = 0; i < cpu.size(); ++i) {
    ::testing::AssertionResult same =
        all_close(host(gpu[i].second), cpu[i].second, kExact, cpu[i].first + " " + what);
    if (!same) return same;
  }
  return ::testing::AssertionSuccess();
}

// The GPU optimizer's step counts and moments equal the CPU's bitwise.
void expect_same_adamw_state(const AdamW& gpu_opt, const AdamW& cpu_opt, const NamedTensors& cpu,
                             const std::string& what) {
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_EQ(gpu_opt.state(i).step, cpu_opt.state(i).step) << cpu[i].first;
    EXPECT_TRUE(all_close(host(gpu_opt.state(i).exp_avg), cpu_opt.state(i).exp_avg, kExact,
                          cpu[i].first + ".exp_avg, " + what));
    EXPECT_TRUE(all_close(host(gpu_opt.state(i).exp_avg_sq), cpu_opt.state(i).exp_avg_sq, kExact,
                          cpu[i].first + ".exp_avg_sq, " + what));
  }
}

// The fused kernel performs the CPU kernel's IEEE operations in the same order, each
// correctly rounded and none contracted into an FMA (and the CPU build uses
// -ffp-contract=off), so parameters and moments must be bitwise equal: tolerance 0.
TEST(CudaAdamW, FusedMultiTensorUpdateEqualsTheCpuKernelBitwise_CUDA) {
  SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::F32, DType::F64}) {
    const std::vector<AdamWOptions> sets = option_sets();
    for (size_t k = 0; k < sets.size(); ++k) {
      const std::string what = std::string(dtype_name(dtype)) + ", options " + std::to_string(k);
      const NamedTensors cpu = make_params(dtype, kCpu);
      const NamedTensors gpu = make_params(dtype, kCuda);
      AdamW cpu_opt(cpu, sets[k]);
      AdamW gpu_opt(gpu, sets[k]);
      for (int t = 0; t < 5; ++t) {
        set_grads(cpu, t, dtype);
        set_grads(gpu, t, dtype);
        cpu_opt.step();
        gpu_opt.step();
        ASSERT_TRUE(same_params(gpu, cpu, "after step " + std::to_string(t) + ", " + what));
      }
      expect_same_adamw_state(gpu_opt, cpu_opt, cpu, what);
      EXPECT_EQ(gpu_opt.state(1).step, 4);
    }
  }
}

// Gradients of the parameters' dtype with a scale folded into the fused update (a clipping
// coefficient, AdamW::step_with_grads): the kernel multiplies each gradient by the scale
// rounded to the dtype, as the CPU's ops::mul does before its kernel runs, so the results are
// the CPU's bitwise (tolerance 0).
TEST(CudaAdamW, ScaledGradientsOfTheParameterDtypeGiveTheCpuStepBitwise_CUDA) {
  SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::F32, DType::F64}) {
    for (double scale : {0.3, 1.7}) {
      const std::vector<AdamWOptions> sets = option_sets();
      for (size_t k = 0; k < sets.size(); ++k) {
        const std::string what = std::string(dtype_name(dtype)) + ", grad_scale " +
                                 std::to_string(scale) + ", options " + std::to_string(k);
        const NamedTensors cpu = make_params(dtype, kCpu, /*seed=*/70);
        const NamedTensors gpu = make_params(dtype, kCuda, /*seed=*/70);
        AdamW cpu_opt(cpu, sets[k]);
        AdamW gpu_opt(gpu, sets[k]);
        for (int t = 0; t < 3; ++t) {
          set_grads(cpu, t, dtype);
          set_grads(gpu, t, dtype);
          std::vector<Tensor> cpu_grads, gpu_grads;
          for (size_t i = 0; i < cpu.size(); ++i) {
            cpu_grads.push_back(cpu[i].second.grad());
            gpu_grads.push_back(gpu[i].second.grad());
          }
          cpu_opt.step_with_grads(cpu_grads, scale);
          gpu_opt.step_with_grads(gpu_grads, scale);
          ASSERT_TRUE(same_params(gpu, cpu, "after step " + std::to_string(t) + ", " + what));
        }
        expect_same_adamw_state(gpu_opt, cpu_opt, cpu, what);
      }
    }
  }
}

// bf16 gradients that start one element into a larger buffer (2 bytes off the 8-byte
// boundary of a 4-element bf16 load), as views of a flat gradient buffer can: AdamW hands the
// fused kernel their addresses unchanged (a contiguous view stays a view), so each chunk takes
// the scalar path. The f32 masters and moments must equal the CPU kernel's step on the
// gradients widened to f32 bitwise, without and with a gradient scale.
TEST(CudaAdamW, Bf16GradientsOffTheVectorBoundaryGiveTheCpuStepBitwise_CUDA) {
  SKIP_WITHOUT_CUDA();
  for (double scale : {1.0, 0.3}) {
    const std::string what = "grad_scale " + std::to_string(scale);
    const NamedTensors cpu = make_params(DType::F32, kCpu, /*seed=*/80);
    const NamedTensors gpu = make_params(DType::F32, kCuda, /*seed=*/80);
    AdamW cpu_opt(cpu, option_sets()[0]);
    AdamW gpu_opt(gpu, option_sets()[0]);
    for (int t = 0; t < 3; ++t) {
      std::vector<Tensor> cpu_grads(kSpecs.size()), gpu_grads(kSpecs.size());
      for (size_t i = 0; i < kSpecs.size(); ++i) {
        if (i == 1 && t == 2) continue;  // no gradient: its step count lags
        const Shape& shape = kSpecs[i].shape;
        const int64_t n = shape_numel(shape);
        // [n + 1] bf16 values; the gradient is elements 1..n.
        const Tensor full =
            random_tensor({n + 1}, 800 + 31 * t + i, DType::F64, -3.0, 3.0).to(DType::BF16);
        cpu_grads[i] = full.narrow(0, 1, n).contiguous().to(DType::F32).view(shape);
        gpu_grads[i] = full.to(kCuda).narrow(0, 1, n).view(shape);
        const Tensor fed = gpu_grads[i].contiguous();  // what AdamW passes to the kernel
        ASSERT_EQ(fed.raw_data(), gpu_grads[i].raw_data()) << kSpecs[i].name;
        ASSERT_NE(reinterpret_cast<uintptr_t>(fed.raw_data()) % 8, 0u) << kSpecs[i].name;
      }
      cpu_opt.step_with_grads(cpu_grads, scale);
      gpu_opt.step_with_grads(gpu_grads, scale);
      ASSERT_TRUE(same_params(gpu, cpu, "after step " + std::to_string(t) + ", " + what));
    }
    expect_same_adamw_state(gpu_opt, cpu_opt, cpu, what);
    EXPECT_EQ(gpu_opt.state(1).step, 2);
  }
}

// Master weights on CUDA with low-precision model weights written by the same kernel: the
// masters must equal the CPU's f32 AdamW bitwise (as above) and each model weight must be the
// CPU master rounded to its dtype (round to nearest even on both sides): tolerance 0.
TEST(CudaAdamW, MasterWeightStepWritesTheCpuF32StepRoundedToTheModelDtype_CUDA) {
  SKIP_WITHOUT_CUDA();
  for (DType model_dtype : {DType::BF16, DType::F16}) {
    const std::string what(dtype_name(model_dtype));
    const NamedTensors exact = make_params(DType::F32, kCpu, /*seed=*/40);
    const NamedTensors cpu = make_params(DType::F32, kCpu, /*seed=*/40);
    const NamedTensors model = make_params(model_dtype, kCuda, /*seed=*/40);
    const AdamWOptions options = option_sets()[0];
    AdamW cpu_opt(cpu, options);
    MixedPrecisionOptimizer gpu_opt(model, options);
    gpu_opt.set_master_weights(exact);  // f32 values that the model dtype cannot hold
    for (int t = 0; t < 5; ++t) {
      set_grads(model, t, model_dtype);  // low-precision gradients, as backward leaves them
      for (size_t i = 0; i < cpu.size(); ++i) {
        cpu[i].second.zero_grad();
        const Tensor g = model[i].second.grad();
        if (g.defined()) cpu[i].second.set_grad(host(g).to(DType::F32));
      }
      cpu_opt.step();
      ASSERT_TRUE(gpu_opt.step());
      for (size_t i = 0; i < cpu.size(); ++i) {
        const std::string at = cpu[i].first + " after step " + std::to_string(t) + ", " + what;
        ASSERT_TRUE(all_close(host(gpu_opt.master_params()[i].second), cpu[i].second, kExact,
                              "master " + at));
        ASSERT_EQ(model[i].second.dtype(), model_dtype);
        ASSERT_TRUE(
            all_close(host(model[i].second), cpu[i].second.to(model_dtype), kExact, "model " + at));
      }
    }
  }
}

// One backward per step, clipped: the mixed-precision optimizer takes the norm from the bf16
// model gradients and folds the clipping coefficient into the fused update, which reads them
// directly (grad dtype bf16, scale != 1 in the kernel). It must equal the path through f32
// master gradients (cast, scale pass, f32 update) on the same GPU bit for bit.
TEST(CudaAdamW, ClippedMasterStepsFromBf16GradientsEqualTheMasterGradientPathBitwise_CUDA) {
  SKIP_WITHOUT_CUDA();
  const NamedTensors exact = make_params(DType::F32, kCpu, /*seed=*/60);
  const NamedTensors direct_model = make_params(DType::BF16, kCuda, /*seed=*/60);
  const NamedTensors master_model = make_params(DType::BF16, kCuda, /*seed=*/60);
  MixedPrecisionOptimizer direct(direct_model, option_sets()[0]);
  MixedPrecisionOptimizer through_masters(master_model, option_sets()[0]);
  direct.set_master_weights(exact);
  through_masters.set_master_weights(exact);
  for (int t = 0; t < 4; ++t) {
    set_grads(direct_model, t, DType::BF16);
    set_grads(master_model, t, DType::BF16);
    through_masters.accumulate_grads();
    // 142,992 values uniform in [-3, 3]: norms near sqrt(3 * 142992) = 655, every step clips.
    const double norm = direct.clip_grad_norm(5.0);
    ASSERT_EQ(norm, through_masters.clip_grad_norm(5.0)) << "step " << t;
    ASSERT_GT(norm, 5.0);
    ASSERT_FALSE(direct.master_params()[4].second.grad().defined());
    ASSERT_TRUE(direct.step());
    ASSERT_TRUE(through_masters.step());
    for (size_t i = 0; i < kSpecs.size(); ++i) {
      const std::string at = std::string(kSpecs[i].name) + " after step " + std::to_string(t);
      ASSERT_TRUE(all_close(host(direct.master_params()[i].second),
                            host(through_masters.master_params()[i].second), kExact,
                            "master " + at));
      ASSERT_TRUE(all_close(host(direct_model[i].second), host(master_model[i].second), kExact,
                            "model " + at));
      ASSERT_TRUE(all_close(host(direct.adamw().state(i).exp_avg),
                            host(through_masters.adamw().state(i).exp_avg), kExact, "m " + at));
    }
  }
}

// Micro-batch gradients accumulate into the f32 master gradients in one fused launch per
// gradient dtype. Each element must be what the tensor ops give: f32(g) times the inverse loss
// scale (1/3 here: a rounding multiply), added to the running sum; and with a clipping
// coefficient taken from the model gradients, f32(g) times it.
TEST(CudaMixedPrecision, FusedGradientAccumulationEqualsTheTensorOpsBitwise_CUDA) {
  SKIP_WITHOUT_CUDA();
  NoGradGuard no_grad;
  for (DType dtype : {DType::BF16, DType::F16}) {
    const std::string what(dtype_name(dtype));
    LossScalerOptions scaling;
    scaling.dynamic = false;
    scaling.initial_scale = 3.0;
    const NamedTensors model = make_params(dtype, kCuda, /*seed=*/70);
    MixedPrecisionOptimizer opt(model, option_sets()[0], scaling);
    std::vector<Tensor> expected(kSpecs.size());
    for (int t = 0; t < 3; ++t) {
      set_grads(model, t, dtype);  // "b.weight" has none at step 2
      for (size_t i = 0; i < kSpecs.size(); ++i) {
        const Tensor g = model[i].second.grad();
        if (!g.defined()) continue;
        const Tensor term = ops::mul(g.to(DType::F32), 1.0 / 3.0);
        expected[i] = expected[i].defined() ? ops::add(expected[i], term) : term;
      }
      opt.accumulate_grads();
    }
    for (size_t i = 0; i < kSpecs.size(); ++i) {
      EXPECT_FALSE(model[i].second.grad().defined()) << kSpecs[i].name;
      EXPECT_TRUE(all_close(host(opt.master_params()[i].second.grad()), host(expected[i]), kExact,
                            std::string(kSpecs[i].name) + ", " + what));
    }
    // A pending clipping coefficient (no loss scaler) multiplies the gradients it came from.
    const NamedTensors clipped_model = make_params(dtype, kCuda, /*seed=*/80);
    MixedPrecisionOptimizer clipped(clipped_model, option_sets()[0]);
    set_grads(clipped_model, 0, dtype);
    std::vector<Tensor> grads;
    for (const auto& [name, p] : clipped_model)
      grads.push_back(p.grad());
    const double coef = clip_coefficient(clipped.clip_grad_norm(1.0), 1.0);
    ASSERT_LT(coef, 1.0);
    clipped.accumulate_grads();
    for (size_t i = 0; i < kSpecs.size(); ++i) {
      EXPECT_TRUE(all_close(host(clipped.master_params()[i].second.grad()),
                            host(ops::mul(grads[i].to(DType::F32), coef)), kExact,
                            std::string(kSpecs[i].name) + " clipped, " + what));
    }
  }
}

// ---- a tiny Llama ----------------------------------------------------------------------------

constexpr int64_t kVocab = 101, kBatch = 4, kSeq = 16;

ModelConfig tiny_llama() {
  ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = kVocab;
  c.hidden_size = 64;
  c.intermediate_size = 88;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.resolve_defaults();
  c.validate();
  return c;
}

// The model initialized from seed 7 (in f32 on the CPU), converted to `dtype` on `device`,
// so that every run starts from the same weights.
std::shared_ptr<CausalLM> tiny_model(DType dtype, Device device) {
  const auto reference = create_model(tiny_llama(), /*seed=*/7);
  auto model = create_model_uninitialized(tiny_llama(), dtype, device);
  const NamedTensors src = reference->named_parameters(), dst = model->named_parameters();
  EXPECT_EQ(src.size(), dst.size());
  NoGradGuard no_grad;
  for (size_t i = 0; i < dst.size() && i < src.size(); ++i) {
    EXPECT_EQ(dst[i].first, src[i].first);
    dst[i].second.copy_(src[i].second);
  }
  return model;
}

// Fixed batches of the synthetic bigram stream: [kBatch, kSeq] ids and shifted labels.
const DataLoader& loader() {
  static const DataLoader l(std::shared_ptr<const TokenSource>(make_synthetic_source(3, kVocab)),
                            kSeq, DataLayout{kBatch, 1, 0, 1});
  return l;
}

// Mean next-token cross entropy of logits [B, S, V] against labels [B, S] (already shifted).
Tensor next_token_loss(const Tensor& logits, const Tensor& labels) {
  return ops::cross_entropy(logits.reshape({kBatch * kSeq, kVocab}),
                            labels.to(logits.device()).reshape({kBatch * kSeq}));
}

struct Pass {
  Tensor logits;       // [B, S, V] f64 on the CPU
  Tensor loss;         // [] f64 on the CPU
  NamedTensors grads;  // per parameter, f64 on the CPU
};

Pass forward_backward(DType dtype, Device device) {
  const auto model = tiny_model(dtype, device);
  const Batch batch = loader().batch(0, 0);
  const Tensor logits = model->forward(batch.input_ids.to(device));
  const Tensor loss = next_token_loss(logits, batch.labels);
  loss.backward();
  Pass pass{host(logits).to(DType::F64), host(loss).to(DType::F64), {}};
  for (const auto& [name, p] : model->named_parameters()) {
    EXPECT_TRUE(p.grad().defined()) << name;
    pass.grads.emplace_back(name, p.grad().defined() ? host(p.grad()).to(DType::F64)
                                                     : Tensor::zeros(p.shape(), DType::F64));
  }
  return pass;
}

double max_abs(const Tensor& t) {
  double m = 0.0;
  for (double v : t.to_vector())
    m = std::max(m, std::fabs(v));
  return m;
}

// Within `units` f32 unit roundoffs of the tensor's largest value (never tighter than the
// table's f32 tolerance).
Tolerance scaled_f32(const Tensor& expected, double units) {
  const Tolerance table = tolerance_for(DType::F32);
  return {std::max(table.atol, units * kF32Unit * max_abs(expected)), table.rtol};
}

// f64: both devices compute (and accumulate) in f64, so logits, loss and every gradient agree
// to the f64 table; this checks every index and formula of the CUDA path tightly.
// f32: first-order rounding bounds as in the op tests (tests/core/test_cuda_nn_ops.cpp): the
// largest per-op bound is the down projection's K^2 = 88^2 = 7744 units of its output's
// scale (attention's 4 (D^2 + S D) = 4 (16^2 + 16 * 16) = 2048 and the other GEMMs' 64^2 are
// below it); forward and backward chain about 2 x 28 such ops (13 per decoder layer, the
// embedding, the final norm, lm_head and the loss), so 56 x 7744 units of each tensor's
// largest value.
TEST(CudaTinyLlama, ForwardAndBackwardMatchTheCpuInF64AndF32_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Pass cpu64 = forward_backward(DType::F64, kCpu);
  const Pass gpu64 = forward_backward(DType::F64, kCuda);
  ASSERT_TRUE(std::isfinite(cpu64.loss.item()));
  EXPECT_TRUE(all_close(gpu64.logits, cpu64.logits, kCudaF64Tolerance, "logits f64"));
  EXPECT_TRUE(all_close(gpu64.loss, cpu64.loss, kCudaF64Tolerance, "loss f64"));
  ASSERT_EQ(gpu64.grads.size(), cpu64.grads.size());
  for (size_t i = 0; i < cpu64.grads.size(); ++i) {
    ASSERT_GT(max_abs(cpu64.grads[i].second), 0.0) << cpu64.grads[i].first << " is all zeros";
    EXPECT_TRUE(all_close(gpu64.grads[i].second, cpu64.grads[i].second, kCudaF64Tolerance,
                          cpu64.grads[i].first + " grad f64"));
  }

  const double units = 56 * 7744;
  const Pass cpu = forward_backward(DType::F32, kCpu);
  const Pass gpu = forward_backward(DType::F32, kCuda);
  EXPECT_TRUE(all_close(gpu.logits, cpu.logits, scaled_f32(cpu.logits, units), "logits f32"));
  EXPECT_TRUE(all_close(gpu.loss, cpu.loss, scaled_f32(cpu.loss, units), "loss f32"));
  for (size_t i = 0; i < cpu.grads.size(); ++i) {
    EXPECT_TRUE(all_close(gpu.grads[i].second, cpu.grads[i].second,
                          scaled_f32(cpu.grads[i].second, units),
                          cpu.grads[i].first + " grad f32"));
  }
}

// The attention kernel variants (kernels.attention_*): bit-identical bf16 logits, loss and
// gradients, over 200 positions (four 64-row blocks, two 128-row ones) with head dim 32 (the
// tensor-core kernels' smallest).
TEST(CudaTinyLlama, AttentionKernelVariantsGiveBitIdenticalBf16Passes_CUDA) {
  SKIP_WITHOUT_CUDA();
  ModelConfig config = tiny_llama();
  config.hidden_size = 128;  // 4 heads of 32
  config.head_dim = 32;
  config.max_position_embeddings = 256;
  config.validate();
  const Tensor ids = Tensor::from_vector_i64(
      [] {
        std::vector<int64_t> v(2 * 200);
        for (size_t i = 0; i < v.size(); ++i)
          v[i] = static_cast<int64_t>((i * 37 + 11) % kVocab);
        return v;
      }(),
      {2, 200});
  auto pass = [&](const ops::AttentionKernels& variant) {
    auto model = create_model(config, /*seed=*/7, DType::BF16, kCuda);
    EXPECT_EQ(set_attention_kernels(*model, variant), config.num_hidden_layers);
    const Tensor logits = model->forward(ids.to(kCuda));
    const Tensor loss =
        ops::cross_entropy(logits.reshape({2 * 200, kVocab}), ids.to(kCuda).reshape({2 * 200}));
    loss.backward();
    Pass p{host(logits).to(DType::F64), host(loss).to(DType::F64), {}};
    for (const auto& [name, param] : model->named_parameters())
      p.grads.emplace_back(name, host(param.grad()).to(DType::F64));
    return p;
  };
  const Pass base = pass({});
  ASSERT_GT(max_abs(base.grads.front().second), 0.0);
  struct Variant {
    int tiles;
    bool in_registers, longest_first, stored_scores;
  };
  for (const Variant& v : {Variant{2, false, true, false}, Variant{1, true, true, false},
                           Variant{2, true, true, false}, Variant{1, false, false, false},
                           Variant{1, false, true, true}, Variant{2, false, false, true}}) {
    ops::AttentionKernels variant;
    variant.row_tiles_per_warp = v.tiles;
    variant.dkdv_kv_in_registers = v.in_registers;
    variant.longest_first = v.longest_first;
    variant.dq_from_stored_scores = v.stored_scores;
    const std::string what =
        fmt::format("{} row tiles, K/V in registers {}, longest first {}, dq from stored dS {}",
                    v.tiles, v.in_registers, v.longest_first, v.stored_scores);
    const Pass other = pass(variant);
    EXPECT_TRUE(all_close(other.logits, base.logits, kExact, what + ": logits"));
    EXPECT_TRUE(all_close(other.loss, base.loss, kExact, what + ": loss"));
    for (size_t i = 0; i < base.grads.size(); ++i) {
      EXPECT_TRUE(all_close(other.grads[i].second, base.grads[i].second, kExact,
                            what + ": " + base.grads[i].first));
    }
  }
}

// ---- 10 training steps -------------------------------------------------------------------------

constexpr int kSteps = 10;
constexpr double kMaxGradNorm = 1.0;

AdamWOptions training_options() {
  AdamWOptions o;
  o.lr = 1e-2;
  o.weight_decay = 0.01;
  return o;
}

struct Trajectory {
  std::vector<double> losses;          // per step, before the update
  std::vector<double> max_abs_logits;  // per step
};

// kSteps steps on batches 0..kSteps-1: forward, loss, backward, then `update` (clipping and
// the optimizer step, which also drops the gradients).
Trajectory train(CausalLM& model, Device device, const std::function<void()>& update) {
  Trajectory out;
  for (int s = 0; s < kSteps; ++s) {
    const Batch batch = loader().batch(s, 0);
    const Tensor logits = model.forward(batch.input_ids.to(device));
    const Tensor loss = next_token_loss(logits, batch.labels);
    EXPECT_EQ(loss.dtype(), logits.dtype() == DType::BF16 ? DType::F32 : logits.dtype());
    out.losses.push_back(loss.item());
    out.max_abs_logits.push_back(max_abs(logits));
    loss.backward();
    update();
  }
  return out;
}

// Plain AdamW with global-norm clipping, in the model's dtype.
Trajectory train_plain(DType dtype, Device device) {
  const auto model = tiny_model(dtype, device);
  const NamedTensors params = model->named_parameters();
  AdamW opt(params, training_options());
  return train(*model, device, [&] {
    clip_grad_norm(params, kMaxGradNorm);
    opt.step();
    opt.zero_grad();
  });
}

// The losses of the untrained model on the same batches (no update between steps).
std::vector<double> untrained_losses() {
  const auto model = tiny_model(DType::F32, kCpu);
  NoGradGuard no_grad;
  std::vector<double> losses;
  for (int s = 0; s < kSteps; ++s) {
    const Batch batch = loader().batch(s, 0);
    losses.push_back(next_token_loss(model->forward(batch.input_ids), batch.labels).item());
  }
  return losses;
}

double total_distance(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    d += std::fabs(a[i] - b[i]);
  return d;
}

// The loss must fall well beyond the tolerance, or the comparison would prove nothing.
void expect_learns(const Trajectory& t, double tolerance, const std::string& what) {
  ASSERT_EQ(t.losses.size(), static_cast<size_t>(kSteps));
  for (double l : t.losses)
    ASSERT_TRUE(std::isfinite(l)) << what;
  EXPECT_LT(t.losses.back(), t.losses.front() - 3 * tolerance)
      << what << ": the loss fell from " << t.losses.front() << " to " << t.losses.back();
}

std::string trajectory_text(const Trajectory& t) {
  std::string s;
  for (double l : t.losses)
    s += std::to_string(l) + " ";
  return s;
}

// f32 on both devices. The first loss differs by forward rounding only (the bound above).
// Afterwards the trajectories separate through the updates: Adam's lr * m / (sqrt(v) + eps)
// turns small gradient differences into weight differences of up to lr per step on
// coordinates whose gradient is near zero. The CPU test below measures this drift between
// f32 and f64 on the CPU (1.2e-5 at step 10; it must stay below kCpuF32Drift). The GPU's f32
// GEMMs and reductions accumulate in f32, erring by up to about sqrt(K) ~ 9 roundings where
// the CPU accumulates in f64 and rounds once, so its drift may be ~10x larger: the tolerance
// is 10 * kCpuF32Drift = 1e-3 (2e-4 of the loss), far below the loss's fall of ~0.4.
constexpr double kCpuF32Drift = 1e-4;
constexpr double kF32LossTolerance = 10 * kCpuF32Drift;

TEST(CudaTinyLlama, TenF32TrainingStepsTrackTheCpu_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Trajectory cpu = train_plain(DType::F32, kCpu);
  const Trajectory gpu = train_plain(DType::F32, kCuda);
  expect_learns(cpu, kF32LossTolerance, "CPU f32");
  for (int s = 0; s < kSteps; ++s) {
    EXPECT_NEAR(gpu.losses[s], cpu.losses[s], kF32LossTolerance)
        << "step " << s << "\nCPU: " << trajectory_text(cpu) << "\nGPU: " << trajectory_text(gpu);
  }
}

// bf16 mixed precision on CUDA (bf16 weights and activations, f32 masters, moments and loss)
// against the f32 CPU run from the same f32 weights (loaded into the masters). Every bf16
// tensor is its f32 value rounded once (relative 2^-9). The loss moves by at most 2 max|dlogit|
// (1-Lipschitz in the logits through both logsumexp and the target logit); a logit carries,
// to first order, the relative roundings along its path: the bf16 weights (one per GEMM) and
// the rounded activations, about 16 per decoder layer plus the embedding, final norm and
// lm_head, n = 35 in all. Tolerance at step s: 2 * 35 * 2^-9 * max|logits_s| of the f32 run
// (0.09 at init, where the logits are below 0.65); the masters keep the updates that bf16
// cannot hold, so the trajectory adds no systematic drift beyond this per-step bound.
// That worst case is as wide as the loss's fall over 10 steps, so the test also demands that
// the bf16 run be 4x closer to the f32 run than the untrained model's losses are (random-sign
// roundings give about sqrt(35) / 35 of the worst case, and max|logits| overstates the
// typical logit ~4x, so the expected distance is ~20x below the bound).
TEST(CudaTinyLlama, TenBf16MixedPrecisionStepsTrackTheF32CpuRun_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Trajectory cpu = train_plain(DType::F32, kCpu);

  const auto model = tiny_model(DType::BF16, kCuda);
  MixedPrecisionOptimizer opt(model->named_parameters(), training_options());
  {
    const auto exact = tiny_model(DType::F32, kCpu);
    opt.set_master_weights(exact->named_parameters());
  }
  for (const auto& [name, p] : model->named_parameters())
    ASSERT_EQ(p.dtype(), DType::BF16);
  const Trajectory gpu = train(*model, kCuda, [&] {
    opt.clip_grad_norm(kMaxGradNorm);
    ASSERT_TRUE(opt.step());
    opt.zero_grad();
  });
  const double rounding = 2 * 35 * kBf16Unit;
  for (int s = 0; s < kSteps; ++s) {
    EXPECT_NEAR(gpu.losses[s], cpu.losses[s], rounding * cpu.max_abs_logits[s])
        << "step " << s << "\nCPU f32:  " << trajectory_text(cpu)
        << "\nGPU bf16: " << trajectory_text(gpu);
  }
  for (const auto& [name, m] : opt.master_params())
    ASSERT_EQ(m.dtype(), DType::F32) << name;
  const double untrained = total_distance(untrained_losses(), cpu.losses);
  ASSERT_GT(untrained, 1.0) << "the f32 run barely trained: " << trajectory_text(cpu);
  EXPECT_LT(total_distance(gpu.losses, cpu.losses), untrained / 4)
      << "CPU f32:  " << trajectory_text(cpu) << "\nGPU bf16: " << trajectory_text(gpu);
}

// On the CPU (it runs everywhere): f32 training drifts from the f64 trajectory by f32
// rounding alone, the kind of drift that separates the GPU's f32 run from the CPU's
// (measured 1.2e-5); it must stay below kCpuF32Drift while the loss falls far beyond it, and
// the trained losses must differ clearly from the untrained model's (the bf16 test's guard).
TEST(TinyLlamaTraining, F32StepsOnTheCpuDriftFromTheF64RunByLessThanKCpuF32Drift) {
  const Trajectory f32 = train_plain(DType::F32, kCpu);
  const Trajectory f64 = train_plain(DType::F64, kCpu);
  expect_learns(f64, kCpuF32Drift, "CPU f64");
  for (int s = 0; s < kSteps; ++s) {
    EXPECT_NEAR(f32.losses[s], f64.losses[s], kCpuF32Drift)
        << "step " << s << "\nf32: " << trajectory_text(f32) << "\nf64: " << trajectory_text(f64);
  }
  EXPECT_GT(total_distance(untrained_losses(), f32.losses), 1.0);
}

// ---- the Trainer on CUDA (engine/trainer.h with TrainerOptions::device) ------------------------

// The mean loss and the largest |logit| of `model` (not updated) over step s's micro-batches.
struct BatchProbe {
  double loss = 0.0;
  double max_abs_logit = 0.0;
};
BatchProbe probe(Trainer& trainer, int64_t s) {
  NoGradGuard no_grad;
  BatchProbe out;
  const int64_t micro = trainer.config().batch.gradient_accumulation_steps;
  for (int64_t m = 0; m < micro; ++m) {
    const Batch b = trainer.data().batch(s, m);
    const Tensor logits = trainer.model().forward(b.input_ids);  // [B, S, V] on the CPU
    const int64_t v = logits.size(-1);
    out.loss += ops::cross_entropy(logits.reshape({-1, v}), b.labels.reshape({-1})).item() /
                static_cast<double>(micro);
    out.max_abs_logit = std::max(out.max_abs_logit, max_abs(logits));
  }
  return out;
}

// The CPU trainer's f32 run stays within 1e-5 relative of the f64 reference (tests/engine/
// test_trainer.cpp; measured 8e-8 for losses, 3e-7 for gradient norms). On the GPU the f32
// GEMMs (cuBLASLt with CUBLAS_COMPUTE_32F: no TF32) and reductions accumulate in f32 and in
// another order, erring by up to about sqrt(K) ~ 7 roundings (K <= 48 here) where the CPU
// accumulates in f64 and rounds once: 10x the CPU's bound, 1e-4 relative, for losses and
// pre-clipping gradient norms. The loss falls by over 20% in these steps, 2000x that.
constexpr double kCudaTrainerRtol = 1e-4;

TEST(CudaTrainer, F32FollowsTheCpuTrainersTenStepTrajectory_CUDA) {
  SKIP_WITHOUT_CUDA();
  TempDir dir("cuda_f32");
  Trainer cpu(trajectory_config(dir.sub("cpu")), quiet_on(kCpu));
  Trainer gpu(trajectory_config(dir.sub("gpu")), quiet_on(kCuda));
  EXPECT_EQ(gpu.device(), kCuda);
  EXPECT_EQ(gpu.mixed_precision(), nullptr);
  // Built on the host from the same checkpoint, then moved: the very same f32 weights.
  const NamedTensors c0 = cpu.model().named_parameters(), g0 = gpu.model().named_parameters();
  ASSERT_EQ(c0.size(), g0.size());
  for (size_t i = 0; i < c0.size(); ++i) {
    ASSERT_TRUE(g0[i].second.device().is_cuda()) << g0[i].first;
    ASSERT_EQ(g0[i].second.dtype(), DType::F32) << g0[i].first;
    ASSERT_TRUE(all_close(host(g0[i].second), c0[i].second, kExact, g0[i].first + " at init"));
  }
  const std::vector<StepRecord> a = train_to_the_end(cpu), b = train_to_the_end(gpu);
  ASSERT_EQ(a.size(), 10u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i].lr, a[i].lr) << "step " << a[i].step;
    EXPECT_EQ(b[i].tokens, a[i].tokens) << "step " << a[i].step;
    EXPECT_NEAR(b[i].loss, a[i].loss, kCudaTrainerRtol * a[i].loss) << "step " << a[i].step;
    EXPECT_NEAR(b[i].grad_norm, a[i].grad_norm, kCudaTrainerRtol * a[i].grad_norm)
        << "step " << a[i].step;
  }
  EXPECT_LT(a.back().loss, 0.8 * a.front().loss) << "the CPU run barely trained";
  EXPECT_GT(gpu.peak_memory_gib(), 0.0);
}

// bf16.enabled: bf16 weights and activations behind f32 masters (set from the same f32
// weights as the CPU's), against the CPU trainer's f32 run of the same config (the CPU
// computes in f32). As in TenBf16MixedPrecisionStepsTrackTheF32CpuRun_CUDA above: the loss
// moves by at most 2 max|dlogit|, a logit carries about n = 35 bf16 roundings (relative
// 2^-9 each: the bf16 weights of each GEMM and the rounded activations, ~16 per decoder
// layer, plus the embedding, final norm and lm_head), so step s may differ by
// 2 * 35 * 2^-9 * max|logits| of the f32 model on that step's micro-batches; the masters keep
// what bf16 cannot hold, so no drift adds up. As that worst case is wide, the bf16 run must
// also be 4x closer to the f32 run than the untrained model's losses are, and its loss must
// fall by 20% as the f32 run's does (31% in the golden trajectory).
TEST(CudaTrainer, Bf16TrainsAndTracksTheF32CpuLosses_CUDA) {
  SKIP_WITHOUT_CUDA();
  TempDir dir("cuda_bf16");
  Trainer cpu(trajectory_config(dir.sub("cpu"), {"bf16.enabled=true"}), quiet_on(kCpu));
  Trainer untrained(trajectory_config(dir.sub("untrained")), quiet_on(kCpu));
  Trainer gpu(trajectory_config(dir.sub("gpu"), {"bf16.enabled=true"}), quiet_on(kCuda));
  EXPECT_EQ(cpu.mixed_precision(), nullptr);  // bf16.enabled is noted and ignored on the CPU
  ASSERT_NE(gpu.mixed_precision(), nullptr);
  const NamedTensors c0 = cpu.model().named_parameters();
  const NamedTensors& masters = gpu.mixed_precision()->master_params();
  ASSERT_EQ(masters.size(), c0.size());
  for (size_t i = 0; i < c0.size(); ++i) {
    ASSERT_EQ(gpu.model().named_parameters()[i].second.dtype(), DType::BF16) << c0[i].first;
    ASSERT_EQ(masters[i].second.dtype(), DType::F32) << c0[i].first;
    ASSERT_TRUE(all_close(host(masters[i].second), c0[i].second, kExact, "master " + c0[i].first));
  }
  std::vector<double> cpu_losses, gpu_losses, untrained_losses;
  for (int64_t s = 0; s < cpu.total_steps(); ++s) {
    const BatchProbe before = probe(cpu, s);
    untrained_losses.push_back(probe(untrained, s).loss);
    const StepRecord a = cpu.step(), b = gpu.step();
    EXPECT_FALSE(b.skipped);
    const double tolerance = 2 * 35 * kBf16Unit * before.max_abs_logit;
    EXPECT_NEAR(b.loss, a.loss, tolerance) << "step " << a.step;
    cpu_losses.push_back(a.loss);
    gpu_losses.push_back(b.loss);
  }
  for (double l : gpu_losses)
    ASSERT_TRUE(std::isfinite(l));
  EXPECT_LT(gpu_losses.back(), 0.8 * gpu_losses.front());
  const double untrained_distance = total_distance(untrained_losses, cpu_losses);
  ASSERT_GT(untrained_distance, 1.0);
  EXPECT_LT(total_distance(gpu_losses, cpu_losses), untrained_distance / 4);
}

// Save at step 5 on the GPU, resume on the GPU, and the last five steps repeat the
// uninterrupted GPU run bit for bit: the checkpoint holds the exact f32 weights (for bf16
// the f32 masters) and moments, and every kernel of a step is deterministic (no atomics:
// kernels/cuda/reduce.h, attention.h, index.h; cuBLASLt is called with the same shapes).
TEST(CudaTrainer, ACheckpointWrittenOnTheGpuResumesTheSameTrajectory_CUDA) {
  SKIP_WITHOUT_CUDA();
  // fp16 starts its loss scale at 2^18 with hysteresis 1, high for f16 gradients (max 65504),
  // so early steps may overflow, skip and halve it: the resumed run must continue from the
  // saved scale, not restart at 2^18.
  for (const std::string what : {"f32", "bf16", "fp16"}) {
    TempDir dir("cuda_resume_" + what);
    std::vector<std::string> precision = {std::string("bf16.enabled=") +
                                          (what == "bf16" ? "true" : "false")};
    if (what == "fp16") {
      precision.insert(precision.end(),
                       {"fp16.enabled=true", "fp16.initial_scale_power=18", "fp16.hysteresis=1"});
    }
    Trainer straight(trajectory_config(dir.sub("straight"), precision), quiet_on(kCuda));
    const std::vector<StepRecord> ten = train_to_the_end(straight);
    std::vector<std::string> first_half = precision;
    first_half.insert(first_half.end(), {"train.steps=5", "train.checkpoint_interval=5"});
    Trainer first(trajectory_config(dir.sub("split"), first_half), quiet_on(kCuda));
    first.run();
    ASSERT_EQ(first.current_step(), 5) << what;
    TrainerOptions resume = quiet_on(kCuda);
    resume.resume = true;
    Trainer second(trajectory_config(dir.sub("split"), precision), resume);
    ASSERT_TRUE(second.resumed()) << what;
    const std::vector<StepRecord> last = train_to_the_end(second);
    ASSERT_EQ(last.size(), 5u) << what;
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(last[i].step, ten[5 + i].step) << what;
      EXPECT_EQ(last[i].loss, ten[5 + i].loss) << what << " step " << ten[5 + i].step;
      EXPECT_EQ(last[i].grad_norm, ten[5 + i].grad_norm) << what << " step " << ten[5 + i].step;
    }
    const NamedTensors wa = straight.model().named_parameters();
    const NamedTensors wb = second.model().named_parameters();
    ASSERT_EQ(wa.size(), wb.size());
    for (size_t i = 0; i < wa.size(); ++i) {
      EXPECT_TRUE(wb[i].second.device().is_cuda()) << wa[i].first;
      EXPECT_TRUE(all_close(host(wb[i].second), host(wa[i].second), kExact,
                            wa[i].first + " after resuming, " + what));
    }
    if (what == "fp16") {
      ASSERT_NE(second.mixed_precision(), nullptr);
      EXPECT_EQ(second.mixed_precision()->loss_scaler()->state().cur_scale,
                straight.mixed_precision()->loss_scaler()->state().cur_scale);
      EXPECT_EQ(second.mixed_precision()->loss_scaler()->state().cur_iter,
                straight.mixed_precision()->loss_scaler()->state().cur_iter);
    }
    // Not vacuous: the weights moved during the last five steps.
    EXPECT_NE(wa[0].second.to_vector(), first.model().named_parameters()[0].second.to_vector())
        << what;
  }
}

// keep_module_on_host through the AutoTP pass onto the GPU, on TP rank 1 of 2 in one process
// (tests/support/mirrored_group.h), measured with the caching allocator's peak: true shards
// the host model and moves only rank 1's shards plus the replicated parameters, so the peak
// (182,784 B with the allocator's rounding) stays below the full model's 286,464 B; false
// (DeepSpeed's default) moves the full model first, so the peak is at least its size. Both
// leave exactly the host pass's shards on the GPU.
TEST(CudaAutoTP, KeepModuleOnHostShardsOnTheHostAndTheDefaultOnTheDevice_CUDA) {
  SKIP_WITHOUT_CUDA();
  CudaCachingAllocator& allocator = CudaCachingAllocator::for_device(0);
  const auto group = std::make_shared<testing::MirroredGroup>(/*rank=*/1, /*size=*/2);
  AutoTPConfig config;
  config.tp_size = 2;
  ApplyOptions on_host;
  on_host.print_warnings = false;
  const auto reference = create_model(tiny_llama(), /*seed=*/7);
  apply_autotp(*reference, config, model_dims(reference->config()), group, on_host);
  for (const bool keep : {true, false}) {
    const std::string what = std::string("keep_module_on_host ") + (keep ? "true" : "false");
    const auto model = create_model(tiny_llama(), /*seed=*/7);  // f32 on the host
    const int64_t full_bytes = model->num_parameters() * 4;
    config.keep_module_on_host = keep;
    ApplyOptions to_gpu = on_host;
    to_gpu.device = kCuda;
    allocator.reset_peak();
    const size_t before = allocator.stats().current_bytes;
    apply_autotp(*model, config, model_dims(model->config()), group, to_gpu);
    const auto peak = static_cast<int64_t>(allocator.stats().peak_bytes - before);
    const NamedTensors got = model->named_parameters(), want = reference->named_parameters();
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(got[i].second.device().is_cuda()) << got[i].first << ", " << what;
      EXPECT_TRUE(
          all_close(host(got[i].second), want[i].second, kExact, got[i].first + ", " + what));
    }
    const int64_t sharded_bytes = model->num_parameters() * 4;
    ASSERT_LT(sharded_bytes, full_bytes);
    if (keep) {
      EXPECT_GE(peak, sharded_bytes) << what;
      EXPECT_LT(peak, full_bytes) << what << ": the device held more than the shards";
    } else {
      EXPECT_GE(peak, full_bytes) << what << ": the full model never reached the device";
    }
  }
}

}  // namespace
}  // namespace autotp
