// Helpers shared by the neural-network op tests: random inputs of a dtype and capturing the
// message of the autotp::Error an expression throws.
#pragma once

#include <string>

#include "core/random.h"
#include "core/tensor.h"
#include "tests/support/gradcheck.h"

namespace autotp::testing {

// Uniform values in [lo, hi) from `seed`, as `dtype`, not requiring grad.
inline Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype = DType::F64,
                            double lo = -1.0, double hi = 1.0) {
  return random_f64(shape, seed, /*requires_grad=*/false, lo, hi).to(dtype);
}

// The message of the autotp::Error that fn() throws, or "<no error>" when it returns.
template <typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace autotp::testing

// Expects `stmt` to throw autotp::Error whose message contains `needle`.
#define EXPECT_ERROR_CONTAINS(stmt, needle)                                                     \
  do {                                                                                          \
    const std::string autotp_msg_ = ::autotp::testing::error_message([&] { (void)(stmt); });    \
    EXPECT_NE(autotp_msg_.find(needle), std::string::npos)                                      \
        << "expected an autotp::Error mentioning \"" << (needle) << "\", got: " << autotp_msg_; \
  } while (0)
