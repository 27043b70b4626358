// Subcommand table for the autotp command line.
#include "tools/commands.h"

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "tools/bench_command.h"
#include "tools/bench_ops_command.h"
#include "tools/demo.h"
#include "tools/eval_command.h"
#include "tools/export_command.h"
#include "tools/plan_command.h"
#include "tools/train_command.h"

namespace autotp::tools {

namespace {
void print_usage() {
  std::printf(
      "usage: autotp <command> [options]\n"
      "commands:\n"
      "  train    train a model from a YAML config (metrics, checkpoints, Hugging Face export)\n"
      "             %s\n"
      "  eval     mean loss and perplexity of a trained model on the config's data\n"
      "             %s\n"
      "  export   a training checkpoint of any TP x DP x ZeRO layout as one Hugging Face\n"
      "           model directory\n"
      "             %s\n"
      "  bench    training throughput, MFU and peak memory on synthetic tokens (JSON too)\n"
      "             %s\n"
      "  bench-ops  the step's kernels one at a time at the config's shapes: TFLOP/s or GB/s\n"
      "           against the device's peak (JSON too)\n"
      "             %s\n"
      "  plan     the AutoTP sharding plan of a config: rule, partition and shard shapes per\n"
      "           Linear, per-rank memory (--tp N, --json)\n"
      "  demo     train a small byte-level MLP language model with the autograd engine\n"
      "  version  print the version\n"
      "  help     print this list\n"
      "example: autotp train configs/tiny-llama.yaml --out runs/quickstart\n",
      kTrainUsage, kEvalUsage, kExportUsage, kBenchUsage, kBenchOpsUsage);
}
}  // namespace

int run_command_line(int argc, char** argv) {
  if (argc < 2) {
    print_usage();
    return 1;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  // `autotp COMMAND --help` (or -h) prints the command's usage.
  const std::vector<std::pair<std::string, const char*>> usages = {
      {"train", kTrainUsage}, {"eval", kEvalUsage},          {"export", kExportUsage},
      {"bench", kBenchUsage}, {"bench-ops", kBenchOpsUsage}, {"plan", kPlanUsage},
      {"demo", kDemoUsage}};
  for (const auto& [name, usage] : usages) {
    if (name != command) continue;
    for (const std::string& arg : args) {
      if (arg == "--help" || arg == "-h") {
        std::printf("usage: %s\n(every command and what it does: autotp help)\n", usage);
        return 0;
      }
    }
  }
  if (command == "train") return run_train(args);
  if (command == "eval") return run_eval(args);
  if (command == "export") return run_export(args);
  if (command == "bench") return run_bench(args);
  if (command == "bench-ops") return run_bench_ops(args);
  if (command == "demo") return run_demo(args);
  if (command == "plan") return run_plan_command(args);
  if (command == "version") {
    std::printf("autotp 0.1.0\n");
    return 0;
  }
  if (command == "help" || command == "--help" || command == "-h") {
    print_usage();
    return 0;
  }
  AUTOTP_FAIL("unknown command '{}'; run 'autotp help' for the list", command);
}

}  // namespace autotp::tools
