// Module registry: HF dotted names, name rejection, state dicts, replace-by-path, modes,
// gradients and printing, on a small HF-shaped tree of test modules.
#include <gtest/gtest.h>

#include <functional>
#include <initializer_list>
#include <string>

#include "core/module.h"
#include "core/ops.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

// y = x * weight (weight [n]).
class Scale : public UnaryModule {
 public:
  explicit Scale(int64_t n, double value) {
    register_parameter("weight", Tensor::full({n}, value));
  }
  std::string type_name() const override { return "Scale"; }
  std::string extra_repr() const override { return fmt::format("n={}", weight().size(0)); }
  Tensor weight() const { return parameter("weight"); }
  Tensor forward(const Tensor& x) override { return x * weight(); }
};

// y = x + bias (bias [n]).
class Shift : public UnaryModule {
 public:
  explicit Shift(int64_t n, double value) { register_parameter("bias", Tensor::full({n}, value)); }
  std::string type_name() const override { return "Shift"; }
  Tensor forward(const Tensor& x) override { return x + parameter("bias"); }
};

// down_proj(up_proj(x)), children reached by name on every call.
class Mlp : public UnaryModule {
 public:
  Mlp(int64_t n, double up, double down) {
    register_module("up_proj", std::make_shared<Scale>(n, up));
    register_module("down_proj", std::make_shared<Scale>(n, down));
  }
  std::string type_name() const override { return "Mlp"; }
  Tensor forward(const Tensor& x) override {
    return child_as<UnaryModule>("down_proj").forward(child_as<UnaryModule>("up_proj").forward(x));
  }
};

// mlp(input_layernorm(x)).
class Block : public UnaryModule {
 public:
  Block(int64_t n, double norm, double up, double down) {
    register_module("input_layernorm", std::make_shared<Scale>(n, norm));
    register_module("mlp", std::make_shared<Mlp>(n, up, down));
  }
  std::string type_name() const override { return "Block"; }
  Tensor forward(const Tensor& x) override {
    return child_as<UnaryModule>("mlp").forward(
        child_as<UnaryModule>("input_layernorm").forward(x));
  }
};

// embed_tokens, then each of `layers` in turn; holds a buffer.
class Model : public UnaryModule {
 public:
  Model(int64_t n, int64_t num_layers) {
    register_buffer("position_ids", Tensor::arange(n));
    register_module("embed_tokens", std::make_shared<Scale>(n, 1.0));
    auto layers = register_module("layers", std::make_shared<ModuleList>());
    for (int64_t i = 0; i < num_layers; ++i) {
      layers->push_back(std::make_shared<Block>(n, 1.0, 2.0 + static_cast<double>(i), 1.0));
    }
  }
  std::string type_name() const override { return "Model"; }
  ModuleList& layers() const { return child_as<ModuleList>("layers"); }
  Tensor forward(const Tensor& x) override {
    Tensor h = child_as<UnaryModule>("embed_tokens").forward(x);
    for (int64_t i = 0; i < layers().size(); ++i)
      h = layers().at<UnaryModule>(i).forward(h);
    return h;
  }
};

// HF CausalLM shape: "model" and "lm_head".
class CausalLm : public UnaryModule {
 public:
  CausalLm(int64_t n, int64_t num_layers) {
    register_module("model", std::make_shared<Model>(n, num_layers));
    register_module("lm_head", std::make_shared<Scale>(n, 1.0));
  }
  std::string type_name() const override { return "CausalLm"; }
  Tensor forward(const Tensor& x) override {
    return child_as<UnaryModule>("lm_head").forward(child_as<UnaryModule>("model").forward(x));
  }
};

std::vector<std::string> names_of(const auto& named) {
  std::vector<std::string> out;
  for (const auto& [name, value] : named)
    out.push_back(name);
  return out;
}

// Runs `fn`, expecting an autotp::Error whose message contains every one of `parts`.
void expect_error_mentioning(const std::function<void()>& fn,
                             std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an autotp::Error";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos)
          << "message lacks '" << part << "': " << message;
    }
  }
}

