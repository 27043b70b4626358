// ArgWalker: option values and integers for the subcommand parsers.
#include "tools/command_args.h"

#include "core/error.h"

namespace autotp::tools {

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
