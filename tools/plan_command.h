// `autotp plan CONFIG.yaml [--tp N] [--json] [--set key=value ...]`: the tensor-parallel plan
// of a config's model without training or allocating it.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace autotp::tools {

extern const char* const kPlanUsage;

// Prints the plan (text, or one JSON document with --json) to `out`. Returns 0 for a valid
// plan and 1 for an invalid one (its errors, with their fixes, are in the output); a bad
// command line, config or model section throws autotp::Error.
int run_plan_command(const std::vector<std::string>& args, std::FILE* out = stdout);

}  // namespace autotp::tools
