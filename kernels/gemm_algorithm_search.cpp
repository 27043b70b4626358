// GemmAlgorithmSearch: round-robin timings over the candidates and the choice among them.
#include "kernels/gemm_algorithm_search.h"

#include <stdexcept>
#include <string>

namespace autotp::kernels {

namespace {

// A misuse of the search by its caller (gemm.cu): a bug, reported with what was asked.
void require(bool condition, const std::string& what) {
  if (!condition) throw std::logic_error("GEMM algorithm search: " + what);
}

}  // namespace

GemmAlgorithmSearch::GemmAlgorithmSearch(int candidates, int timings_each)
    : timings_each_(timings_each), excluded_(candidates, false), best_(candidates) {
  require(candidates >= 1 && timings_each >= 1, std::to_string(candidates) + " candidates timed " +
                                                    std::to_string(timings_each) + " times each");
}

std::optional<int> GemmAlgorithmSearch::start_next_timing() {
  while (started_rounds_ < timings_each_) {
    const int candidate = next_in_round_;
    if (++next_in_round_ == candidates()) {
      next_in_round_ = 0;
      ++started_rounds_;
    }
    if (excluded_[candidate]) continue;
    ++in_flight_;
    return candidate;
  }
  return std::nullopt;
}

void GemmAlgorithmSearch::record(int candidate, double milliseconds) {
  require(candidate >= 0 && candidate < candidates() && in_flight_ > 0,
          "a timing of candidate " + std::to_string(candidate) + " that was not started");
  --in_flight_;
  if (excluded_[candidate]) return;
  std::optional<double>& best = best_[candidate];
  if (!best || milliseconds < *best) best = milliseconds;
}

void GemmAlgorithmSearch::exclude(int candidate, int started_timings_lost) {
  require(candidate > 0 && candidate < candidates() && started_timings_lost >= 0 &&
              started_timings_lost <= in_flight_,
          "excluding candidate " + std::to_string(candidate) + " of " +
              std::to_string(candidates()) + " with " + std::to_string(started_timings_lost) +
              " timings lost");
  excluded_[candidate] = true;
  best_[candidate].reset();
  in_flight_ -= started_timings_lost;
}

void GemmAlgorithmSearch::abandon_timing() {
  require(in_flight_ > 0, "a timing abandoned with none started");
  --in_flight_;
}

bool GemmAlgorithmSearch::decided() const {
  return started_rounds_ == timings_each_ && in_flight_ == 0;
}

int GemmAlgorithmSearch::chosen() const {
  require(decided(), "a choice asked for before the timings are in");
  int best = 0;
  for (int c = 1; c < candidates(); ++c) {
    if (best_[c] && (!best_[best] || *best_[c] < *best_[best] * (1.0 - kRequiredGain))) best = c;
  }
  return best;
}

std::optional<double> GemmAlgorithmSearch::best_time(int candidate) const {
  require(candidate >= 0 && candidate < candidates(),
          "candidate " + std::to_string(candidate) + " of " + std::to_string(candidates()));
  return best_[candidate];
}

}  // namespace autotp::kernels
