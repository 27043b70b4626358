// The trainer: the 10-step trajectory against transformers + torch.optim.AdamW (float64 and
// float32), resume = uninterrupted run bit for bit, metrics.jsonl and the other outputs,
// stopping on a non-finite loss, and the errors for a bad config and a bad token file.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/io/json.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/embedded_corpus.h"
#include "engine/evaluate.h"
#include "engine/trainer.h"
#include "tests/core/nn_test_helpers.h"

namespace autotp {
namespace {

namespace fs = std::filesystem;

const std::string kTrajectoryDir = std::string(AUTOTP_TEST_DATA_DIR) + "/trajectory";

// A fresh directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::temp_directory_path() /
              fmt::format("autotp_test_trainer_{}_{}", name, static_cast<long>(getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string path() const { return path_.string(); }
  std::string sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// The reference run's config (tests/data/trajectory/train.yaml), pointed at the committed
// model and tokens, writing to `out_dir`, plus `extra` overrides.
Config trajectory_config(const std::string& out_dir, std::vector<std::string> extra = {}) {
  ConfigLoadOptions options;
  options.overrides = {"model.path=" + kTrajectoryDir,
                       "data.path=" + kTrajectoryDir + "/tokens.bin", "train.out_dir=" + out_dir};
  options.overrides.insert(options.overrides.end(), extra.begin(), extra.end());
  return load_config_file(kTrajectoryDir + "/train.yaml", options);
}

TrainerOptions quiet(DType dtype = DType::F32) {
  TrainerOptions o;
  o.out = nullptr;
  o.dtype = dtype;
  o.export_hf = false;
  return o;
}

json::Value golden() {
  return json::parse_file(kTrajectoryDir + "/golden.json");
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs the reference trajectory and compares per-step loss, pre-clip gradient norm and lr,
// and every parameter's sum and sum of squares after the last step, relative to the golden.
void expect_matches_golden(DType dtype, double rtol) {
  TempDir dir(fmt::format("golden_{}", dtype_name(dtype)));
  Trainer trainer(trajectory_config(dir.path()), quiet(dtype));
  const json::Value g = golden();
  const json::Value& steps = g["steps"];
  ASSERT_EQ(static_cast<int64_t>(steps.size()), trainer.total_steps());
  const auto close = [rtol](double actual, double expected) {
    return std::abs(actual - expected) <= rtol * std::abs(expected);
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    const StepRecord r = trainer.step();
    const json::Value& s = steps[i];
    EXPECT_EQ(r.step, s.get<int64_t>("step"));
    EXPECT_TRUE(close(r.loss, s.get<double>("loss")))
        << "step " << r.step << ": loss " << r.loss << " vs golden " << s.get<double>("loss")
        << " (rtol " << rtol << ")";
    EXPECT_TRUE(close(r.grad_norm, s.get<double>("grad_norm")))
        << "step " << r.step << ": grad norm " << r.grad_norm << " vs golden "
        << s.get<double>("grad_norm") << " (rtol " << rtol << ")";
    EXPECT_NEAR(r.lr, s.get<double>("lr"), 1e-15 * s.get<double>("lr")) << "step " << r.step;
  }
  const json::Value& final_params = g["final_params"];
  const auto params = trainer.model().named_parameters();
  ASSERT_EQ(params.size(), final_params.size());
  for (const auto& [name, p] : params) {
    const std::vector<double> v = p.to_vector();
    double sum = 0.0, sq = 0.0;
    for (double x : v) {
      sum += x;
      sq += x * x;
    }
    const json::Value& ref = final_params[name];
    // The sum of a zero-mean tensor cancels, so it is compared on the scale of its magnitude.
    const double scale = std::sqrt(ref.get<double>("sq_sum") * static_cast<double>(v.size()));
    EXPECT_LE(std::abs(sum - ref.get<double>("sum")), rtol * scale) << name << " sum";
    EXPECT_TRUE(close(sq, ref.get<double>("sq_sum")))
        << name << ": sum of squares " << sq << " vs " << ref.get<double>("sq_sum");
    // Eight elements at fixed places: where each value went (sums cannot tell).
    const json::Value& samples = ref["samples"];
    ASSERT_GE(samples.size(), std::min<size_t>(v.size(), 8)) << name;
    for (size_t k = 0; k < samples.size(); ++k) {
      const auto index = static_cast<size_t>(samples[k][0].as<int64_t>());
      const double expected = samples[k][1].as<double>();
      ASSERT_LT(index, v.size()) << name;
      // Relative to the element, or to the tensor's rms for elements near zero.
      const double rms = std::sqrt(ref.get<double>("sq_sum") / static_cast<double>(v.size()));
      EXPECT_LE(std::abs(v[index] - expected), rtol * std::max(std::abs(expected), rms))
          << name << "[" << index << "]: " << v[index] << " vs " << expected;
    }
  }
}

TEST(TrainerTrajectory, DataLoaderYieldsTheGoldenScriptsWindows) {
  TempDir dir("windows");
  Trainer trainer(trajectory_config(dir.path()), quiet());
  const json::Value g = golden();
  const json::Value& steps = g["steps"];
  const int64_t seq = trainer.data().seq_len();
  for (size_t step = 0; step < steps.size(); ++step) {
    const json::Value& windows = steps[step]["windows"];
    for (size_t micro = 0; micro < windows.size(); ++micro) {
      const Batch batch =
          trainer.data().batch(static_cast<int64_t>(step), static_cast<int64_t>(micro));
      const std::vector<int64_t> inputs = batch.input_ids.to_vector_i64();
      const std::vector<int64_t> labels = batch.labels.to_vector_i64();
      ASSERT_EQ(static_cast<int64_t>(inputs.size()),
                seq * static_cast<int64_t>(windows[micro].size()));
      for (size_t row = 0; row < windows[micro].size(); ++row) {
        const json::Value& w = windows[micro][row];
        ASSERT_EQ(static_cast<int64_t>(w.size()), seq + 1);
        for (int64_t t = 0; t < seq; ++t) {
          const size_t k = row * static_cast<size_t>(seq) + static_cast<size_t>(t);
          ASSERT_EQ(inputs[k], w[t].as<int64_t>()) << "step " << step << " micro " << micro;
          ASSERT_EQ(labels[k], w[t + 1].as<int64_t>()) << "step " << step << " micro " << micro;
        }
      }
    }
  }
}

// Both sides run float64 and differ only in the order of additions (matmul tiles, reductions,
// the norm's sum over parameters), ~1e-16 relative per operation. Measured after ten steps:
// losses and gradient norms within 6e-16 relative; the bound leaves room for other compilers'
// vectorization of the same sums.
TEST(TrainerTrajectory, TenStepsMatchTransformersAndTorchAdamWInFloat64) {
  expect_matches_golden(DType::F64, 1e-12);
}

// float32 against the float64 reference: float32 rounding (2^-24 ~ 6e-8 per operation)
// accumulated through forward, backward and ten updates. Measured: losses within 8e-8 and
// gradient norms within 3e-7 relative; the bound is 30x that.
TEST(TrainerTrajectory, TenStepsMatchTransformersInFloat32WithinFloat32Rounding) {
  expect_matches_golden(DType::F32, 1e-5);
}

TEST(TrainerTrajectory, LossFallsOverTheTenSteps) {
  const json::Value g = golden();
  const json::Value& steps = g["steps"];
  EXPECT_LT(steps[steps.size() - 1].get<double>("loss"), 0.8 * steps[0].get<double>("loss"));
}

// ---- resume ---------------------------------------------------------------------------------

std::vector<std::pair<std::string, std::vector<double>>> weights_of(CausalLM& model) {
  std::vector<std::pair<std::string, std::vector<double>>> out;
  for (const auto& [name, p] : model.named_parameters())
    out.emplace_back(name, p.to_vector());
  return out;
}

// What a Trainer printed (its summary, progress and notes) while `body` ran with `options`.
template <typename Body>
std::string printed_by(TrainerOptions options, Body body) {
  std::FILE* file = std::tmpfile();
  options.out = file;
  body(options);
  std::rewind(file);
  std::string text;
  for (int c; (c = std::fgetc(file)) != EOF;)
    text.push_back(static_cast<char>(c));
  std::fclose(file);
  return text;
}

TEST(TrainerResume, TenStepsEqualFiveThenResumeAndFiveMoreBitForBit) {
  TempDir dir("resume");
  Trainer straight(trajectory_config(dir.sub("straight")), quiet());
  straight.run();
  ASSERT_EQ(straight.history().size(), 10u);

  Trainer first(
      trajectory_config(dir.sub("split"), {"train.steps=5", "train.checkpoint_interval=5"}),
      quiet());
  first.run();
  ASSERT_EQ(first.current_step(), 5);
  ASSERT_TRUE(latest_training_checkpoint(dir.sub("split")).has_value());

  TrainerOptions resume = quiet();
  resume.resume = true;
  Trainer second(trajectory_config(dir.sub("split")), resume);
  EXPECT_TRUE(second.resumed());
  EXPECT_EQ(second.current_step(), 5);
  second.run();
  ASSERT_EQ(second.current_step(), 10);
  ASSERT_EQ(second.history().size(), 5u);

  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(first.history()[i].loss, straight.history()[i].loss) << "step " << i + 1;
    const StepRecord& a = straight.history()[5 + i];
    const StepRecord& b = second.history()[i];
    EXPECT_EQ(b.step, a.step);
    EXPECT_EQ(b.loss, a.loss) << "step " << a.step;  // bit for bit
    EXPECT_EQ(b.grad_norm, a.grad_norm) << "step " << a.step;
    EXPECT_EQ(b.lr, a.lr) << "step " << a.step;
  }
  const auto wa = weights_of(straight.model()), wb = weights_of(second.model());
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t i = 0; i < wa.size(); ++i) {
    EXPECT_EQ(wa[i].first, wb[i].first);
    EXPECT_TRUE(wa[i].second == wb[i].second) << wa[i].first << " differs after resuming";
  }
  // The trained weights moved away from the initial ones (the comparison is not vacuous).
  Trainer fresh(trajectory_config(dir.sub("fresh")), quiet());
  EXPECT_FALSE(weights_of(fresh.model())[0].second == wa[0].second);

  // metrics.jsonl of the resumed run: steps 1-5 from the first process, 6-10 from the second.
  std::ifstream in(dir.sub("split") + "/metrics.jsonl");
  std::string line;
  int64_t expected_step = 1;
  while (std::getline(in, line)) {
    EXPECT_EQ(json::parse(line).get<int64_t>("step"), expected_step);
    ++expected_step;
  }
  EXPECT_EQ(expected_step, 11);
}

// --resume RUN/checkpoints/step-N resumes from exactly that step, even when later ones exist.
TEST(TrainerResume, ACheckpointDirectoryResumesFromThatStep) {
  TempDir dir("resume_named");
  Trainer straight(trajectory_config(dir.sub("run"), {"train.checkpoint_interval=3"}), quiet());
  straight.run();
  ASSERT_EQ(latest_training_checkpoint(dir.sub("run")), dir.sub("run/checkpoints/step-00000010"));
  TrainerOptions resume = quiet();
  resume.resume = true;
  resume.resume_dir = dir.sub("run/checkpoints/step-00000003");
  Trainer again(trajectory_config(dir.sub("again")), resume);
  ASSERT_EQ(again.current_step(), 3);
  TrainerOptions incomplete = resume;
  fs::remove(dir.sub("run/checkpoints/step-00000006/state.json"));
  incomplete.resume_dir = dir.sub("run/checkpoints/step-00000006");
  EXPECT_ERROR_CONTAINS(Trainer(trajectory_config(dir.sub("third")), incomplete),
                        "'" + dir.sub("run/checkpoints/step-00000006") +
                            "' is not a complete checkpoint: its state.json is missing");
  again.run();
  ASSERT_EQ(again.history().size(), 7u);
  for (size_t i = 0; i < 7; ++i)
    EXPECT_EQ(again.history()[i].loss, straight.history()[3 + i].loss) << "step " << 4 + i;
}

// The staging folder of a save that was killed midway is named when the run is resumed.
TEST(TrainerResume, LeftoversOfAnInterruptedSaveAreNamed) {
  TempDir dir("leftovers");
  Trainer(trajectory_config(dir.path(), {"train.steps=2", "train.checkpoint_interval=2"}), quiet())
      .run();
  fs::create_directories(dir.sub("checkpoints/.step-00000004.tmp.4242"));
  std::ofstream(dir.sub("checkpoints/.step-00000004.tmp.4242/model.safetensors"))
      << std::string(1 << 20, 'x');
  TrainerOptions resume = quiet();
  resume.resume = true;
  const std::string printed = printed_by(resume, [&](const TrainerOptions& o) {
    Trainer(trajectory_config(dir.path(), {"train.steps=3"}), o).run();
  });
  EXPECT_NE(printed.find("holds leftovers of interrupted saves: 1 (.step-00000004.tmp.4242), "
                         "1.0 MiB; nothing reads them"),
            std::string::npos)
      << printed;
}

TEST(TrainerResume, WithoutACheckpointIsAnErrorNamingTheDirectory) {
  TempDir dir("resume_missing");
  TrainerOptions resume = quiet();
  resume.resume = true;
  EXPECT_ERROR_CONTAINS(Trainer(trajectory_config(dir.path()), resume),
                        "--resume: no checkpoint under '" + dir.path() + "'");
}

TEST(TrainerResume, AChangedConfigIsAWarningNamingTheFirstDifference) {
  TempDir dir("resume_changed");
  Trainer(trajectory_config(dir.path(), {"train.steps=2", "train.checkpoint_interval=2"}), quiet())
      .run();
  TrainerOptions resume = quiet();
  resume.resume = true;
  const std::string same = printed_by(resume, [&](const TrainerOptions& o) {
    Trainer(trajectory_config(dir.path(), {"train.steps=3"}), o).run();
  });
  EXPECT_NE(same.find("resumed from"), std::string::npos) << same;
  EXPECT_EQ(same.find("warning"), std::string::npos) << same;
  const std::string changed = printed_by(resume, [&](const TrainerOptions& o) {
    Trainer(trajectory_config(dir.path(), {"train.steps=3", "optimizer.params.lr=0.01"}), o).run();
  });
  EXPECT_NE(changed.find("warning: the config differs from the checkpoint's"), std::string::npos)
      << changed;
  EXPECT_NE(changed.find("'lr: 0.02' in the checkpoint, 'lr: 0.01' now"), std::string::npos)
      << changed;
}

// ---- outputs --------------------------------------------------------------------------------

// A fresh run into a directory holding an earlier run would overwrite its checkpoints,
// metrics.jsonl and export: an error, before anything is written, unless asked to overwrite.
TEST(TrainerOutputs, AFreshRunIntoAnEarlierRunIsAnErrorUnlessOverwriting) {
  TempDir dir("earlier_run");
  TrainerOptions options = quiet();
  options.export_hf = true;
  Trainer(trajectory_config(dir.path(), {"train.steps=3", "train.checkpoint_interval=3"}), options)
      .run();
  const auto metrics_lines = [&] {
    std::ifstream in(dir.sub("metrics.jsonl"));
    int64_t lines = 0;
    for (std::string line; std::getline(in, line);)
      ++lines;
    return lines;
  };
  ASSERT_EQ(metrics_lines(), 3);
  EXPECT_ERROR_CONTAINS(
      Trainer(trajectory_config(dir.path(), {"train.steps=2"}), options),
      "output directory '" + dir.path() +
          "' holds an earlier run (checkpoints/ (latest step-00000003), metrics.jsonl, hf/), "
          "which a fresh run would overwrite: give --resume to continue it, --overwrite to "
          "replace it, or another --out (TrainerOptions: resume, overwrite, out_dir)");
  EXPECT_EQ(metrics_lines(), 3);
  options.overwrite = true;
  const std::string printed = printed_by(options, [&](const TrainerOptions& o) {
    Trainer(trajectory_config(dir.path(), {"train.steps=2"}), o).run();
  });
  EXPECT_NE(printed.find("warning: --overwrite: " + dir.path() + " holds an earlier run"),
            std::string::npos)
      << printed;
  EXPECT_EQ(metrics_lines(), 2);
  EXPECT_FALSE(fs::exists(dir.sub("checkpoints/step-00000003")));  // the earlier run's, deleted
  std::ofstream(dir.sub("a_file")) << "x";
  EXPECT_ERROR_CONTAINS(
      Trainer(trajectory_config(dir.sub("a_file")), options),
      "output directory '" + dir.sub("a_file") + "' exists and is not a directory");
}

TEST(TrainerOutputs, MetricsConfigCheckpointsAndHfExportAreWritten) {
  TempDir dir("outputs");
  TrainerOptions options = quiet();
  options.export_hf = true;
  Trainer trainer(
      trajectory_config(dir.path(), {"train.steps=4", "train.log_interval=3",
                                     "train.checkpoint_interval=2", "train.eval_interval=4"}),
      options);
  trainer.run();

  // Logged: the first step, every log_interval-th, the last.
  std::ifstream in(dir.sub("metrics.jsonl"));
  std::string line;
  std::vector<int64_t> logged;
  while (std::getline(in, line)) {
    const json::Value record = json::parse(line);
    for (const char* key : {"step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"}) {
      EXPECT_TRUE(record.contains(key)) << key << " missing in " << line;
    }
    EXPECT_TRUE(std::isfinite(record.get<double>("loss")));
    EXPECT_GT(record.get<double>("tokens_per_s"), 0.0);
    logged.push_back(record.get<int64_t>("step"));
    if (record.get<int64_t>("step") == 4) {
      EXPECT_TRUE(record.contains("eval_loss"));
    }
  }
  EXPECT_EQ(logged, (std::vector<int64_t>{1, 3, 4}));
  // The step-1 record's loss is that step's loss; step 3's averages steps 2 and 3.
  std::ifstream again(dir.sub("metrics.jsonl"));
  std::getline(again, line);
  EXPECT_EQ(json::parse(line).get<double>("loss"), trainer.history()[0].loss);
  std::getline(again, line);
  EXPECT_DOUBLE_EQ(json::parse(line).get<double>("loss"),
                   (trainer.history()[1].loss + trainer.history()[2].loss) / 2);

  // config.yaml parses back to the resolved config.
  const Config saved = parse_config(read_text(dir.sub("config.yaml")));
  EXPECT_EQ(config_to_yaml(saved), config_to_yaml(trainer.config()));

  // Checkpoints at steps 2 and 4; latest is step 4.
  EXPECT_TRUE(fs::is_directory(dir.sub("checkpoints/step-00000002")));
  const auto latest = latest_training_checkpoint(dir.path());
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(fs::path(*latest).filename().string(), "step-00000004");

  // OUT/hf reloads to the trained weights.
  const auto reloaded = load_hf_model(dir.sub("hf"));
  const auto a = weights_of(trainer.model()), b = weights_of(*reloaded);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(a[i].second == b[i].second) << a[i].first;
  }
}

TEST(TrainerOutputs, ANonFiniteLossStopsNamingTheStepAndKeepsTheLastGoodCheckpoint) {
  TempDir dir("nonfinite");
  // An absurd rate sends the weights to ~1e30 after one update; the logits overflow.
  Trainer trainer(trajectory_config(
                      dir.path(), {"optimizer.params.lr=1e35", "scheduler=", "gradient_clipping=0",
                                   "train.checkpoint_interval=1"}),
                  quiet());
  const std::string message = testing::error_message([&] { trainer.run(); });
  EXPECT_NE(message.find("step 2: the "), std::string::npos) << message;
  EXPECT_NE(message.find("stopping before the update"), std::string::npos) << message;
  EXPECT_EQ(trainer.current_step(), 1);
  const auto latest = latest_training_checkpoint(dir.path());
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(fs::path(*latest).filename().string(), "step-00000001");
  EXPECT_FALSE(fs::exists(dir.sub("checkpoints/step-00000002")));
}

// ---- errors before training -----------------------------------------------------------------

TEST(TrainerErrors, AMisspelledConfigKeyNamesTheLineAndTheClosestKey) {
  TempDir dir("typo");
  const std::string path = dir.sub("typo.yaml");
  std::ofstream(path) << read_text(kTrajectoryDir + "/train.yaml") << "gradient_cliping: 1.0\n";
  EXPECT_ERROR_CONTAINS(load_config_file(path), "unknown key 'gradient_cliping'");
  EXPECT_ERROR_CONTAINS(load_config_file(path), "gradient_clipping");
  EXPECT_ERROR_CONTAINS(load_config_file(path), path + " line ");
}

TEST(TrainerErrors, AValueOfTheWrongTypeNamesTheKey) {
  TempDir dir("type");
  EXPECT_ERROR_CONTAINS(trajectory_config(dir.path(), {"train.steps=ten"}), "train.steps");
}

// A bad model field given with --set is blamed on the --set, not on the file's model section.
TEST(TrainerErrors, ABadModelFieldFromSetNamesTheSet) {
  const std::string yaml =
      "train_micro_batch_size_per_gpu: 1\n"
      "model:\n  model_type: llama\n  vocab_size: 64\n  hidden_size: 16\n"
      "  intermediate_size: 32\n  num_hidden_layers: 1\n  num_attention_heads: 2\n"
      "data: {type: synthetic, seq_len: 8}\ntrain: {steps: 1}\n";
  ConfigLoadOptions options;
  options.overrides = {"model.rope_theta=abc"};
  EXPECT_ERROR_CONTAINS(resolve_model_source(parse_config(yaml, options, "m.yaml").model),
                        "--set model.rope_theta: model: model config: 'rope_theta' must be a "
                        "finite number, got 'abc'");
  // Written in the file, the same value is blamed on the model section's line.
  std::string with_theta = yaml;
  with_theta.insert(with_theta.find("  intermediate_size"), "  rope_theta: abc\n");
  EXPECT_ERROR_CONTAINS(resolve_model_source(parse_config(with_theta, {}, "m.yaml").model),
                        "m.yaml line 2: model: model config: 'rope_theta' must be a finite number");
}

TEST(TrainerErrors, AnUnknownModelFieldNamesTheKeyAndTheSection) {
  TempDir dir("model_key");
  const Config config = parse_config(
      "train_micro_batch_size_per_gpu: 1\n"
      "model:\n  model_type: llama\n  vocab_size: 64\n  hidden_size: 16\n"
      "  intermediate_size: 32\n  num_hidden_layers: 1\n  num_attention_heads: 2\n"
      "  hidden_sise: 16\n"
      "data: {type: synthetic, seq_len: 8}\n"
      "train: {steps: 1, out_dir: " +
          dir.path() + "}\n",
      {}, "model.yaml");
  EXPECT_ERROR_CONTAINS(Trainer(config, quiet()), "unknown key 'hidden_sise'");
  EXPECT_ERROR_CONTAINS(Trainer(config, quiet()), "model.yaml line 2");
}

TEST(TrainerErrors, ModelPathWithInlineFieldsIsAnError) {
  TempDir dir("model_both");
  EXPECT_ERROR_CONTAINS(Trainer(trajectory_config(dir.path(), {"model.hidden_size=32"}), quiet()),
                        "give either 'path' or inline config.json fields, not both");
}

// A model directory whose weights autotp cannot read (shards without their index) is an
// error, never a run from the seed's random weights; without weight files it is the seed.
TEST(TrainerErrors, AModelDirectoryWithUnreadableWeightsIsAnError) {
  TempDir dir("unreadable_weights");
  const std::string model = dir.sub("model");
  fs::create_directories(model);
  fs::copy_file(kTrajectoryDir + "/config.json", model + "/config.json");
  ConfigLoadOptions options;
  options.overrides = {"model.path=" + model};
  const std::string yaml =
      "train_micro_batch_size_per_gpu: 1\ndata: {seq_len: 8}\n"
      "train: {steps: 1}\nmodel: {path: x}\n";
  EXPECT_EQ(resolve_model_source(parse_config(yaml, options, "m.yaml").model).description,
            "path " + model + " (config.json only: weights from the seed)");
  fs::copy_file(kTrajectoryDir + "/model.safetensors", model + "/model-00001-of-00002.safetensors");
  std::ofstream(model + "/pytorch_model.bin") << "x";
  std::ofstream(model + "/training_args.bin") << "x";  // not weights: not listed
  EXPECT_ERROR_CONTAINS(resolve_model_source(parse_config(yaml, options, "m.yaml").model),
                        "model.path '" + model +
                            "' holds weights autotp cannot read (model-00001-of-00002.safetensors, "
                            "pytorch_model.bin)");
}

// A model whose sliding window is shorter than the sequence is refused before it is built (the
// forward would refuse it at the first step).
TEST(TrainerErrors, ASequenceBeyondTheSlidingWindowIsAnErrorBeforeTheModelIsBuilt) {
  TempDir dir("window");
  const Config config = parse_config(
      "train_micro_batch_size_per_gpu: 1\n"
      "model:\n  model_type: mistral\n  vocab_size: 64\n  hidden_size: 16\n"
      "  intermediate_size: 32\n  num_hidden_layers: 1\n  num_attention_heads: 2\n"
      "  sliding_window: 8\n"
      "data: {type: synthetic, seq_len: 16}\n"
      "train: {steps: 1, out_dir: " +
          dir.path() + "}\n",
      {}, "window.yaml");
  EXPECT_ERROR_CONTAINS(Trainer(config, quiet()),
                        "data: seq_len 16 exceeds the model's sliding_window 8");
}

TEST(TrainerErrors, ATokenFileWhoseSizeIsNotAMultipleOfTheWidthIsAnError) {
  TempDir dir("bad_tokens");
  const std::string tokens = dir.sub("odd.bin");
  std::ofstream(tokens, std::ios::binary) << std::string(101, '\1');
  EXPECT_ERROR_CONTAINS(Trainer(trajectory_config(dir.path(), {"data.path=" + tokens}), quiet()),
                        "has 101 bytes, not a multiple of the token width 2");
}

TEST(TrainerErrors, TokensBeyondTheModelVocabularyAreAnError) {
  TempDir dir("vocab");
  EXPECT_ERROR_CONTAINS(Trainer(trajectory_config(dir.path(), {"data.vocab_size=100"}), quiet()),
                        "data: vocab_size 100 exceeds the model's vocab_size 64");
}

TEST(TrainerErrors, TensorParallelismIsRefusedOnOneProcess) {
  TempDir dir("tp");
  EXPECT_ERROR_CONTAINS(
      Trainer(trajectory_config(dir.path(), {"tensor_parallel.autotp_size=2"}), quiet()),
      "tensor_parallel.autotp_size is 2");
}

// ---- loss and evaluation --------------------------------------------------------------------

TEST(TrainerLoss, NextTokenLossIsTheMeanCrossEntropyWithoutAShift) {
  // logits [1, 2, 3]: row 0 = (0, 0, ln 2) with label 2, row 1 = (1, 1, 1) with label 0.
  const Tensor logits = Tensor::from_vector({0, 0, std::log(2.0), 1, 1, 1}, {1, 2, 3}, DType::F64);
  const Tensor labels = Tensor::from_vector_i64({2, 0}, {1, 2});
  const double expected = (-std::log(2.0 / 4.0) - std::log(1.0 / 3.0)) / 2.0;
  EXPECT_NEAR(next_token_loss(logits, labels).item(), expected, 1e-15);
}

TEST(TrainerLoss, EvaluateAveragesTheBatchLosses) {
  TempDir dir("evaluate");
  Trainer trainer(trajectory_config(dir.path()), quiet(DType::F64));
  const EvalResult r = evaluate(trainer.model(), trainer.data(), 3);
  double sum = 0.0;
  for (int64_t i = 0; i < 3; ++i) {
    const Batch b = trainer.data().batch(i, 0);
    sum += next_token_loss(trainer.model().forward(b.input_ids), b.labels).item();
  }
  EXPECT_NEAR(r.loss, sum / 3, 1e-14);
  EXPECT_NEAR(r.perplexity, std::exp(sum / 3), 1e-12);
  EXPECT_EQ(r.tokens, 3 * 2 * 16);
  EXPECT_TRUE(trainer.model().is_training());
}

// ---- the shipped configs --------------------------------------------------------------------

const std::string kConfigsDir = std::string(AUTOTP_TEST_DATA_DIR) + "/../../configs";

TEST(ShippedConfigs, EveryConfigParsesAndNamesAModel) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator(kConfigsDir)) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    const Config config = load_config_file(entry.path().string());
    EXPECT_TRUE(config.warnings.empty()) << config.warnings.front();
    const ModelSource source = resolve_model_source(config.model);
    EXPECT_GT(source.config.num_hidden_layers, 0);
    ++count;
  }
  EXPECT_GE(count, 3);
}

