// Progress text: durations, the log line, the bar, and the printer that interleaves them.
#include "engine/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace autotp {

std::string format_duration(double seconds) {
  const auto total = static_cast<int64_t>(std::isfinite(seconds) ? std::max(0.0, seconds) : 0.0);
  const int64_t h = total / 3600, m = (total / 60) % 60, s = total % 60;
  if (h > 0) return fmt::format("{}:{:02d}:{:02d}", h, m, s);
  return fmt::format("{}:{:02d}", m, s);
}

std::string format_progress_line(const ProgressLine& l) {
  // Two decimals for ordinary norms; tiny or huge ones in scientific notation.
  const std::string norm = l.grad_norm >= 0.01 && l.grad_norm < 1e4
                               ? fmt::format("{:.2f}", l.grad_norm)
                               : fmt::format("{:.2e}", l.grad_norm);
  return fmt::format(
      "step {}/{} | loss {:.4f} | lr {:.2e} | grad norm {} | {:.0f} tok/s | elapsed {} | eta {}",
      l.step, l.total_steps, l.loss, l.lr, norm, l.tokens_per_s, format_duration(l.elapsed_s),
      format_duration(l.eta_s));
}

std::string format_progress_bar(int64_t step, int64_t total_steps, int width) {
  const double fraction =
      total_steps > 0
          ? std::clamp(static_cast<double>(step) / static_cast<double>(total_steps), 0.0, 1.0)
          : 0.0;
  const int filled = static_cast<int>(fraction * width);
  return fmt::format("[{}{}] {}/{}", std::string(static_cast<size_t>(filled), '#'),
                     std::string(static_cast<size_t>(width - filled), '.'), step, total_steps);
}

bool is_terminal(std::FILE* out) {
  return out != nullptr && isatty(fileno(out)) == 1;
}

void ProgressPrinter::line(const std::string& text) {
  if (out_ == nullptr) return;
  clear_bar();
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

void ProgressPrinter::bar(int64_t step, int64_t total_steps, double loss) {
  if (out_ == nullptr || !live_) return;
  std::fprintf(out_, "\r%s loss %.4f\x1b[K", format_progress_bar(step, total_steps).c_str(), loss);
  std::fflush(out_);
  bar_shown_ = true;
}

void ProgressPrinter::clear_bar() {
  if (out_ == nullptr || !bar_shown_) return;
  std::fprintf(out_, "\r\x1b[K");
  std::fflush(out_);
  bar_shown_ = false;
}

}  // namespace autotp