TEST(ModuleNames, NamedParametersUseHfDottedNamesInRegistrationOrder) {
  CausalLm lm(3, 2);
  const std::vector<std::string> expected = {
      "model.embed_tokens.weight",
      "model.layers.0.input_layernorm.weight",
      "model.layers.0.mlp.up_proj.weight",
      "model.layers.0.mlp.down_proj.weight",
      "model.layers.1.input_layernorm.weight",
      "model.layers.1.mlp.up_proj.weight",
      "model.layers.1.mlp.down_proj.weight",
      "lm_head.weight",
  };
  EXPECT_EQ(names_of(lm.named_parameters()), expected);
  EXPECT_EQ(lm.parameters().size(), expected.size());
  EXPECT_EQ(lm.num_parameters(), 3 * static_cast<int64_t>(expected.size()));
  EXPECT_EQ(names_of(lm.named_buffers()), std::vector<std::string>{"model.position_ids"});
}

TEST(ModuleNames, NamedModulesListsEveryDescendantPreOrderWithPaths) {
  CausalLm lm(3, 2);
  const std::vector<std::string> expected = {
      "model",
      "model.embed_tokens",
      "model.layers",
      "model.layers.0",
      "model.layers.0.input_layernorm",
      "model.layers.0.mlp",
      "model.layers.0.mlp.up_proj",
      "model.layers.0.mlp.down_proj",
      "model.layers.1",
      "model.layers.1.input_layernorm",
      "model.layers.1.mlp",
      "model.layers.1.mlp.up_proj",
      "model.layers.1.mlp.down_proj",
      "lm_head",
  };
  const auto modules = lm.named_modules();
  EXPECT_EQ(names_of(modules), expected);
  EXPECT_EQ(modules[2].second->type_name(), "ModuleList");
  // Each module knows its own path from the root.
  for (const auto& [name, module] : modules)
    EXPECT_EQ(module->path(), name);
  EXPECT_EQ(lm.path(), "");
}

TEST(ModuleNames, FloatingParametersRequireGradAndIntegerOnesDoNot) {
  CausalLm lm(3, 1);
  for (const auto& [name, t] : lm.named_parameters())
    EXPECT_TRUE(t.requires_grad()) << name;
  Scale s(2, 1.0);
  EXPECT_FALSE(s.register_parameter("count", Tensor::arange(2)).requires_grad());
  EXPECT_FALSE(lm.named_buffers()[0].second.requires_grad());
}

TEST(ModuleRegistration, RejectsEmptyDottedAndDuplicateNamesNamingTheModulePath) {
  CausalLm lm(3, 2);
  Module& mlp = *lm.get_submodule("model.layers.1.mlp");
  expect_error_mentioning([&] { mlp.register_parameter("", Tensor::zeros({1})); },
                          {"empty name", "model.layers.1.mlp", "Mlp"});
  expect_error_mentioning([&] { mlp.register_buffer("a.b", Tensor::zeros({1})); },
                          {"'a.b'", "contains '.'", "model.layers.1.mlp"});
  expect_error_mentioning([&] { mlp.register_module("up_proj", std::make_shared<Scale>(3, 1.0)); },
                          {"'up_proj'", "already used by a child module", "model.layers.1.mlp"});
  // Uniqueness spans parameters, buffers and children.
  Module& up = *lm.get_submodule("model.layers.1.mlp.up_proj");
  expect_error_mentioning(
      [&] { up.register_buffer("weight", Tensor::zeros({1})); },
      {"'weight'", "already used by a parameter", "model.layers.1.mlp.up_proj"});
  expect_error_mentioning([&] { lm.register_module("model", std::make_shared<Scale>(3, 1.0)); },
                          {"'model'", "CausalLm (root module)"});
  // A rejected registration leaves the tree as it was.
  EXPECT_EQ(lm.named_parameters().size(), 8u);
}

TEST(ModuleRegistration, RejectsNonLeafTensorsNullModulesAndCycles) {
  CausalLm lm(3, 1);
  Tensor leaf = Tensor::ones({3}).set_requires_grad();
  expect_error_mentioning([&] { lm.register_parameter("w", leaf * 2.0); }, {"'w'", "not a leaf"});
  expect_error_mentioning([&] { lm.register_module("x", std::shared_ptr<Module>()); },
                          {"'x'", "null"});
  auto mlp = lm.get_submodule("model.layers.0.mlp");
  auto block = lm.get_submodule("model.layers.0");
  expect_error_mentioning([&] { mlp->register_module("loop", block); }, {"cycle"});
}