TEST(ShippedConfigs, TheGpuConfigsHaveTheRealLlamaShapes) {
  const Config small = load_config_file(kConfigsDir + "/llama-3.2-1b.yaml");
  const ModelConfig m1 = resolve_model_source(small.model).config;
  EXPECT_EQ(m1.hidden_size, 2048);
  EXPECT_EQ(m1.num_hidden_layers, 16);
  EXPECT_EQ(m1.vocab_size, 128256);
  EXPECT_EQ(m1.rope_scaling.rope_type, "llama3");
  EXPECT_TRUE(m1.tie_word_embeddings);
  EXPECT_TRUE(small.bf16);
  EXPECT_EQ(small.tensor_parallel.autotp_size, 1);
  const Config big = load_config_file(kConfigsDir + "/llama-3-8b.yaml");
  const ModelConfig m8 = resolve_model_source(big.model).config;
  EXPECT_EQ(m8.hidden_size, 4096);
  EXPECT_EQ(m8.intermediate_size, 14336);
  EXPECT_EQ(m8.num_hidden_layers, 32);
  EXPECT_EQ(m8.num_key_value_heads, 8);
  EXPECT_TRUE(big.bf16);
  EXPECT_EQ(big.tensor_parallel.autotp_size, 8);
}

// The quick start's toy starts near the uniform loss ln 256 (its falling loss is checked by
// the cli.tiny_llama_trains test, which runs `autotp train` on it for 40 steps).
TEST(ShippedConfigs, TinyLlamaTrainsOnTheEmbeddedCorpusFromTheUniformLoss) {
  TempDir dir("tiny");
  ConfigLoadOptions options;
  options.overrides = {"train.out_dir=" + dir.path()};
  Trainer trainer(load_config_file(kConfigsDir + "/tiny-llama.yaml", options), quiet());
  EXPECT_NE(trainer.data().source().describe().find("embedded corpus"), std::string::npos);
  EXPECT_NEAR(trainer.step().loss, std::log(256.0), 0.1);
}

// ---- the embedded corpus ----------------------------------------------------------------------

TEST(EmbeddedCorpus, IsTwentyToFortyKilobytesOfPrintableAscii) {
  const std::string_view text = embedded_corpus();
  EXPECT_GE(text.size(), 20u * 1024);
  EXPECT_LE(text.size(), 40u * 1024);
  for (char c : text) {
    ASSERT_TRUE(c == '\n' || (c >= 32 && c < 127)) << "byte " << static_cast<int>(c);
  }
}

TEST(EmbeddedCorpus, IsTheSourceOfTextDataWithoutAPath) {
  DataConfig data;
  data.type = DataSourceType::Text;
  data.seq_len = 32;
  data.seed = 3;
  const auto source = make_token_source(data);
  EXPECT_NE(source->describe().find("embedded corpus"), std::string::npos);
  std::vector<int64_t> window(33);
  source->sample(0, 33, window.data());
  EXPECT_NE(embedded_corpus().find(byte_detokenize(window)), std::string_view::npos);
}

}  // namespace
}  // namespace autotp
