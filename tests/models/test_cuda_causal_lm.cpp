// A CUDA model fed from the host: causal_lm_loss with host labels and a Llama forward with host
// ids (uploaded without a host wait) give what device labels and ids give, values and
// gradients. Each test skips, printing why, where no CUDA device is visible.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/cuda_allocator.h"
#include "core/ops.h"
#include "core/random.h"
#include "models/llama.h"
#include "models/registry.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

#define SKIP_WITHOUT_CUDA()                                              \
  if (!cuda_available())                                                 \
  GTEST_SKIP() << "no CUDA device: host-fed CUDA models are checked on " \
                  "GPUs"

const Device kCuda = Device::cuda(0);
constexpr int64_t kVocab = 101, kBatch = 3, kSeq = 17;

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

// Token ids [kBatch, kSeq] in [0, kVocab) from a seed, two of them -100 when `masked`.
Tensor tokens(uint64_t seed, bool masked) {
  Tensor u = Tensor::empty({kBatch * kSeq}, DType::F64);
  fill_uniform(u, seed, 0, 0.0, 1.0);
  std::vector<int64_t> ids;
  for (double x : u.to_vector())
    ids.push_back(static_cast<int64_t>(x * kVocab));
  if (masked) ids[5] = ids[kSeq + 2] = -100;
  return Tensor::from_vector_i64(ids, {kBatch, kSeq});
}

TEST(CudaCausalLmLoss, HostLabelsGiveTheLossAndGradientOfDeviceLabels_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Tensor labels = tokens(5101, /*masked=*/true);
  for (DType dtype : {DType::F32, DType::BF16}) {
    Tensor logits_for_host = Tensor::empty({kBatch, kSeq, kVocab}, DType::F32);
    fill_uniform(logits_for_host, 5102, 0, -3.0, 3.0);
    logits_for_host = logits_for_host.to(dtype).to(kCuda).detach();
    Tensor logits_for_device = logits_for_host.clone().detach();
    logits_for_host.set_requires_grad(true);
    logits_for_device.set_requires_grad(true);
    const Tensor from_host = causal_lm_loss(logits_for_host, labels);
    const Tensor from_device = causal_lm_loss(logits_for_device, labels.to(kCuda));
    from_host.backward();
    from_device.backward();
    const std::string what(dtype_name(dtype));
    EXPECT_EQ(from_host.item(), from_device.item()) << what;
    EXPECT_EQ(logits_for_host.grad().to_vector(), logits_for_device.grad().to_vector()) << what;
  }
  // Labels on a device the logits are not on are refused, naming both.
  EXPECT_ERROR_CONTAINS(causal_lm_loss(Tensor::zeros({kBatch, kSeq, kVocab}), labels.to(kCuda)),
                        "labels are on cuda:0 but logits on cpu");
}

TEST(CudaCausalLm, LlamaFedHostIdsAndLabelsTrainsLikeDeviceOnes_CUDA) {
  SKIP_WITHOUT_CUDA();
  const Tensor ids = tokens(5201, /*masked=*/false), labels = tokens(5202, /*masked=*/true);
  const auto host_fed = create_model(tiny_llama(), /*seed=*/7, DType::F32, kCuda);
  const auto device_fed = create_model(tiny_llama(), /*seed=*/7, DType::F32, kCuda);
  const Tensor host_logits = host_fed->forward(ids);
  const Tensor device_logits = device_fed->forward(ids.to(kCuda));
  EXPECT_EQ(host_logits.device(), kCuda);
  EXPECT_TRUE(testing::all_close(host_logits.to(Device::cpu()), device_logits.to(Device::cpu()),
                                 testing::tolerance_for(DType::F32), "logits"));
  const Tensor host_loss = causal_lm_loss(host_logits, labels);
  const Tensor device_loss = causal_lm_loss(device_logits, labels.to(kCuda));
  host_loss.backward();
  device_loss.backward();
  EXPECT_NEAR(host_loss.item(), device_loss.item(), 1e-5);
  const auto host_params = host_fed->named_parameters();
  const auto device_params = device_fed->named_parameters();
  ASSERT_EQ(host_params.size(), device_params.size());
  for (size_t i = 0; i < host_params.size(); ++i) {
    const std::string& name = host_params[i].first;
    ASSERT_TRUE(host_params[i].second.grad().defined()) << name;
    EXPECT_TRUE(testing::all_close(host_params[i].second.grad().to(Device::cpu()),
                                   device_params[i].second.grad().to(Device::cpu()),
                                   testing::tolerance_for(DType::F32), name));
  }
}

TEST(CudaCausalLm, TheTrainingBackwardWritesTheLogitsGradientOverTheLogits_CUDA) {
  SKIP_WITHOUT_CUDA();
  // A Llama step's backward (lm_head, the loss's reshape, causal_lm_loss, backward()) whose
  // caller keeps the logits needs a second logits-sized buffer for their gradient; the usual
  // step, where nothing else holds them, writes the gradient over them. From the moment that
  // buffer is taken to the end, the first holds exactly one more logits buffer than the second,
  // so its peak is exactly one (allocator-rounded) logits buffer higher. A large vocabulary
  // makes that buffer the largest of the step.
  ModelConfig config = tiny_llama();
  config.vocab_size = 32768;
  const Tensor ids = tokens(5301, /*masked=*/false), labels = tokens(5302, /*masked=*/true);
  CudaCachingAllocator& allocator = CudaCachingAllocator::for_device(0);
  const auto backward_peak = [&](bool caller_keeps_logits) {
    const auto model = create_model(config, /*seed=*/7, DType::F32, kCuda);
    Tensor logits = model->forward(ids);
    const Tensor loss = causal_lm_loss(logits, labels);
    if (!caller_keeps_logits) logits = Tensor();
    allocator.reset_peak();
    loss.backward();
    return allocator.stats().peak_bytes;
  };
  backward_peak(false);  // once first: whatever the backend allocates once is then in place
  const size_t usual = backward_peak(false);
  const size_t kept = backward_peak(true);
  const size_t logits_bytes =
      CudaCachingAllocator::round_size(kBatch * kSeq * config.vocab_size * sizeof(float));
  EXPECT_EQ(kept - usual, logits_bytes) << "peaks " << kept << " and " << usual << " bytes";
}

}  // namespace
}  // namespace autotp