TEST(ModuleLookup, ChildAndGetSubmoduleErrorsNameTheMissingPartAndTheChoices) {
  CausalLm lm(3, 2);
  expect_error_mentioning([&] { lm.get_submodule("model.layers.7.mlp"); },
                          {"'model.layers.7.mlp'", "'model.layers' (ModuleList)", "'7'", "0, 1"});
  expect_error_mentioning([&] { lm.get_submodule(""); }, {"empty path"});
  expect_error_mentioning([&] { lm.child("decoder"); }, {"'decoder'", "model, lm_head"});
  expect_error_mentioning([&] { lm.child_as<ModuleList>("lm_head"); }, {"'lm_head'", "Scale"});
  expect_error_mentioning([&] { lm.get_submodule("model.layers")->parameter("weight"); },
                          {"no parameter 'weight'", "model.layers"});
  auto& layers = dynamic_cast<ModuleList&>(*lm.get_submodule("model.layers"));
  EXPECT_EQ(layers.size(), 2);
  EXPECT_EQ(layers[1].type_name(), "Block");
  EXPECT_EQ(layers.at<Block>(0).path(), "model.layers.0");
  expect_error_mentioning([&] { layers.at<Block>(2); }, {"index 2", "size 2", "model.layers"});
  expect_error_mentioning([&] { layers.at<Mlp>(0); }, {"'0'", "Block"});
}

TEST(ModuleStateDict, RoundTripCopiesValuesInPlaceWithoutAliasing) {
  CausalLm a(3, 2), b(3, 2);
  // Distinct values in a so a successful load is visible.
  double v = 1.0;
  for (const auto& [name, t] : a.named_parameters()) {
    t.copy_(Tensor::from_vector({v, v + 0.5, v + 0.25}, {3}));
    v += 1.0;
  }
  a.named_buffers()[0].second.copy_(Tensor::from_vector_i64({7, 8, 9}, {3}));
  const StateDict sd = a.state_dict();
  std::vector<std::string> keys = names_of(sd);
  std::vector<std::string> expected = names_of(a.named_parameters());
  expected.push_back("model.position_ids");
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(keys, expected);

  const Tensor b_weight_before = b.get_submodule("lm_head")->parameter("weight");
  const LoadStateDictResult result = b.load_state_dict(sd);
  EXPECT_TRUE(result.missing_keys.empty());
  EXPECT_TRUE(result.unexpected_keys.empty());
  for (const auto& [name, t] : b.state_dict()) {
    EXPECT_EQ(t.to_vector(), sd.at(name).to_vector()) << name;
    EXPECT_FALSE(t.shares_storage(sd.at(name))) << name;
  }
  // In place: tensors obtained before the load see the loaded values, and still require grad.
  EXPECT_EQ(b_weight_before.to_vector(), sd.at("lm_head.weight").to_vector());
  EXPECT_TRUE(b.get_submodule("lm_head")->parameter("weight").requires_grad());
  // Later changes to a do not reach b.
  a.get_submodule("lm_head")->parameter("weight").fill_(-1.0);
  EXPECT_EQ(b_weight_before.to_vector(), (std::vector<double>{8.0, 8.5, 8.25}));
}

TEST(ModuleStateDict, ShapeMismatchNamesTheKeyAndBothShapesAndLoadsNothing) {
  CausalLm small(3, 1), big(4, 1);
  StateDict sd = big.state_dict();
  for (auto& [name, t] : sd)
    t.fill_(5.0);
  expect_error_mentioning([&] { small.load_state_dict(sd); },
                          {"'lm_head.weight'", "shape mismatch", "module has [3]", "dict has [4]"});
  // Nothing was copied, not even keys that were checked before the bad one.
  for (const auto& [name, t] : small.named_parameters()) {
    EXPECT_EQ(t.to_vector(), std::vector<double>(3, t.to_vector()[0])) << name;
    EXPECT_NE(t.to_vector()[0], 5.0) << name;
  }
}

TEST(ModuleStateDict, DtypeMismatchNamesTheKeyAndBothDtypes) {
  CausalLm lm(3, 1);
  StateDict sd = lm.state_dict();
  sd["model.embed_tokens.weight"] = Tensor::ones({3}, DType::F64);
  expect_error_mentioning([&] { lm.load_state_dict(sd); },
                          {"'model.embed_tokens.weight'", "dtype mismatch", "f32", "f64"});
}

