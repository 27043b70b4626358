// GemmAlgorithmSearch, the decision rules of kernels.gemm_autotune: which candidate each call
// times, when the search is over, and which algorithm it keeps.
#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>
#include <vector>

#include "kernels/gemm_algorithm_search.h"

namespace autotp::kernels {
namespace {

// Every timing the search hands out, in order, until it has none left.
std::vector<int> start_all(GemmAlgorithmSearch& search) {
  std::vector<int> started;
  while (std::optional<int> c = search.start_next_timing())
    started.push_back(*c);
  return started;
}

TEST(GemmAlgorithmSearch, TimesEveryCandidateOnceBeforeAnyTwice) {
  GemmAlgorithmSearch search(3, 2);
  EXPECT_FALSE(search.all_started());
  EXPECT_EQ(start_all(search), (std::vector<int>{0, 1, 2, 0, 1, 2}));
  EXPECT_TRUE(search.all_started());
  EXPECT_EQ(search.start_next_timing(), std::nullopt);
}

TEST(GemmAlgorithmSearch, IsDecidedOnlyOnceEveryStartedTimingIsRecorded) {
  GemmAlgorithmSearch search(2, 1);
  EXPECT_FALSE(search.decided());
  ASSERT_EQ(search.start_next_timing(), 0);
  search.record(0, 2.0);
  EXPECT_FALSE(search.decided()) << "candidate 1 has not been started";
  ASSERT_EQ(search.start_next_timing(), 1);
  EXPECT_FALSE(search.decided()) << "candidate 1's timing is still in flight";
  EXPECT_THROW(search.chosen(), std::logic_error);
  search.record(1, 1.0);
  EXPECT_TRUE(search.decided());
  EXPECT_EQ(search.chosen(), 1);
}

TEST(GemmAlgorithmSearch, KeepsTheFastestByEachCandidatesBestTiming) {
  GemmAlgorithmSearch search(3, 3);
  const std::vector<int> started = start_all(search);
  // Candidate 2 once hit by interference (9 ms) but otherwise the fastest.
  const std::vector<double> ms = {5.0, 4.0, 9.0, 5.1, 4.1, 3.0, 5.2, 4.2, 3.1};
  for (size_t i = 0; i < started.size(); ++i)
    search.record(started[i], ms[i]);
  ASSERT_TRUE(search.decided());
  EXPECT_EQ(search.chosen(), 2);
  EXPECT_EQ(search.best_time(0), 5.0);
  EXPECT_EQ(search.best_time(1), 4.0);
  EXPECT_EQ(search.best_time(2), 3.0);
}

TEST(GemmAlgorithmSearch, TheHeuristicsPickStaysUnlessAnotherIsFasterByMoreThanOnePercent) {
  const auto choose = [](std::vector<double> ms) {
    GemmAlgorithmSearch search(static_cast<int>(ms.size()), 1);
    for (int c : start_all(search))
      search.record(c, ms[c]);
    return search.chosen();
  };
  EXPECT_EQ(choose({1.000, 0.995}), 0) << "0.5 % faster is within the noise";
  EXPECT_EQ(choose({1.000, 0.980}), 1) << "2 % faster";
  // Each candidate must beat the best before it: 2 is 0.5 % faster than 1, so 1 stays.
  EXPECT_EQ(choose({1.000, 0.985, 0.980}), 1);
  EXPECT_EQ(choose({1.000, 1.200, 0.900}), 2);
  EXPECT_EQ(choose({0.7}), 0);
}

TEST(GemmAlgorithmSearch, AnExcludedCandidateIsNeverChosenOrTimedAgain) {
  GemmAlgorithmSearch search(3, 2);
  ASSERT_EQ(search.start_next_timing(), 0);
  ASSERT_EQ(search.start_next_timing(), 1);
  search.record(1, 0.5);  // fast, then fails to launch on its second run
  ASSERT_EQ(search.start_next_timing(), 2);
  ASSERT_EQ(search.start_next_timing(), 0);
  ASSERT_EQ(search.start_next_timing(), 1);
  search.exclude(1, 1);  // the timing just started will never finish
  EXPECT_EQ(search.best_time(1), std::nullopt);
  ASSERT_EQ(search.start_next_timing(), 2);
  EXPECT_EQ(search.start_next_timing(), std::nullopt);
  for (int c : {0, 2, 0, 2})
    search.record(c, c == 0 ? 1.0 : 2.0);
  ASSERT_TRUE(search.decided());
  EXPECT_EQ(search.chosen(), 0);
}

TEST(GemmAlgorithmSearch, ATimingOfAnExcludedCandidateThatStillFinishesIsIgnored) {
  GemmAlgorithmSearch search(2, 2);
  ASSERT_EQ(start_all(search), (std::vector<int>{0, 1, 0, 1}));
  search.exclude(1, 1);  // its second run failed; the first is still in flight
  search.record(0, 1.0);
  search.record(0, 1.0);
  EXPECT_FALSE(search.decided());
  search.record(1, 0.1);
  ASSERT_TRUE(search.decided());
  EXPECT_EQ(search.chosen(), 0);
  EXPECT_EQ(search.best_time(1), std::nullopt);
}

TEST(GemmAlgorithmSearch, AnAbandonedTimingStillLetsTheSearchEnd) {
  GemmAlgorithmSearch search(2, 1);
  ASSERT_EQ(search.start_next_timing(), 0);
  search.abandon_timing();  // its run threw: the error went to the caller
  ASSERT_EQ(search.start_next_timing(), 1);
  search.record(1, 3.0);
  EXPECT_EQ(search.start_next_timing(), std::nullopt);
  ASSERT_TRUE(search.decided());
  EXPECT_EQ(search.chosen(), 1) << "the only candidate with a timing";
  EXPECT_THROW(search.abandon_timing(), std::logic_error) << "none is in flight";
}

TEST(GemmAlgorithmSearch, MisuseIsReported) {
  EXPECT_THROW(GemmAlgorithmSearch(0, 1), std::logic_error);
  EXPECT_THROW(GemmAlgorithmSearch(2, 0), std::logic_error);
  GemmAlgorithmSearch search(2, 1);
  EXPECT_THROW(search.record(0, 1.0), std::logic_error) << "nothing was started";
  ASSERT_EQ(search.start_next_timing(), 0);
  EXPECT_THROW(search.exclude(0, 1), std::logic_error) << "the heuristic's pick is the fallback";
  EXPECT_THROW(search.exclude(1, 2), std::logic_error) << "only one timing is in flight";
  EXPECT_THROW(search.record(2, 1.0), std::logic_error);
  EXPECT_THROW(search.best_time(-1), std::logic_error);
}

}  // namespace
}  // namespace autotp::kernels
