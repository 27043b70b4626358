// The bookkeeping of a GEMM autotune (kernels.gemm_autotune): which of one GEMM shape's
// candidate algorithms (cuBLASLt's heuristic list, its first pick at index 0) to run next while
// each is timed a few times, and which to keep once every timing is in. Host code without CUDA
// types, so the decision rules are tested on the CPU; kernels/cuda/gemm.cu times the runs with
// CUDA events and reports them here when they have finished (never waiting for them).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace autotp::kernels {

// What the GEMM autotune of a context found (kernels/cuda/gemm.h, GemmContext::set_autotune): the
// shapes whose search is over, how many of them now run another algorithm than cuBLASLt's heuristic
// picks first, and the sum over those shapes of one call's best time with the heuristic's pick and
// with the one kept (so heuristic_ms - chosen_ms is what one call of each shape gains).
struct GemmAutotuneReport {
  int64_t shapes_searched = 0;
  int64_t shapes_changed = 0;
  int64_t shapes_searching = 0;  // searches still running (timings owed or not yet read)
  int64_t candidates_timed = 0;  // over the finished searches
  double heuristic_ms = 0.0;
  double chosen_ms = 0.0;
};

class GemmAlgorithmSearch {
 public:
  // A candidate replaces the best so far only when it is faster by more than this fraction:
  // timing noise then leaves the heuristic's pick in place (and runs repeatable).
  static constexpr double kRequiredGain = 0.01;

  // `candidates` >= 1 algorithms, each to be timed `timings_each` >= 1 times.
  GemmAlgorithmSearch(int candidates, int timings_each);

  // The next candidate owed a timing (round robin: every candidate once before any twice),
  // counted as started; none once every timing has been started.
  std::optional<int> start_next_timing();
  // A started timing of `candidate` finished in `milliseconds`.
  void record(int candidate, double milliseconds);
  // `candidate` (not 0, the heuristic's pick) failed to run: never chosen, owed nothing more;
  // a started timing of it that will not finish is given up with `started_timings_lost`.
  void exclude(int candidate, int started_timings_lost);
  // A started timing that will not finish (its run or its events failed, the error goes on
  // to the caller): no longer waited for, so the search can still end.
  void abandon_timing();

  // Every round of timings handed out: start_next_timing() has nothing more. (While false it
  // may still find nothing, when only excluded candidates are left; that call ends the rounds.)
  bool all_started() const { return started_rounds_ == timings_each_; }
  // Every timing started and recorded (or given up with its candidate).
  bool decided() const;
  // The fastest candidate by its best timing, the heuristic's pick (0) unless another beats
  // the best before it by more than kRequiredGain; only when decided().
  int chosen() const;
  // The best timing of `candidate` (ms), or none if it has none (excluded).
  std::optional<double> best_time(int candidate) const;

  int candidates() const { return static_cast<int>(best_.size()); }

 private:
  int timings_each_;
  int started_rounds_ = 0;  // full rounds of start_next_timing() over the candidates
  int next_in_round_ = 0;   // the candidate the current round reaches next
  int in_flight_ = 0;       // started, not yet recorded or given up
  std::vector<bool> excluded_;
  std::vector<std::optional<double>> best_;
};

}  // namespace autotp::kernels
