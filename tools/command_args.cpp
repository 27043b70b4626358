// ArgWalker: option values and integers for the subcommand parsers.
#include "tools/command_args.h"

#include <cstdlib>

#include "core/error.h"

namespace autotp::tools {

int64_t launched_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* value = std::getenv(name)) {
      char* end = nullptr;
      const long long n = std::strtoll(value, &end, 10);
      if (end != value && *end == '\0' && n >= 1) return n;
    }
  }
  return 1;
}

void check_single_process(const char* command) {
  const int64_t world = launched_world_size();
  AUTOTP_CHECK(world == 1,
               "{}: runs as one process, but the launcher started {}: each would repeat the "
               "whole command (run it without mpirun; only train uses several ranks)",
               command, world);
}

std::optional<std::string> ArgWalker::take_value(const std::string& option) {
  const std::string& arg = args_[i_];
  if (arg == option) {
    if (!has_next()) fail(option + " needs a value");
    ++i_;
    return args_[i_];
  }
  if (arg.rfind(option + "=", 0) == 0) return arg.substr(option.size() + 1);
  return std::nullopt;
}

int64_t ArgWalker::parse_int(const std::string& option, const std::string& value,
                             int64_t min) const {
  size_t used = 0;
  int64_t parsed = 0;
  try {
    parsed = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (value.empty() || used != value.size() || parsed < min) {
    fail(fmt::format("{} expects an integer >= {}, got '{}'", option, min, value));
  }
  return parsed;
}

void ArgWalker::fail(const std::string& message) const {
  AUTOTP_FAIL("{}: {}\nusage: {}", command_, message, usage_);
}

}  // namespace autotp::tools
