// Training progress as text: durations ("3:45", "1:02:03"), the per-step log line, and a live
// progress bar for terminals that the log lines print above.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace autotp {

// "m:ss" below an hour, "h:mm:ss" from an hour on; seconds rounded down, negatives as 0.
std::string format_duration(double seconds);

// What one logged step reports.
struct ProgressLine {
  int64_t step = 0;  // optimizer steps completed
  int64_t total_steps = 0;
  double loss = 0.0;
  double lr = 0.0;
  double grad_norm = 0.0;  // before clipping
  double tokens_per_s = 0.0;
  double elapsed_s = 0.0;
  double eta_s = 0.0;
};

// "step 10/200 | loss 4.1234 | lr 3.00e-04 | grad norm 1.23 | 1234 tok/s | elapsed 0:12 |
// eta 3:45" (one line, no newline); the norm with two decimals in [0.01, 1e4), else as 1.23e-05.
std::string format_progress_line(const ProgressLine& line);

// "[#########...........] 37/200" of width `width` characters between the brackets.
std::string format_progress_bar(int64_t step, int64_t total_steps, int width = 30);

// Writes log lines to `out` and, when `live` (stdout is a terminal), keeps a progress bar on
// the last line: each log line clears the bar, prints, and the next update redraws it.
class ProgressPrinter {
 public:
  ProgressPrinter(std::FILE* out, bool live) : out_(out), live_(live) {}
  ~ProgressPrinter() { clear_bar(); }
  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;

  void line(const std::string& text);                        // a permanent line
  void bar(int64_t step, int64_t total_steps, double loss);  // redraws the live bar
  void clear_bar();

 private:
  std::FILE* out_;
  bool live_;
  bool bar_shown_ = false;
};

// True when `out` is a terminal.
bool is_terminal(std::FILE* out);

}  // namespace autotp
