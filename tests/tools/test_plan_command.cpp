// `autotp plan`: an 8B-sized Llama planned from its config alone (no weights allocated), the
// JSON document, errors with fixes and a non-zero exit, --tp, config.json with an HF tp_plan,
// memory with bf16 + ZeRO, and bad command lines.
#include <gtest/gtest.h>

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/io/json.h"
#include "tests/core/nn_test_helpers.h"
#include "tools/plan_command.h"

namespace autotp {
namespace {

namespace fs = std::filesystem;

class PlanCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("autotp_plan_test_{}", ::getpid());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  // Runs the command; returns (exit code, output).
  std::pair<int, std::string> run(const std::vector<std::string>& args) {
    std::FILE* out = std::tmpfile();
    const int rc = tools::run_plan_command(args, out);
    std::rewind(out);
    std::string text;
    char buf[4096];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof(buf), out)) > 0)
      text.append(buf, n);
    std::fclose(out);
    return {rc, text};
  }

  fs::path dir_;
};

const char* kLlama8B = R"(train_micro_batch_size_per_gpu: 1
data_parallel_size: 2
bf16: {enabled: true}
zero_optimization: {stage: 1}
tensor_parallel:
  autotp_size: 4
model:
  model_type: llama
  vocab_size: 128256
  hidden_size: 4096
  intermediate_size: 14336
  num_hidden_layers: 32
  num_attention_heads: 32
  num_key_value_heads: 8
  rope_theta: 500000.0
  rms_norm_eps: 1.0e-5
  max_position_embeddings: 8192
data: {type: synthetic, seq_len: 128}
train: {steps: 10}
)";

// Llama-3-8B per TP rank at TP=4: embeddings and lm_head replicated (2 * 128256 * 4096),
// 65 norms of 4096, and a quarter of each layer's q, k, v, o (4096 * (4096 + 2 * 1024 + 4096))
// and MLP (3 * 4096 * 14336).
constexpr int64_t kRankParams =
    2 * 128256 * 4096LL + 65 * 4096LL +
    32 * (4096LL * (4096 + 1024 + 1024 + 4096) + 3 * 4096LL * 14336) / 4;

TEST_F(PlanCommand, PlansAnEightBillionParameterModelWithoutAllocatingIt) {
  const std::string cfg = write("llama8b.yaml", kLlama8B);
  const auto start = std::chrono::steady_clock::now();
  const auto [rc, out] = run({cfg});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(rc, 0) << out;
  EXPECT_LT(seconds, 5.0) << "planning must not build the model";
  EXPECT_NE(out.find("rules from: preset 'llama' (detected from model_type 'llama')"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("model.layers.31.self_attn.k_proj"), std::string::npos);
  EXPECT_NE(out.find("[256, 4096] x4"), std::string::npos);   // k_proj: 2 of 8 KV heads
  EXPECT_NE(out.find("[4096, 3584] x4"), std::string::npos);  // down_proj: 14336 / 4
  EXPECT_EQ(kRankParams, 2795769856);  // written out with thousands separators below
  EXPECT_NE(out.find("rank 3: 2,795,769,856 parameters, weights 5.2 GiB, gradients 5.2 GiB, "
                     "optimizer 15.6 GiB, total 26.0 GiB"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("the plan is valid"), std::string::npos);
}

TEST_F(PlanCommand, PrintsOneJsonDocumentWithShardsPerRankAndMemory) {
  const std::string cfg = write("llama8b.yaml", kLlama8B);
  const auto [rc, out] = run({cfg, "--json"});
  ASSERT_EQ(rc, 0);
  const json::Value doc = json::parse(out, "plan output");
  EXPECT_EQ(doc.get<int64_t>("tp_size"), 4);
  EXPECT_TRUE(doc.get<bool>("valid"));
  const json::Value& q = doc["parameters"]["model.layers.0.self_attn.q_proj.weight"];
  EXPECT_EQ(q.get<std::string>("partition"), "column");
  EXPECT_TRUE(q.get<bool>("sharded"));
  ASSERT_EQ(q["shards"].size(), 4u);
  EXPECT_EQ(q["shards"][3][0].as_int64(), 1024);
  EXPECT_EQ(q["shards"][3][1].as_int64(), 4096);
  EXPECT_EQ(q.get<std::string>("rule"),
            "preset 'llama' #2 column `.*\\.self_attn\\.[qkv]_proj\\.weight$`");
  EXPECT_EQ(doc["parameters"]["lm_head.weight"].get<std::string>("partition"), "replicated");
  const json::Value& rank = doc["ranks"][0];
  EXPECT_EQ(rank.get<int64_t>("parameters"), kRankParams);
  // bf16 weights and gradients (2 B each); f32 master + AdamW moments (12 B) split over DP=2.
  EXPECT_EQ(rank.get<int64_t>("weight_bytes"), 2 * kRankParams);
  EXPECT_EQ(rank.get<int64_t>("grad_bytes"), 2 * kRankParams);
  EXPECT_EQ(rank.get<int64_t>("optimizer_bytes"), 12 * kRankParams / 2);
}

TEST_F(PlanCommand, SizesThatDoNotDivideAreErrorsWithTheFixAndExitNonZero) {
  const std::string cfg = write("llama8b.yaml", kLlama8B);
  const auto [rc, out] = run({cfg, "--tp", "3"});
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("errors (the plan is not valid):"), std::string::npos) << out;
  EXPECT_NE(out.find("model.layers.*.self_attn.q_proj (in 32 layers): its out_features 4096 does "
                     "not split evenly over autotp_size 3"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("use an autotp_size that divides num_key_value_heads 8 (1, 2, 4, 8)"),
            std::string::npos);
  const auto [rc16, out16] = run({cfg, "--tp", "16", "--json"});
  EXPECT_EQ(rc16, 1);
  const json::Value doc = json::parse(out16, "plan output");
  EXPECT_FALSE(doc.get<bool>("valid"));
  EXPECT_NE(doc["errors"][0].as_string().find("autotp does not leave ranks idle"),
            std::string::npos);
}

TEST_F(PlanCommand, ReadsAConfigJsonAndUsesItsHfTpPlan) {
  write("qwen/config.json", "");
  fs::create_directories(dir_ / "qwen");
  write("qwen/config.json", R"({
  "model_type": "qwen3", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
  "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 4,
  "tie_word_embeddings": true, "architectures": ["Qwen3ForCausalLM"],
  "base_model_tp_plan": {
    "layers.*.self_attn.q_proj": "colwise", "layers.*.self_attn.k_proj": "colwise",
    "layers.*.self_attn.v_proj": "colwise", "layers.*.self_attn.o_proj": "rowwise",
    "layers.*.self_attn.q_norm": "replicated_with_grad_allreduce",
    "layers.*.self_attn.k_norm": "replicated_with_grad_allreduce",
    "layers.*.mlp.gate_proj": "colwise", "layers.*.mlp.up_proj": "colwise",
    "layers.*.mlp.down_proj": "rowwise"}
})");
  const std::string cfg = write("qwen.yaml", fmt::format(R"(train_micro_batch_size_per_gpu: 1
tensor_parallel: {{autotp_size: 2}}
model: {{path: {}}}
data: {{type: synthetic, seq_len: 8}}
train: {{steps: 1}}
)",
                                                         (dir_ / "qwen").string()));
  const auto [rc, out] = run({cfg});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("config.json base_model_tp_plan (9 entries)"), std::string::npos) << out;
  EXPECT_NE(out.find("replicated, gradient all-reduced over the TP group:\n"
                     "  model.layers.0.self_attn.q_norm.weight"),
            std::string::npos)
      << out;
}

