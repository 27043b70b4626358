// MetricsLog: trims a previous run's records to the resumed step, then appends line by line.
#include "engine/metrics_log.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/io/atomic_file.h"

namespace autotp {

MetricsLog::MetricsLog(std::string path, int64_t keep_up_to_step) : path_(std::move(path)) {
  std::string kept;
  if (keep_up_to_step > 0) {
    std::ifstream in(path_);
    std::string text;
    while (std::getline(in, text)) {
      try {
        const json::Value record = json::parse(text, path_);
        if (record.is_object() && record.get_or<int64_t>("step", -1) >= 1 &&
            record.get<int64_t>("step") <= keep_up_to_step) {
          kept += text + "\n";
        }
      } catch (const Error&) {
        // A torn last line from an interrupted run: dropped.
      }
    }
  }
  io::write_file_atomically(path_, kept);
  file_ = std::fopen(path_.c_str(), "a");
  AUTOTP_CHECK(file_ != nullptr, "cannot open metrics file '{}' for writing: {}", path_,
               std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void MetricsLog::append(const json::Value& record) {
  const std::string text = record.dump() + "\n";
  const bool ok =
      std::fwrite(text.data(), 1, text.size(), file_) == text.size() && std::fflush(file_) == 0;
  AUTOTP_CHECK(ok, "cannot write to metrics file '{}': {}", path_, std::strerror(errno));
}

}  // namespace autotp
