// Error reporting: user errors (bad input, shapes, files) throw autotp::Error with a
// message naming what is wrong; broken invariants throw autotp::InternalError ("bug").
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace autotp {

// Thrown for bad input: a wrong shape, dtype, key or file. The message says what was expected.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown when an internal invariant breaks: always a bug in autotp, never the user's input.
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

namespace detail {
[[noreturn]] void throw_error(const char* file, int line, const std::string& message);
[[noreturn]] void throw_internal(const char* file, int line, const char* condition,
                                 const std::string& message);
}  // namespace detail

}  // namespace autotp

// AUTOTP_CHECK(cond, "fmt {}", args...): user-facing precondition, throws autotp::Error.
#define AUTOTP_CHECK(cond, ...)                                                    \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      ::autotp::detail::throw_error(__FILE__, __LINE__, fmt::format(__VA_ARGS__)); \
    }                                                                              \
  } while (0)

// AUTOTP_FAIL("fmt {}", args...): unconditional user-facing error.
#define AUTOTP_FAIL(...) ::autotp::detail::throw_error(__FILE__, __LINE__, fmt::format(__VA_ARGS__))

// AUTOTP_ASSERT(cond, "fmt", args...): internal invariant (kept in release builds).
#define AUTOTP_ASSERT(cond, ...)                                                             \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      ::autotp::detail::throw_internal(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
    }                                                                                        \
  } while (0)
