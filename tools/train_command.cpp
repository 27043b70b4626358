// `autotp train`: argument parsing, config loading with --set overrides, the Trainer's run.
#include "tools/train_command.h"

#include <filesystem>

#include "core/error.h"
#include "engine/config.h"
#include "engine/trainer.h"
#include "tools/command_args.h"

namespace autotp::tools {

const char* const kTrainUsage =
    "autotp train CONFIG.yaml [--set key.path=value ...] [--out DIR] [--resume [DIR]]";

namespace {

bool is_yaml_name(const std::string& name) {
  const std::string ext = std::filesystem::path(name).extension().string();
  return ext == ".yaml" || ext == ".yml";
}

}  // namespace

TrainArgs parse_train_args(const std::vector<std::string>& args) {
  TrainArgs a;
  ArgWalker w(args, "train", kTrainUsage);
  for (; !w.done(); w.advance()) {
    const std::string& arg = w.current();
    if (auto v = w.take_value("--set")) {
      if (v->find('=') == std::string::npos) {
        w.fail(fmt::format("--set expects key.path=value, got '{}'", *v));
      }
      a.overrides.push_back(*v);
    } else if (auto out = w.take_value("--out")) {
      if (out->empty()) w.fail("--out needs a directory");
      a.out_dir = *out;
    } else if (arg == "--resume") {
      a.resume = true;
      // An optional directory: the next argument unless it is an option or a YAML file.
      if (w.has_next() && w.next().rfind("-", 0) != 0 && !is_yaml_name(w.next())) {
        w.advance();
        a.resume_dir = w.current();
      }
    } else if (arg.rfind("--resume=", 0) == 0) {
      a.resume = true;
      a.resume_dir = arg.substr(9);
      if (a.resume_dir.empty()) w.fail("--resume= needs a directory");
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

int run_train(const std::vector<std::string>& args) {
  const TrainArgs a = parse_train_args(args);
  ConfigLoadOptions load;
  load.overrides = a.overrides;
  Config config = load_config_file(a.config_path, load);
  TrainerOptions options;
  options.out_dir = a.out_dir;
  options.resume = a.resume;
  options.resume_dir = a.resume_dir;
  if (a.resume && !a.resume_dir.empty() && a.out_dir.empty()) {
    options.out_dir = a.resume_dir;  // continue writing where the run lives
  }
  Trainer trainer(std::move(config), options);
  trainer.run();
  return 0;
}

}  // namespace autotp::tools
