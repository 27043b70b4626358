// Progress text: durations, the per-step log line, the progress bar.
#include <gtest/gtest.h>

#include "engine/progress.h"

namespace autotp {
namespace {

TEST(Progress, DurationsAreMinutesAndSecondsThenHours) {
  EXPECT_EQ(format_duration(0.0), "0:00");
  EXPECT_EQ(format_duration(12.9), "0:12");
  EXPECT_EQ(format_duration(225.0), "3:45");
  EXPECT_EQ(format_duration(3599.0), "59:59");
  EXPECT_EQ(format_duration(3723.0), "1:02:03");
  EXPECT_EQ(format_duration(-5.0), "0:00");
}

TEST(Progress, TheLogLineHasEveryFieldInOrder) {
  ProgressLine l;
  l.step = 10;
  l.total_steps = 200;
  l.loss = 4.12344;
  l.lr = 3e-4;
  l.grad_norm = 1.234;
  l.tokens_per_s = 1234.4;
  l.elapsed_s = 12.0;
  l.eta_s = 225.0;
  EXPECT_EQ(format_progress_line(l),
            "step 10/200 | loss 4.1234 | lr 3.00e-04 | grad norm 1.23 | 1234 tok/s | "
            "elapsed 0:12 | eta 3:45");
  l.grad_norm = 2.5e-5;
  EXPECT_NE(format_progress_line(l).find("grad norm 2.50e-05 |"), std::string::npos);
}

TEST(Progress, TheBarFillsInProportionToTheSteps) {
  EXPECT_EQ(format_progress_bar(0, 10, 10), "[..........] 0/10");
  EXPECT_EQ(format_progress_bar(3, 10, 10), "[###.......] 3/10");
  EXPECT_EQ(format_progress_bar(10, 10, 10), "[##########] 10/10");
}

}  // namespace
}  // namespace autotp
