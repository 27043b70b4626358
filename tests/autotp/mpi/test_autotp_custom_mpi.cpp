// A custom C++ model with names of its own (no preset, no HF plan) sharded under mpirun by YAML
// layer specs and by the automatic parser: outputs and gathered gradients equal TP=1's.
#include <gtest/gtest.h>

#include "autotp/from_engine_config.h"
#include "core/random.h"
#include "layers/embedding.h"
#include "layers/init.h"
#include "layers/layer_norm.h"
#include "layers/linear.h"
#include "layers/rms_norm.h"
#include "tests/autotp/mpi/autotp_mpi_helpers.h"

namespace autotp {
namespace {

using testing::kTpTolerance;
using testing::test_world;
constexpr DType kF64 = DType::F64;
constexpr int64_t kHidden = 6, kWide = 12, kVocab = 11;

// contract(silu(expand(x)) * gate_lin(x))
class TinyFfn : public UnaryModule {
 public:
  TinyFfn() {
    register_module("expand", std::make_shared<Linear>(kHidden, kWide, true, kF64));
    register_module("gate_lin", std::make_shared<Linear>(kHidden, kWide, false, kF64));
    register_module("contract", std::make_shared<Linear>(kWide, kHidden, true, kF64));
  }
  std::string type_name() const override { return "TinyFfn"; }
  Tensor forward(const Tensor& x) override {  // x [..., hidden]
    const Tensor a = ops::silu(child_as<UnaryModule>("expand").forward(x));
    return child_as<UnaryModule>("contract")
        .forward(ops::mul(a, child_as<UnaryModule>("gate_lin").forward(x)));
  }
};

// fc_out(relu(fc_in(x)))
class TinyMixer : public UnaryModule {
 public:
  TinyMixer() {
    register_module("fc_in", std::make_shared<Linear>(kHidden, kWide, false, kF64));
    register_module("fc_out", std::make_shared<Linear>(kWide, kHidden, false, kF64));
  }
  std::string type_name() const override { return "TinyMixer"; }
  Tensor forward(const Tensor& x) override {
    return child_as<UnaryModule>("fc_out").forward(
        ops::relu(child_as<UnaryModule>("fc_in").forward(x)));
  }
};

// h = x + ffn(ln_a(x)); h + mixer(ln_b(h))
class TinyBlock : public UnaryModule {
 public:
  TinyBlock() {
    register_module("ln_a", std::make_shared<RMSNorm>(kHidden, 1e-6, kF64));
    register_module("ffn", std::make_shared<TinyFfn>());
    register_module("ln_b", std::make_shared<LayerNorm>(kHidden, 1e-5, true, kF64));
    register_module("mixer", std::make_shared<TinyMixer>());
  }
  std::string type_name() const override { return "TinyBlock"; }
  Tensor forward(const Tensor& x) override {
    auto sub = [&](const char* name) -> UnaryModule& { return child_as<UnaryModule>(name); };
    const Tensor h = ops::add(x, sub("ffn").forward(sub("ln_a").forward(x)));
    return ops::add(h, sub("mixer").forward(sub("ln_b").forward(h)));
  }
};

// tok -> blocks -> readout; every parameter drawn from N(0, 0.4) with one seed.
class TinyNet : public Module {
 public:
  TinyNet() {
    register_module("tok", std::make_shared<Embedding>(kVocab, kHidden, kF64));
    auto blocks = register_module("blocks", std::make_shared<ModuleList>());
    for (int i = 0; i < 2; ++i)
      blocks->push_back(std::make_shared<TinyBlock>());
    register_module("readout", std::make_shared<Linear>(kHidden, kVocab, false, kF64));
    Generator gen(99);
    for (const auto& [name, p] : named_parameters())
      init::normal_(p, 0.4, gen);
  }
  std::string type_name() const override { return "TinyNet"; }
  Tensor forward(const Tensor& ids) {  // ids [B, S] -> logits [B, S, vocab]
    Tensor h = child_as<UnaryModule>("tok").forward(ids);
    const ModuleList& blocks = child_as<ModuleList>("blocks");
    for (int64_t i = 0; i < blocks.size(); ++i)
      h = blocks.at<UnaryModule>(i).forward(h);
    return child_as<UnaryModule>("readout").forward(h);
  }
};

// Sharded and reference nets after one backward on the same batch; checks outputs.
void expect_equivalent(TinyNet& net, TinyNet& ref) {
  const Tensor ids = testing::token_batch(kVocab, 3, 2, 4);
  const Tensor upstream = testing::token_batch(7, 5, 2 * 4 * kVocab, 1).to(DType::F64);
  const Tensor out_ref = ref.forward(ids), out = net.forward(ids);
  EXPECT_ALL_CLOSE(out, out_ref, kTpTolerance);
  ops::sum(ops::mul(out_ref, upstream.reshape(out_ref.shape()))).backward();
  ops::sum(ops::mul(out, upstream.reshape(out.shape()))).backward();
  testing::expect_same_parameters(net, ref, /*grads=*/true);
}

void expect_custom_layout(TinyNet& net) {
  for (int i = 0; i < 2; ++i) {
    const std::string b = "blocks." + std::to_string(i);
    EXPECT_EQ(net.get_submodule(b + ".ffn.expand")->type_name(), "ColumnParallelLinear");
    EXPECT_EQ(net.get_submodule(b + ".ffn.gate_lin")->type_name(), "ColumnParallelLinear");
    EXPECT_EQ(net.get_submodule(b + ".ffn.contract")->type_name(), "RowParallelLinear");
    EXPECT_EQ(net.get_submodule(b + ".mixer.fc_in")->type_name(), "ColumnParallelLinear");
    EXPECT_EQ(net.get_submodule(b + ".mixer.fc_out")->type_name(), "RowParallelLinear");
  }
  EXPECT_EQ(net.get_submodule("readout")->type_name(), "Linear");
}

const char* kSpecs = R"(train_micro_batch_size_per_gpu: 1
data: {type: synthetic, seq_len: 4, vocab_size: 11}
train: {steps: 1}
tensor_parallel:
  autotp_size: 2
  partition_config:
    strict_mode: true
    layer_specs:
      - patterns: [".*\\.ffn\\.(expand|gate_lin)\\.weight$", ".*\\.mixer\\.fc_in\\.weight$"]
        partition_type: column
      - patterns: [".*\\.ffn\\.contract\\.weight$", ".*\\.mixer\\.fc_out\\.weight$"]
        partition_type: row
      - patterns: ["readout\\.weight$"]
        partition_type: skip
)";

TEST(AutoTPCustomModel, IsShardedByYamlLayerSpecsLikeTheUnshardedModel) {
  auto tp = test_world();
  const Config cfg = parse_config(kSpecs, {}, "custom.yaml");
  TinyNet net, ref;
  const AutoTPResult r =
      testing::shard(net, ModelDims{"tinynet"}, tp, autotp_config_from(cfg.tensor_parallel));
  EXPECT_EQ(r.plan.selection.description, "partition_config.layer_specs (3)");
  EXPECT_EQ(r.replaced_layers, 10);
  EXPECT_TRUE(r.plan.unmatched.empty());
  expect_custom_layout(net);
  expect_equivalent(net, ref);
}

TEST(AutoTPCustomModel, IsShardedByTheAutomaticParserLikeTheUnshardedModel) {
  auto tp = test_world();
  TinyNet net, ref;
  const AutoTPResult r = testing::shard(net, ModelDims{}, tp);
  EXPECT_EQ(r.plan.selection.source, PlanSource::Parser);
  EXPECT_EQ(r.replaced_layers, 10);
  expect_custom_layout(net);
  expect_equivalent(net, ref);
}

TEST(AutoTPCustomModel, StrictModeRejectsALayerNoSpecNamesBeforeAnythingIsReplaced) {
  auto tp = test_world();
  std::string text = kSpecs;
  text = text.substr(0, text.find("      - patterns: [\"readout"));
  const Config cfg = parse_config(text, {}, "custom.yaml");
  TinyNet net;
  EXPECT_ERROR_CONTAINING(
      testing::shard(net, ModelDims{"tinynet"}, tp, autotp_config_from(cfg.tensor_parallel)),
      {"readout: strict_mode: no layer spec matches 'readout.weight' (Linear [11, 6])"});
  EXPECT_EQ(net.get_submodule("blocks.0.ffn.expand")->type_name(), "Linear");
}

}  // namespace
}  // namespace autotp
