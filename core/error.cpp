// Builds the exception messages for AUTOTP_CHECK / AUTOTP_ASSERT.
#include "core/error.h"

namespace autotp::detail {

void throw_error(const char* /*file*/, int /*line*/, const std::string& message) {
  // User errors carry no source location: the message itself names the offending input.
  throw Error(message);
}

void throw_internal(const char* file, int line, const char* condition, const std::string& message) {
  throw InternalError(
      fmt::format("autotp internal error (a bug, please report it) at {}:{}: "
                  "'{}' failed: {}",
                  file, line, condition, message));
}

}  // namespace autotp::detail
