// `autotp eval`: argument parsing, finding the model (HF directory, training checkpoint, run
// directory or the config's model section), the evaluation stream, and the report.
#include "tools/eval_command.h"

#include <cstdio>
#include <filesystem>
#include <memory>

#include "core/error.h"
#include "core/io/json.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/distributed_checkpoint.h"
#include "engine/evaluate.h"
#include "engine/model_source.h"
#include "engine/optimizer.h"
#include "engine/trainer.h"
#include "models/registry.h"
#include "tools/command_args.h"
#include "tools/config_notes.h"

namespace autotp::tools {

const char* const kEvalUsage =
    "autotp eval CONFIG.yaml [--model DIR] [--data FILE] [--batches N] [--set key.path=value ...]";

namespace {

namespace fs = std::filesystem;

struct LoadedModel {
  std::shared_ptr<CausalLM> model;
  std::string description;
};

// A training checkpoint's weights in the model the config describes.
LoadedModel load_checkpoint_model(const std::string& dir, const Config& config) {
  const ModelSource source = resolve_model_source(config.model);
  std::shared_ptr<CausalLM> model = create_model_uninitialized(source.config);
  const TrainingState state = load_checkpoint_weights(dir, *model);  // no optimizer state
  return {model, fmt::format("training checkpoint {} (step {})", dir, state.step)};
}

LoadedModel load_model(const std::string& dir, const Config& config) {
  if (dir.empty()) {
    const ModelSource source = resolve_model_source(config.model);
    return {build_model(source, config.train.seed, DType::F32),
            source.weights_dir.empty()
                ? source.description + ", untrained (give --model DIR for trained weights)"
                : source.description};
  }
  const fs::path p(dir);
  AUTOTP_CHECK(fs::is_directory(p), "eval: --model '{}' is not a directory", dir);
  // A training checkpoint first: one saved under tensor parallelism has a config.json but its
  // weights are TP shards.
  if (fs::is_regular_file(p / "state.json")) return load_checkpoint_model(dir, config);
  if (fs::is_regular_file(p / "config.json")) {
    return {load_hf_model(dir), fmt::format("Hugging Face directory {}", dir)};
  }
  if (fs::is_regular_file(p / "hf" / "config.json")) {
    return {load_hf_model((p / "hf").string()),
            fmt::format("Hugging Face directory {}", (p / "hf").string())};
  }
  if (const auto latest = latest_training_checkpoint(dir)) {
    return load_checkpoint_model(*latest, config);
  }
  AUTOTP_FAIL(
      "eval: --model '{}' holds no model: expected a Hugging Face directory "
      "(config.json + safetensors), a training checkpoint (state.json) or a run "
      "directory (hf/ or checkpoints/latest)",
      dir);
}

}  // namespace

EvalArgs parse_eval_args(const std::vector<std::string>& args) {
  EvalArgs a;
  ArgWalker w(args, "eval", kEvalUsage);
  for (; !w.done(); w.advance()) {
    const std::string& arg = w.current();
    if (auto v = w.take_value("--set")) {
      if (v->find('=') == std::string::npos) {
        w.fail(fmt::format("--set expects key.path=value, got '{}'", *v));
      }
      a.overrides.push_back(*v);
    } else if (auto m = w.take_value("--model")) {
      if (m->empty()) w.fail("--model needs a directory");
      a.model_dir = *m;
    } else if (auto d = w.take_value("--data")) {
      if (d->empty()) w.fail("--data needs a file");
      a.data_path = *d;
    } else if (auto b = w.take_value("--batches")) {
      a.batches = w.parse_int("--batches", *b, 1);
    } else if (arg.rfind("-", 0) == 0) {
      w.fail(fmt::format("unknown option '{}'", arg));
    } else if (a.config_path.empty()) {
      a.config_path = arg;
    } else {
      w.fail(fmt::format("one config file expected, got '{}' and '{}'", a.config_path, arg));
    }
  }
  if (a.config_path.empty()) w.fail("missing CONFIG.yaml");
  return a;
}

int run_eval(const std::vector<std::string>& args) {
  const EvalArgs a = parse_eval_args(args);
  check_single_process("eval");
  ConfigLoadOptions load;
  load.overrides = a.overrides;
  const Config config = load_config_file(a.config_path, load);
  print_config_warnings(config, "eval");
  note_unsharded_run(config, "eval");
  DataConfig data = config.data;
  if (!a.data_path.empty()) {
    // The file replaces data.path; with synthetic data the extension picks the type.
    data.path = a.data_path;
    if (data.type == DataSourceType::Synthetic) {
      const std::string ext = fs::path(a.data_path).extension().string();
      data.type = ext == ".bin" ? DataSourceType::Tokens : DataSourceType::Text;
    }
  }
  const LoadedModel loaded = load_model(a.model_dir, config);
  data = resolve_data_config(data, loaded.model->config());
  data.seed += kEvalSeedOffset;
  auto source = std::shared_ptr<const TokenSource>(make_token_source(data));
  DataLayout layout;
  layout.micro_batch = config.batch.micro_batch_per_gpu;
  const DataLoader loader(source, data.seq_len, layout);
  const EvalResult r = evaluate(*loaded.model, loader, a.batches);

  std::printf("eval: model %s\n", loaded.description.c_str());
  std::printf("eval: data %s, %lld batches x %lld rows x %lld tokens (seed %llu)\n",
              source->describe().c_str(), static_cast<long long>(r.batches),
              static_cast<long long>(layout.micro_batch), static_cast<long long>(data.seq_len),
              static_cast<unsigned long long>(data.seed));
  std::printf("loss %.4f | perplexity %.2f\n", r.loss, r.perplexity);
  json::Value record = json::Value::object();
  record.set("loss", r.loss)
      .set("perplexity", r.perplexity)
      .set("batches", r.batches)
      .set("tokens", r.tokens)
      .set("model", loaded.description)
      .set("data", source->describe());
  std::printf("%s\n", record.dump().c_str());
  return 0;
}

}  // namespace autotp::tools
