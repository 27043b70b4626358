// Grad mode: the one documented piece of global (thread-local) state. While disabled, ops
// record no autograd graph. NoGradGuard disables it for a scope.
#pragma once

namespace autotp {

class GradMode {
 public:
  static bool enabled();
  static void set_enabled(bool enabled);
};

// Disables graph recording for its lifetime, restoring the previous mode afterwards.
class NoGradGuard {
 public:
  NoGradGuard() : previous_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace autotp
