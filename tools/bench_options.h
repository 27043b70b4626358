// What `autotp bench` and `autotp bench-ops` share: their command line (CONFIG.yaml, a count
// of timed runs, warm-up, JSON file, device, dtype, --set overrides), the device and dtype
// they resolve to, wall-clock timing helpers and the JSON report file.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"

namespace autotp::tools {

struct BenchOptions {
  std::string config_path;
  int64_t count = 10;  // timed steps (--steps) or iterations (--iters)
  int64_t warmup = 3;
  std::string json_path;
  std::string device;  // empty: cuda when available, else cpu
  std::string dtype;   // empty: the command's default
  std::vector<std::string> overrides;
  int64_t kernel_steps = 0;  // --kernels N: N extra steps under the kernel profiler (bench)
};

// Parses `command`'s arguments; `count_flag` names the count option ("--steps", "--iters").
BenchOptions parse_bench_options(const std::vector<std::string>& args, const char* command,
                                 const char* usage, const char* count_flag, int64_t count,
                                 int64_t warmup);

// The device the options ask for (CUDA by default when one is visible); an error names the
// command when CUDA is asked for and missing.
Device bench_device(const BenchOptions& options, const char* command);

// bf16 or f32: --dtype, else bf16 where `bf16_by_default`; bf16 needs CUDA (the CPU kernels
// compute in f32).
DType bench_dtype(const BenchOptions& options, const Device& device, bool bf16_by_default,
                  const char* command);

using BenchClock = std::chrono::steady_clock;
double ms_since(BenchClock::time_point t0);
double mean_of(const std::vector<double>& values);

// Prints the one-line JSON report and writes it to options.json_path when given.
void emit_json_report(const std::string& text, const BenchOptions& options, const char* command);

}  // namespace autotp::tools
