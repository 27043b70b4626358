// Work: waiting on an asynchronous collective and running its continuations once.
#include "core/comm/work.h"

#include <cstdio>
#include <exception>

namespace autotp {

Work::Work(std::string description, std::function<void()> wait_fn, Tensor result)
    : description_(std::move(description)),
      wait_fn_(std::move(wait_fn)),
      result_(std::move(result)) {}

std::shared_ptr<Work> Work::completed(std::string description, Tensor result) {
  auto work = std::make_shared<Work>(std::move(description), nullptr, std::move(result));
  work->done_ = true;
  return work;
}

Work::~Work() {
  if (done_ || !error_.empty()) return;
  try {
    wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "autotp: %s failed while its handle was dropped unwaited: %s\n",
                 description_.c_str(), e.what());
  }
}

void Work::wait() {
  AUTOTP_CHECK(error_.empty(), "{} failed earlier: {}", description_, error_);
  if (done_) return;
  try {
    if (wait_fn_) wait_fn_();
    wait_fn_ = nullptr;
    for (auto& fn : continuations_)
      fn();
    continuations_.clear();
    done_ = true;
  } catch (const std::exception& e) {
    error_ = e.what();
    wait_fn_ = nullptr;
    continuations_.clear();
    throw;
  }
}

const Tensor& Work::result() const {
  AUTOTP_CHECK(done_, "{}: result() called before wait()", description_);
  return result_;
}

void Work::then(std::function<void()> fn) {
  AUTOTP_ASSERT(!done_, "continuation added to completed work {}", description_);
  continuations_.push_back(std::move(fn));
}

}  // namespace autotp
