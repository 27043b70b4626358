// The AutoTP pass with a target device (ApplyOptions::device) and
// tensor_parallel.keep_module_on_host, on the CPU: the pass on one process plays TP rank 1 of 2
// (tests/support/mirrored_group.h), and the option travels from the YAML to the pass.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "autotp/apply_autotp.h"
#include "autotp/from_engine_config.h"
#include "engine/config.h"
#include "models/registry.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/support/mirrored_group.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

ModelConfig tiny_llama() {
  ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 101;
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

AutoTPConfig tp2(bool keep_module_on_host) {
  AutoTPConfig c;
  c.tp_size = 2;
  c.keep_module_on_host = keep_module_on_host;
  return c;
}

// TP rank 1 of 2 of the tiny Llama from seed 3, sharded with `options`.
std::shared_ptr<CausalLM> sharded(const AutoTPConfig& config, const ApplyOptions& options,
                                  int64_t* replaced = nullptr) {
  auto model = create_model(tiny_llama(), /*seed=*/3);
  const auto group = std::make_shared<testing::MirroredGroup>(/*rank=*/1, /*size=*/2);
  const AutoTPResult r = apply_autotp(*model, config, model_dims(model->config()), group, options);
  if (replaced != nullptr) *replaced = r.replaced_layers;
  return model;
}

ApplyOptions quiet_to(std::optional<Device> device) {
  ApplyOptions o;
  o.print_warnings = false;
  o.device = device;
  return o;
}

// The reference is the pass without a target device (the behaviour before devices existed,
// checked against the unsharded model in tests/autotp/mpi). Both keep_module_on_host modes,
// aimed at the CPU the model already lives on, must produce exactly its shards.
TEST(ApplyAutoTPDevice, TheCpuAsTargetDeviceGivesTheSameShardsWhereverTheyAreTaken) {
  int64_t replaced = 0;
  const auto reference = sharded(tp2(false), quiet_to(std::nullopt), &replaced);
  ASSERT_EQ(replaced, 14);  // q, k, v, o, gate, up, down in each of the 2 layers
  const NamedTensors expected = reference->named_parameters();
  // The shards are rank 1's halves, not the full weights.
  int checked = 0;
  for (const auto& [name, p] : expected) {
    if (name == "model.layers.0.self_attn.q_proj.weight") {
      EXPECT_EQ(p.shape(), (Shape{32, 64}));
      ++checked;
    } else if (name == "model.layers.0.mlp.down_proj.weight") {
      EXPECT_EQ(p.shape(), (Shape{64, 44}));
      ++checked;
    }
  }
  EXPECT_EQ(checked, 2);
  for (bool keep : {false, true}) {
    const auto model = sharded(tp2(keep), quiet_to(Device::cpu()));
    const NamedTensors got = model->named_parameters();
    ASSERT_EQ(got.size(), expected.size()) << "keep_module_on_host " << keep;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].first, expected[i].first);
      EXPECT_TRUE(got[i].second.device().is_cpu()) << got[i].first;
      EXPECT_TRUE(got[i].second.requires_grad()) << got[i].first;
      EXPECT_TRUE(
          testing::all_close(got[i].second, expected[i].second, {0.0, 0.0},
                             got[i].first + ", keep_module_on_host " + std::to_string(keep)));
    }
  }
}

// Moving to the device the model already lives on copies nothing: the replicated parameters
// keep their storage (Module::to would clone them), with TP and without.
TEST(ApplyAutoTPDevice, AModelAlreadyOnTheTargetDeviceIsNotCopied) {
  for (int64_t tp : {1, 2}) {
    auto model = create_model(tiny_llama(), /*seed=*/3);
    const void* before = model->named_parameters().front().second.raw_data();  // embed_tokens
    AutoTPConfig config = tp2(false);
    config.tp_size = tp;
    const auto group = std::make_shared<testing::MirroredGroup>(0, static_cast<int>(tp));
    apply_autotp(*model, config, model_dims(model->config()), group, quiet_to(Device::cpu()));
    EXPECT_EQ(model->named_parameters().front().first, "model.embed_tokens.weight");
    EXPECT_EQ(model->named_parameters().front().second.raw_data(), before) << "tp " << tp;
  }
}

// The YAML key reaches the pass's config (default false, DeepSpeed's), also through --set.
TEST(ApplyAutoTPDevice, KeepModuleOnHostTravelsFromTheYamlToThePass) {
  const std::string base =
      "train_micro_batch_size_per_gpu: 2\n"
      "data: {seq_len: 16, vocab_size: 50}\n"
      "train: {steps: 3}\n";
  EXPECT_FALSE(autotp_config_from(parse_config(base).tensor_parallel).keep_module_on_host);
  const Config on = parse_config(base + "tensor_parallel: {keep_module_on_host: true}\n");
  EXPECT_TRUE(autotp_config_from(on.tensor_parallel).keep_module_on_host);
  ConfigLoadOptions set;
  set.overrides = {"tensor_parallel.keep_module_on_host=true"};
  EXPECT_TRUE(autotp_config_from(parse_config(base, set).tensor_parallel).keep_module_on_host);
  // The resolved config written to OUT/config.yaml keeps it.
  EXPECT_TRUE(
      autotp_config_from(parse_config(config_to_yaml(on)).tensor_parallel).keep_module_on_host);
}

}  // namespace
}  // namespace autotp