TEST(ModuleStateDict, StrictLoadReportsMissingAndUnexpectedKeysTogether) {
  CausalLm lm(3, 1);
  StateDict sd = lm.state_dict();
  sd.erase("lm_head.weight");
  sd.erase("model.position_ids");
  sd["lm_head.bias"] = Tensor::zeros({3});
  expect_error_mentioning([&] { lm.load_state_dict(sd); },
                          {"missing keys (2)", "lm_head.weight", "model.position_ids",
                           "unexpected keys (1)", "lm_head.bias"});
  // Non-strict loads the rest and reports what it skipped.
  for (auto& [name, t] : sd)
    t = Tensor::full(t.shape(), 4.0, t.dtype());
  const LoadStateDictResult result = lm.load_state_dict(sd, /*strict=*/false);
  EXPECT_EQ(result.missing_keys,
            (std::vector<std::string>{"lm_head.weight", "model.position_ids"}));
  EXPECT_EQ(result.unexpected_keys, std::vector<std::string>{"lm_head.bias"});
  EXPECT_EQ(lm.get_submodule("model.embed_tokens")->parameter("weight").to_vector(),
            std::vector<double>(3, 4.0));
  EXPECT_EQ(lm.get_submodule("lm_head")->parameter("weight").to_vector(),
            std::vector<double>(3, 1.0));
}

TEST(ModuleReplace, NamedParametersStateDictAndForwardSeeTheNewModule) {
  auto lm = std::make_shared<CausalLm>(3, 2);
  const Tensor x = Tensor::from_vector({1.0, -2.0, 0.5}, {3});
  // Every Scale is 1 except up_proj: 2 in layer 0, 3 in layer 1, so y = 6x.
  EXPECT_EQ(lm->forward(x).to_vector(), (std::vector<double>{6.0, -12.0, 3.0}));

  std::weak_ptr<Module> old_watch = lm->get_submodule("model.layers.1.mlp.up_proj");
  std::shared_ptr<Module> old =
      lm->replace_module("model.layers.1.mlp.up_proj", std::make_shared<Shift>(3, 10.0));
  EXPECT_EQ(old->type_name(), "Scale");
  EXPECT_EQ(old->path(), "");  // detached from the tree

  // Layer 0 gives 2x; layer 1 now adds 10 instead of tripling.
  EXPECT_EQ(lm->forward(x).to_vector(), (std::vector<double>{12.0, 6.0, 11.0}));
  const std::vector<std::string> names = names_of(lm->named_parameters());
  EXPECT_NE(std::find(names.begin(), names.end(), "model.layers.1.mlp.up_proj.bias"), names.end());
  EXPECT_EQ(std::find(names.begin(), names.end(), "model.layers.1.mlp.up_proj.weight"),
            names.end());
  EXPECT_EQ(lm->state_dict().count("model.layers.1.mlp.up_proj.bias"), 1u);
  EXPECT_EQ(lm->get_submodule("model.layers.1.mlp.up_proj")->path(), "model.layers.1.mlp.up_proj");
  EXPECT_NE(lm->get_submodule("model.layers.1.mlp")->to_string().find("(up_proj): Shift()"),
            std::string::npos);

  // Gradients reach the new parameter and nothing reaches the old one.
  lm->forward(x).backward(Tensor::ones({3}));
  EXPECT_EQ(lm->get_submodule("model.layers.1.mlp.up_proj")->parameter("bias").grad().to_vector(),
            std::vector<double>(3, 1.0));
  EXPECT_FALSE(old->parameter("weight").grad().defined());

  // No stale reference remains: dropping the returned module frees it.
  old.reset();
  EXPECT_TRUE(old_watch.expired());
}

TEST(ModuleReplace, WholeBlocksCanBeSwappedAndBadPathsAreErrors) {
  CausalLm lm(3, 2);
  lm.replace_module("model.layers.0", std::make_shared<Block>(3, 1.0, 5.0, 1.0));
  EXPECT_EQ(lm.forward(Tensor::ones({3})).to_vector(), std::vector<double>(3, 15.0));
  lm.replace_module("lm_head", std::make_shared<Scale>(3, -1.0));
  EXPECT_EQ(lm.forward(Tensor::ones({3})).to_vector(), std::vector<double>(3, -15.0));
  expect_error_mentioning(
      [&] { lm.replace_module("model.layers.0.attn", std::make_shared<Scale>(3, 1.0)); },
      {"'model.layers.0.attn'", "no child 'attn'", "input_layernorm, mlp"});
  expect_error_mentioning(
      [&] { lm.replace_module("model.decoder.0", std::make_shared<Scale>(3, 1.0)); },
      {"'model.decoder'", "no child 'decoder'"});
  expect_error_mentioning([&] { lm.replace_module("lm_head", nullptr); }, {"null"});
}