// Ignored DeepSpeed keys are said by plan as by train (in the text; beside a JSON plan, on
// stderr so that stdout stays one JSON document).
TEST_F(PlanCommand, SaysWhichDeepSpeedKeysItIgnores) {
  const std::string config =
      write("ds.yaml", std::string(kLlama8B) + "wall_clock_breakdown: true\n");
  const auto [rc, text] = run({config});
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("plan: warning: "), std::string::npos) << text;
  EXPECT_NE(text.find("'wall_clock_breakdown' is a DeepSpeed setting that autotp does not "
                      "implement; ignored"),
            std::string::npos)
      << text;
  const auto [json_rc, json_text] = run({config, "--json"});
  EXPECT_EQ(json_rc, 0);
  EXPECT_EQ(json_text.find("plan: warning"), std::string::npos) << json_text;
  EXPECT_NO_THROW(json::parse(json_text));
}

TEST_F(PlanCommand, BadCommandLinesAndConfigsAreErrors) {
  EXPECT_ERROR_CONTAINS(run({}), "plan: no config file given");
  EXPECT_ERROR_CONTAINS(run({"a.yaml", "--fast"}), "plan: unknown option '--fast'");
  EXPECT_ERROR_CONTAINS(run({"a.yaml", "--tp", "0"}), "plan: --tp must be a positive integer");
  const std::string no_model = write("nomodel.yaml", R"(train_micro_batch_size_per_gpu: 1
data: {type: synthetic, seq_len: 8, vocab_size: 16}
train: {steps: 1}
)");
  EXPECT_ERROR_CONTAINS(run({no_model}), "the config has no 'model' section");
  std::string bad_regex = kLlama8B;
  bad_regex.replace(bad_regex.find("  autotp_size: 4\n"), 16,
                    "  autotp_size: 4\n  partition_config:\n    layer_specs:\n"
                    "      - patterns: [\"(q_proj\"]\n");
  const std::string cfg = write("bad.yaml", bad_regex);
  EXPECT_ERROR_CONTAINS(run({cfg}), "pattern '(q_proj' is not a valid regular expression");
  EXPECT_ERROR_CONTAINS(run({cfg}), "bad.yaml line 9");
}

}  // namespace
}  // namespace autotp
