// Command line, device/dtype resolution, timing and the JSON report of the bench commands.
#include "tools/bench_options.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "core/error.h"
#include "tools/command_args.h"

namespace autotp::tools {

BenchOptions parse_bench_options(const std::vector<std::string>& args, const char* command,
                                 const char* usage, const char* count_flag, int64_t count,
                                 int64_t warmup) {
  BenchOptions o;
  o.count = count;
  o.warmup = warmup;
  ArgWalker w(args, command, usage);
  for (; !w.done(); w.advance()) {
    const std::string& arg = w.current();
    if (auto v = w.take_value(count_flag)) {
      o.count = w.parse_int(count_flag, *v, 1);
    } else if (auto v = w.take_value("--warmup")) {
      o.warmup = w.parse_int("--warmup", *v, 0);
    } else if (auto v = w.take_value("--json")) {
      o.json_path = *v;
    } else if (auto v = w.take_value("--device")) {
      if (*v != "cpu" && *v != "cuda") w.fail(fmt::format("--device: '{}' is not cpu or cuda", *v));
      o.device = *v;
    } else if (auto v = w.take_value("--dtype")) {
      if (*v != "f32" && *v != "bf16") w.fail(fmt::format("--dtype: '{}' is not f32 or bf16", *v));
      o.dtype = *v;
    } else if (auto v = w.take_value("--kernels"); v && std::string(command) == "bench") {
      o.kernel_steps = w.parse_int("--kernels", *v, 1);
    } else if (auto v = w.take_value("--set")) {
      o.overrides.push_back(*v);
    } else if (!arg.empty() && arg[0] == '-') {
      w.fail(fmt::format("unknown option '{}'", arg));
    } else if (o.config_path.empty()) {
      o.config_path = arg;
    } else {
      w.fail(fmt::format("unexpected argument '{}'", arg));
    }
  }
  if (o.config_path.empty()) w.fail("a CONFIG.yaml is required");
  check_single_process(command);
  if (!o.json_path.empty()) {
    // Checked before the run: a report that cannot be written would waste the whole bench.
    namespace fs = std::filesystem;
    const fs::path path = fs::absolute(o.json_path);
    std::error_code ec;
    if (fs::is_directory(path, ec)) w.fail(fmt::format("--json '{}' is a directory", o.json_path));
    const fs::path folder = path.parent_path();
    if (!fs::is_directory(folder, ec) || ::access(folder.c_str(), W_OK) != 0) {
      w.fail(fmt::format("--json '{}': the folder '{}' does not exist or is not writable",
                         o.json_path, folder.string()));
    }
  }
  return o;
}

Device bench_device(const BenchOptions& options, const char* command) {
  const bool use_cuda = options.device == "cuda" || (options.device.empty() && cuda_available());
  AUTOTP_CHECK(!use_cuda || cuda_available(),
               "{}: --device cuda needs a GPU (cuda_available() is false{})", command,
               cuda_device_count() == 0 ? ": no visible device or a build without CUDA" : "");
  return use_cuda ? Device::cuda(0) : Device::cpu();
}

DType bench_dtype(const BenchOptions& options, const Device& device, bool bf16_by_default,
                  const char* command) {
  const bool bf16 = options.dtype == "bf16" || (options.dtype.empty() && bf16_by_default);
  AUTOTP_CHECK(!bf16 || device.is_cuda(), "{}: bf16 runs on CUDA only (CPU kernels compute in f32)",
               command);
  return bf16 ? DType::BF16 : DType::F32;
}

double ms_since(BenchClock::time_point t0) {
  return std::chrono::duration<double, std::milli>(BenchClock::now() - t0).count();
}

double mean_of(const std::vector<double>& values) {
  return values.empty() ? 0.0
                        : std::accumulate(values.begin(), values.end(), 0.0) /
                              static_cast<double>(values.size());
}

void emit_json_report(const std::string& text, const BenchOptions& options, const char* command) {
  std::printf("%s\n", text.c_str());
  if (options.json_path.empty()) return;
  std::ofstream f(options.json_path);
  AUTOTP_CHECK(f.good(), "{}: cannot write --json file '{}'", command, options.json_path);
  f << text << "\n";
}

}  // namespace autotp::tools