TEST(ModuleModes, TrainAndEvalReachEveryDescendantAndReplacementsInheritTheMode) {
  CausalLm lm(3, 2);
  EXPECT_TRUE(lm.is_training());
  lm.eval();
  EXPECT_FALSE(lm.is_training());
  for (const auto& [name, m] : lm.named_modules())
    EXPECT_FALSE(m->is_training()) << name;
  lm.replace_module("model.layers.1", std::make_shared<Block>(3, 1.0, 1.0, 1.0));
  for (const auto& [name, m] : lm.named_modules())
    EXPECT_FALSE(m->is_training()) << name;
  lm.get_submodule("model.layers")->train();
  EXPECT_FALSE(lm.get_submodule("model")->is_training());
  EXPECT_TRUE(lm.get_submodule("model.layers.1.mlp.down_proj")->is_training());
  lm.train();
  for (const auto& [name, m] : lm.named_modules())
    EXPECT_TRUE(m->is_training()) << name;
}

TEST(ModuleGradients, ZeroGradDropsEveryParameterGradient) {
  CausalLm lm(3, 2);
  ops::sum(lm.forward(Tensor::from_vector({1.0, 2.0, 3.0}, {3}))).backward();
  for (const auto& [name, t] : lm.named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << name;
  }
  // lm_head gradient is model(x) = 6x by hand.
  EXPECT_EQ(lm.get_submodule("lm_head")->parameter("weight").grad().to_vector(),
            (std::vector<double>{6.0, 12.0, 18.0}));
  lm.zero_grad();
  for (const auto& [name, t] : lm.named_parameters())
    EXPECT_FALSE(t.grad().defined()) << name;
}

TEST(ModuleTying, ATensorRegisteredTwiceIsOneParameterButTwoStateDictKeys) {
  CausalLm lm(3, 1);
  const Tensor embed = lm.get_submodule("model.embed_tokens")->parameter("weight");
  lm.get_submodule("lm_head")->set_parameter("weight", embed);
  EXPECT_EQ(lm.named_parameters().size(), 4u);
  EXPECT_EQ(lm.num_parameters(), 12);
  EXPECT_EQ(lm.state_dict().size(), 6u);  // 5 parameter names + 1 buffer
  expect_error_mentioning([&] { lm.set_parameter("weight", embed); }, {"no parameter 'weight'"});
}

TEST(ModulePrinting, ToStringShowsTheIndentedTreeWithExtraRepr) {
  CausalLm lm(3, 1);
  const std::string expected =
      "CausalLm(\n"
      "  (model): Model(\n"
      "    (embed_tokens): Scale(n=3)\n"
      "    (layers): ModuleList(\n"
      "      (0): Block(\n"
      "        (input_layernorm): Scale(n=3)\n"
      "        (mlp): Mlp(\n"
      "          (up_proj): Scale(n=3)\n"
      "          (down_proj): Scale(n=3)\n"
      "        )\n"
      "      )\n"
      "    )\n"
      "  )\n"
      "  (lm_head): Scale(n=3)\n"
      ")";
  EXPECT_EQ(lm.to_string(), expected);
}

}  // namespace
}  // namespace autotp

namespace autotp {
namespace {

// A plain container module for the conversion test.
class Holder : public Module {
 public:
  std::string type_name() const override { return "Holder"; }
};

TEST(ModuleTo, ConvertsEveryTensorAndKeepsTiedWeightsTiedAndTrainable) {
  auto root = std::make_shared<Holder>();
  auto a = std::make_shared<Holder>();
  auto b = std::make_shared<Holder>();
  const Tensor shared = Tensor::from_vector({1, 2, 3}, {3});
  a->register_parameter("weight", shared);
  b->register_parameter("weight", shared);  // tied
  b->register_buffer("steps", Tensor::from_vector_i64({4}, {1}));
  root->register_module("a", a);
  root->register_module("b", b);
  root->to(Device::cpu(), DType::F64);
  const Tensor wa = a->parameter("weight"), wb = b->parameter("weight");
  EXPECT_EQ(wa.dtype(), DType::F64);
  EXPECT_TRUE(wa.shares_storage(wb));
  EXPECT_FALSE(wa.shares_storage(shared));
  EXPECT_TRUE(wa.requires_grad());
  EXPECT_EQ(wa.to_vector(), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(b->buffer("steps").dtype(), DType::I64);  // integer buffers keep their dtype
  EXPECT_EQ(root->named_parameters().size(), 1u);
}

}  // namespace
}  // namespace autotp
