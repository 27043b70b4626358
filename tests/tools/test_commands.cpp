// The train and eval subcommands: argument parsing and its errors, and end-to-end runs of
// `autotp train` and `autotp eval` on the reference trajectory's tiny model.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/io/json.h"
#include "tests/core/nn_test_helpers.h"
#include "tools/command_args.h"
#include "tools/commands.h"
#include "tools/eval_command.h"
#include "tools/train_command.h"

namespace autotp::tools {
namespace {

namespace fs = std::filesystem;

const std::string kTrajectoryDir = std::string(AUTOTP_TEST_DATA_DIR) + "/trajectory";

TEST(TrainArgs, ParsesConfigOverridesOutAndResume) {
  const TrainArgs a =
      parse_train_args({"cfg.yaml", "--set", "train.steps=20", "--set=optimizer.params.lr=0.1",
                        "--out", "runs/x", "--resume"});
  EXPECT_EQ(a.config_path, "cfg.yaml");
  EXPECT_EQ(a.overrides, (std::vector<std::string>{"train.steps=20", "optimizer.params.lr=0.1"}));
  EXPECT_EQ(a.out_dir, "runs/x");
  EXPECT_TRUE(a.resume);
  EXPECT_EQ(a.resume_dir, "");
}

// `--resume RUN/checkpoints/step-N` without --out continues writing into RUN.
TEST(TrainArgs, ResumingACheckpointDirectoryWritesIntoItsRun) {
  const fs::path run = fs::temp_directory_path() /
                       fmt::format("autotp_test_resume_run_{}", static_cast<long>(getpid()));
  fs::remove_all(run);
  fs::create_directories(run / "checkpoints/step-00000003");
  std::ofstream(run / "checkpoints/step-00000003/state.json") << "{}";
  const TrainArgs a =
      parse_train_args({"cfg.yaml", "--resume", (run / "checkpoints/step-00000003").string()});
  EXPECT_EQ(fs::path(train_options(a).out_dir), run);
  const TrainArgs slash = parse_train_args(
      {"cfg.yaml", "--resume", (run / "checkpoints/step-00000003").string() + "/"});
  EXPECT_EQ(fs::path(train_options(slash).out_dir), run);  // shell completion's trailing '/'
  fs::create_directories(run / "elsewhere");
  std::ofstream(run / "elsewhere/state.json") << "{}";
  EXPECT_ERROR_CONTAINS(
      train_options(parse_train_args({"cfg.yaml", "--resume", (run / "elsewhere").string()})),
      "names a checkpoint outside a run's checkpoints/ folder: give --out");
  fs::remove_all(run);
}

TEST(TrainArgs, OverwriteReplacesAnEarlierRunAndExcludesResume) {
  EXPECT_FALSE(parse_train_args({"cfg.yaml"}).overwrite);
  EXPECT_TRUE(parse_train_args({"cfg.yaml", "--overwrite"}).overwrite);
  EXPECT_ERROR_CONTAINS(parse_train_args({"cfg.yaml", "--overwrite", "--resume"}),
                        "--resume continues a run and --overwrite replaces it: give one");
}

TEST(TrainArgs, ResumeTakesADirectoryUnlessTheNextArgumentIsAConfigOrAnOption) {
  const TrainArgs a = parse_train_args({"--resume", "cfg.yaml"});
  EXPECT_TRUE(a.resume);
  EXPECT_EQ(a.resume_dir, "");
  EXPECT_EQ(a.config_path, "cfg.yaml");
  const TrainArgs b = parse_train_args({"cfg.yaml", "--resume", "runs/old", "--out", "runs/new"});
  EXPECT_EQ(b.resume_dir, "runs/old");
  EXPECT_EQ(b.out_dir, "runs/new");
  const TrainArgs c = parse_train_args({"cfg.yaml", "--resume", "--set", "train.steps=3"});
  EXPECT_EQ(c.resume_dir, "");
  EXPECT_EQ(c.overrides.size(), 1u);
}

TEST(TrainArgs, BadArgumentsGiveOneErrorWithTheUsage) {
  EXPECT_ERROR_CONTAINS(parse_train_args({}), "train: missing CONFIG.yaml\nusage: autotp train");
  EXPECT_ERROR_CONTAINS(parse_train_args({"a.yaml", "--bogus"}), "unknown option '--bogus'");
  EXPECT_ERROR_CONTAINS(parse_train_args({"a.yaml", "b.yaml"}),
                        "one config file expected, got 'a.yaml' and 'b.yaml'");
  EXPECT_ERROR_CONTAINS(parse_train_args({"a.yaml", "--set"}), "--set needs a value");
  EXPECT_ERROR_CONTAINS(parse_train_args({"a.yaml", "--set", "train.steps"}),
                        "--set expects key.path=value, got 'train.steps'");
}

TEST(TrainArgs, DeviceIsCpuOrCudaAndDefaultsToNone) {
  EXPECT_EQ(parse_train_args({"cfg.yaml"}).device, "");
  EXPECT_EQ(parse_train_args({"cfg.yaml", "--device", "cuda"}).device, "cuda");
  EXPECT_EQ(parse_train_args({"cfg.yaml", "--device=cpu"}).device, "cpu");
  EXPECT_EQ(parse_train_args({"cfg.yaml", "--resume", "--device", "cpu"}).resume_dir, "");
  EXPECT_ERROR_CONTAINS(parse_train_args({"cfg.yaml", "--device", "gpu"}),
                        "--device: 'gpu' is not cpu or cuda\nusage: autotp train");
}

// The default follows the machine, as `autotp bench` does; ranks take their node-local GPU.
TEST(TrainDevice, DefaultsToCudaWhenAGpuIsVisibleElseToTheCpu) {
  EXPECT_EQ(train_device("cpu", 0), Device::cpu());
  EXPECT_EQ(train_device("", 0), cuda_available() ? Device::cuda(0) : Device::cpu());
  if (cuda_available()) {
    EXPECT_EQ(train_device("cuda", 1), Device::cuda(1 % cuda_device_count()));
    EXPECT_EQ(train_device("", cuda_device_count()), Device::cuda(0));  // round-robin
  }
}

TEST(TrainDevice, CudaWithoutAGpuIsOneErrorSayingWhy) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is visible: the error needs a machine without one";
  EXPECT_ERROR_CONTAINS(train_device("cuda", 0), "train: --device cuda needs a GPU, but ");
  EXPECT_ERROR_CONTAINS(train_device("cuda", 0), "train on the CPU with --device cpu");
  // The whole command stops there, before the config is read.
  EXPECT_ERROR_CONTAINS(run_train({"missing.yaml", "--device", "cuda"}),
                        "train: --device cuda needs a GPU");
}

TEST(EvalArgs, ParsesModelDataAndBatches) {
  const EvalArgs a =
      parse_eval_args({"cfg.yaml", "--model", "runs/x", "--data=d.bin", "--batches", "7"});
  EXPECT_EQ(a.config_path, "cfg.yaml");
  EXPECT_EQ(a.model_dir, "runs/x");
  EXPECT_EQ(a.data_path, "d.bin");
  EXPECT_EQ(a.batches, 7);
  EXPECT_ERROR_CONTAINS(parse_eval_args({"cfg.yaml", "--batches", "0"}),
                        "--batches expects an integer >= 1, got '0'");
  EXPECT_ERROR_CONTAINS(parse_eval_args({"cfg.yaml", "--batches", "x2"}),
                        "--batches expects an integer >= 1, got 'x2'");
  EXPECT_ERROR_CONTAINS(parse_eval_args({"--model", "m"}), "eval: missing CONFIG.yaml");
}

int run(std::vector<std::string> args) {
  std::vector<char*> argv;
  static std::string program = "autotp";
  argv.push_back(program.data());
  for (std::string& a : args)
    argv.push_back(a.data());
  return run_command_line(static_cast<int>(argv.size()), argv.data());
}

TEST(Commands, HelpListsTrainEvalDemoAndVersion) {
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(run({"help"}), 0);
  const std::string out = ::testing::internal::GetCapturedStdout();
  for (const char* command : {"train", "eval", "demo", "version", "help"}) {
    EXPECT_NE(out.find(std::string("  ") + command + " "), std::string::npos) << command;
  }
  EXPECT_ERROR_CONTAINS(run({"trian"}), "unknown command 'trian'");
}

// Under mpirun, the one-process commands would each repeat the whole command: an error.
TEST(Commands, OneProcessCommandsRefuseSeveralLaunchedRanks) {
  ASSERT_EQ(::setenv("OMPI_COMM_WORLD_SIZE", "2", 1), 0);
  EXPECT_ERROR_CONTAINS(run({"eval", "cfg.yaml"}),
                        "eval: runs as one process, but the launcher started 2");
  EXPECT_ERROR_CONTAINS(run({"bench", "cfg.yaml"}), "bench: runs as one process");
  EXPECT_ERROR_CONTAINS(run({"export", "ckpt", "out"}), "export: runs as one process");
  ::unsetenv("OMPI_COMM_WORLD_SIZE");
  EXPECT_EQ(launched_world_size(), 1);
}

TEST(Commands, EveryCommandPrintsItsUsageForHelp) {
  for (const char* command : {"train", "eval", "export", "bench", "bench-ops", "plan", "demo"}) {
    ::testing::internal::CaptureStdout();
    EXPECT_EQ(run({command, "--help"}), 0) << command;
    const std::string out = ::testing::internal::GetCapturedStdout();
    EXPECT_EQ(out.rfind(std::string("usage: autotp ") + command + " ", 0), 0u) << out;
  }
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(run({"train", "cfg.yaml", "-h"}), 0);
  EXPECT_NE(::testing::internal::GetCapturedStdout().find("--overwrite"), std::string::npos);
}

// A --json report that cannot be written is an error before the bench runs (it was one only
// after the whole run); the single-process commands say that autotp_size does not apply.
TEST(Commands, BenchChecksItsJsonPathFirstAndSaysWhatItIgnores) {
  const std::string config = std::string(AUTOTP_TEST_DATA_DIR) + "/../../configs/tiny-llama.yaml";
  EXPECT_ERROR_CONTAINS(run({"bench", config, "--json", "/nonexistent/x.json"}),
                        "--json '/nonexistent/x.json': the folder '/nonexistent' does not exist or "
                        "is not writable");
  EXPECT_ERROR_CONTAINS(run({"bench-ops", config, "--json", fs::temp_directory_path().string()}),
                        "is a directory");
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run({"bench", config, "--device", "cpu", "--steps", "1", "--warmup", "0", "--set",
                 "tensor_parallel.autotp_size=2", "--set", "train_micro_batch_size_per_gpu=1",
                 "--set", "data.seq_len=8", "--set", "wall_clock_breakdown=true"}),
            0);
  ::testing::internal::GetCapturedStdout();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("bench: warning: tensor_parallel.autotp_size is 2, but bench runs one "
                     "process on the unsharded model"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("bench: warning: --set wall_clock_breakdown: 'wall_clock_breakdown' is a "
                     "DeepSpeed setting"),
            std::string::npos)
      << err;
}

