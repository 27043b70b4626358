// module_shapes(config) lists exactly what describe_modules() reads from the built model, for
// every model_type, tied and untied, with and without biases; describe_modules finds ties.
#include <gtest/gtest.h>

#include "layers/linear.h"
#include "models/module_shapes.h"
#include "models/registry.h"

namespace autotp {
namespace {

ModelConfig small_config(const std::string& type, bool tied, bool bias) {
  ModelConfig c;
  c.model_type = type;
  c.vocab_size = 11;
  c.hidden_size = 12;
  c.intermediate_size = 10;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 3;
  c.tie_word_embeddings = tied;
  c.attention_bias = bias;
  c.mlp_bias = bias && type == "llama";
  c.max_position_embeddings = 16;
  if (type == "mistral") c.sliding_window = 16;
  return c;
}

TEST(ModuleShapes, EqualTheBuiltModelsModulesForEveryModelType) {
  for (const std::string& type : registered_model_types()) {
    for (bool tied : {false, true}) {
      for (bool bias : {false, true}) {
        SCOPED_TRACE(fmt::format("{} tied={} bias={}", type, tied, bias));
        const ModelConfig c = small_config(type, tied, bias);
        const auto model = create_model_uninitialized(c);
        const std::vector<ModuleShape> built = describe_modules(*model);
        const std::vector<ModuleShape> computed = module_shapes(c);
        ASSERT_EQ(built.size(), computed.size());
        for (size_t i = 0; i < built.size(); ++i) {
          EXPECT_EQ(built[i].path, computed[i].path);
          EXPECT_EQ(built[i].type_name, computed[i].type_name) << built[i].path;
          EXPECT_EQ(built[i].parameters, computed[i].parameters) << built[i].path;
          EXPECT_EQ(built[i].weight_tied_to, computed[i].weight_tied_to) << built[i].path;
        }
        // The same parameters, in the same order, as named_parameters().
        std::vector<std::string> names;
        for (const ModuleShape& m : computed) {
          for (const auto& [n, s] : m.parameters)
            names.push_back(m.path + "." + n);
        }
        std::vector<std::string> expected;
        for (const auto& [n, t] : model->named_parameters())
          expected.push_back(n);
        EXPECT_EQ(names, expected);
      }
    }
  }
}

class TiedPair : public Module {
 public:
  TiedPair() {
    register_module("a", std::make_shared<Linear>(3, 4, true));
    register_module("b", std::make_shared<Linear>(3, 4, false));
    child_as<Linear>("b").set_parameter("weight", child_as<Linear>("a").weight());
    register_parameter("scale", Tensor::ones({2}));
  }
  std::string type_name() const override { return "TiedPair"; }
};

TEST(ModuleShapes, DescribeModulesIncludesTheRootAndFindsTiedWeights) {
  TiedPair m;
  const std::vector<ModuleShape> d = describe_modules(m);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].path, "");
  EXPECT_EQ(d[0].type_name, "TiedPair");
  EXPECT_EQ(d[1].path, "a");
  EXPECT_EQ(d[1].weight_tied_to, "");
  EXPECT_EQ(d[2].path, "b");
  EXPECT_EQ(d[2].weight_tied_to, "a.weight");
  EXPECT_EQ(*d[1].parameter_shape("bias"), (Shape{4}));
  EXPECT_EQ(d[2].parameter_shape("bias"), nullptr);
}

}  // namespace
}  // namespace autotp
