// OUT/metrics.jsonl: one JSON object per logged step, flushed line by line; a resumed run keeps
// the records up to its checkpoint's step and continues after them.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "core/io/json.h"

namespace autotp {

class MetricsLog {
 public:
  // Opens `path` for appending. Existing records whose "step" is <= keep_up_to_step are kept
  // (rewritten atomically first); later ones, unreadable lines and everything when
  // keep_up_to_step is 0 are dropped.
  MetricsLog(std::string path, int64_t keep_up_to_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Writes record.dump() and a newline, then flushes.
  void append(const json::Value& record);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace autotp