// Synthetic data without a vocab_size takes the evaluated model's vocabulary (67 here), not
// that of the config's inline model (256).
TEST(Commands, EvalOfAnotherModelUsesItsVocabulary) {
  const std::string config = std::string(AUTOTP_TEST_DATA_DIR) + "/../../configs/tiny-llama.yaml";
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(run({"eval", config, "--model", std::string(AUTOTP_TEST_DATA_DIR) + "/hf_tiny_llama",
                 "--set", "data.type=synthetic", "--batches", "1"}),
            0);
  const std::string text = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(text.find("vocab_size 67"), std::string::npos) << text;
}

// `autotp train` then `autotp eval` of its outputs: the HF export and the checkpoint give the
// same loss, and the JSON line carries it. Without --model, eval reads the config's untrained
// weights: their loss is higher (three steps lower it by ~0.25), so a --model that were
// ignored would fail here.
TEST(Commands, TrainThenEvalTheExportAndTheCheckpoint) {
  const fs::path out = fs::temp_directory_path() /
                       fmt::format("autotp_test_commands_{}", static_cast<long>(getpid()));
  fs::remove_all(out);
  const std::string config = kTrajectoryDir + "/train.yaml";
  const std::vector<std::string> sets = {"--set", "model.path=" + kTrajectoryDir, "--set",
                                         "data.path=" + kTrajectoryDir + "/tokens.bin"};
  std::vector<std::string> train = {
      "train", config,          "--out", out.string(),
      "--set", "train.steps=3", "--set", "train.checkpoint_interval=3"};
  train.insert(train.end(), sets.begin(), sets.end());
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(run(train), 0);
  const std::string train_out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(train_out.find("step 3/3 | loss "), std::string::npos) << train_out;
  EXPECT_TRUE(fs::exists(out / "hf" / "config.json"));

  const auto eval = [&](const std::string& model) {
    std::vector<std::string> args = {"eval", config, "--batches", "2"};
    if (!model.empty()) args.insert(args.end(), {"--model", model});
    args.insert(args.end(), sets.begin(), sets.end());
    ::testing::internal::CaptureStdout();
    EXPECT_EQ(run(args), 0);
    const std::string text = ::testing::internal::GetCapturedStdout();
    EXPECT_NE(text.find("perplexity"), std::string::npos) << text;
    const std::string last = text.substr(text.rfind('{'));
    return json::parse(last);
  };
  const json::Value from_hf = eval((out / "hf").string());
  const json::Value from_checkpoint = eval((out / "checkpoints" / "step-00000003").string());
  const json::Value from_run_dir = eval(out.string());
  EXPECT_EQ(from_hf.get<double>("loss"), from_checkpoint.get<double>("loss"));
  EXPECT_EQ(from_hf.get<double>("loss"), from_run_dir.get<double>("loss"));
  EXPECT_NE(from_hf.get<std::string>("model").find((out / "hf").string()), std::string::npos);
  EXPECT_NE(from_checkpoint.get<std::string>("model").find("step-00000003"), std::string::npos);
  const json::Value untrained = eval("");
  EXPECT_LT(from_hf.get<double>("loss"), untrained.get<double>("loss") - 0.1);
  EXPECT_NEAR(from_hf.get<double>("perplexity"), std::exp(from_hf.get<double>("loss")), 1e-9);
  EXPECT_EQ(from_hf.get<int64_t>("tokens"), 2 * 2 * 16);
  fs::remove_all(out);
}

}  // namespace
}  // namespace autotp::tools
