// Work: the handle of an asynchronous collective. wait() blocks until the collective is done
// and its output is in place; the destructor waits too, so buffers never outlive a transfer.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace autotp {

class Work {
 public:
  // `wait_fn` blocks until the backend transfer completes (it enforces the timeout); `result`
  // is the collective's output (the buffer itself for in-place collectives).
  Work(std::string description, std::function<void()> wait_fn, Tensor result);
  // A collective that has already completed.
  static std::shared_ptr<Work> completed(std::string description, Tensor result);
  // Waits when wait() was never called: a transfer must finish before its buffers are freed.
  // An error there cannot be thrown from a destructor; it is printed instead.
  ~Work();
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  // Blocks until done, then runs the continuations (copy-back, rearrangement). Idempotent; an
  // error is rethrown by every later call.
  void wait();
  bool is_completed() const { return done_; }
  // The output; call wait() first.
  const Tensor& result() const;
  const std::string& description() const { return description_; }

  // Internal: `fn` runs after the transfer completes, before wait() returns (in order added).
  void then(std::function<void()> fn);
  // Internal: replaces the output the caller will see.
  void set_result(Tensor result) { result_ = std::move(result); }

 private:
  std::string description_;
  std::function<void()> wait_fn_;
  std::vector<std::function<void()>> continuations_;
  Tensor result_;
  bool done_ = false;
  std::string error_;  // set when wait() failed
};

using WorkHandle = std::shared_ptr<Work>;

}  // namespace autotp
