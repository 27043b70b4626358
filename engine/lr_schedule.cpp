// DeepSpeed's warmup schedules as pure functions of the iteration (formulas in lr_schedule.h).
#include "engine/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace autotp {

LrScheduleType lr_schedule_type_from_name(const std::string& name) {
  if (name == "WarmupLR") return LrScheduleType::WarmupLR;
  if (name == "WarmupDecayLR") return LrScheduleType::WarmupDecayLR;
  if (name == "WarmupCosineLR") return LrScheduleType::WarmupCosineLR;
  if (name == "Constant") return LrScheduleType::Constant;
  AUTOTP_FAIL(
      "scheduler type '{}' is not supported (supported: WarmupLR, WarmupDecayLR, "
      "WarmupCosineLR; omit the scheduler section for a constant rate)",
      name);
}

const char* lr_schedule_type_name(LrScheduleType type) {
  switch (type) {
    case LrScheduleType::Constant:
      return "Constant";
    case LrScheduleType::WarmupLR:
      return "WarmupLR";
    case LrScheduleType::WarmupDecayLR:
      return "WarmupDecayLR";
    case LrScheduleType::WarmupCosineLR:
      return "WarmupCosineLR";
  }
  AUTOTP_ASSERT(false, "unknown LrScheduleType");
}

WarmupType warmup_type_from_name(const std::string& name) {
  if (name == "log") return WarmupType::Log;
  if (name == "linear") return WarmupType::Linear;
  AUTOTP_FAIL("warmup_type '{}' is not supported (expected 'log' or 'linear')", name);
}

const char* warmup_type_name(WarmupType type) {
  return type == WarmupType::Log ? "log" : "linear";
}

LrSchedule::LrSchedule(LrScheduleConfig config)
    : config_(config), warmup_steps_(std::max<int64_t>(2, config.warmup_num_steps)) {
  const LrScheduleType t = config_.type;
  if (t != LrScheduleType::Constant) {
    AUTOTP_CHECK(config_.warmup_num_steps > 0,
                 "{}: warmup_num_steps must be a positive integer, got {}",
                 lr_schedule_type_name(t), config_.warmup_num_steps);
  }
  if (t == LrScheduleType::WarmupDecayLR || t == LrScheduleType::WarmupCosineLR) {
    AUTOTP_CHECK(config_.total_num_steps > 0, "{}: total_num_steps must be positive, got {}",
                 lr_schedule_type_name(t), config_.total_num_steps);
  }
}

double LrSchedule::warmup_fraction(int64_t iteration) const {
  const double i = static_cast<double>(iteration);
  if (config_.warmup_type == WarmupType::Log) {
    return (1.0 / std::log(static_cast<double>(warmup_steps_))) * std::log(i + 1.0);
  }
  return i / static_cast<double>(warmup_steps_);
}

double LrSchedule::lr_at(int64_t iteration) const {
  const LrScheduleConfig& c = config_;
  const int64_t w = warmup_steps_;
  switch (c.type) {
    case LrScheduleType::Constant:
      return c.base_lr;
    case LrScheduleType::WarmupLR:
    case LrScheduleType::WarmupDecayLR: {
      if (iteration < 0) return c.warmup_min_lr;
      double gamma = 1.0;
      if (iteration < w) {
        gamma = warmup_fraction(iteration);
      } else if (c.type == LrScheduleType::WarmupDecayLR) {
        gamma = std::max(0.0, static_cast<double>(c.total_num_steps - iteration) /
                                  std::max(1.0, static_cast<double>(c.total_num_steps - w)));
      }
      return c.warmup_min_lr + (c.warmup_max_lr - c.warmup_min_lr) * gamma;
    }
    case LrScheduleType::WarmupCosineLR: {
      if (iteration < 0) return 0.0;
      double ratio;
      if (iteration < w) {
        ratio = c.warmup_min_ratio + warmup_fraction(iteration) * (1.0 - c.warmup_min_ratio);
      } else {
        const double real_last_step = static_cast<double>(iteration - w + 1);
        const double real_total_steps =
            static_cast<double>(std::max<int64_t>(1, c.total_num_steps - w));
        const double progress = std::min(1.0, real_last_step / real_total_steps);
        const double cosine = (1.0 + std::cos(std::numbers::pi * progress)) / 2.0;
        ratio = std::max(0.0, c.cos_min_ratio + (1.0 - c.cos_min_ratio) * cosine);
      }
      return c.base_lr * ratio;
    }
  }
  AUTOTP_ASSERT(false, "unknown LrScheduleType");
}

}  // namespace autotp
