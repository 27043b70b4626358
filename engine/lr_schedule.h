// Learning-rate schedules with DeepSpeed's names, parameters and formulas (WarmupLR,
// WarmupDecayLR, WarmupCosineLR from deepspeed/runtime/lr_schedules.py), plus a constant rate.
#pragma once

#include <cstdint>
#include <string>

namespace autotp {

enum class LrScheduleType { Constant, WarmupLR, WarmupDecayLR, WarmupCosineLR };
enum class WarmupType { Log, Linear };

// "WarmupLR" -> LrScheduleType::WarmupLR, ...; throws listing the supported names otherwise.
LrScheduleType lr_schedule_type_from_name(const std::string& name);
const char* lr_schedule_type_name(LrScheduleType type);     // "Constant" for Constant
WarmupType warmup_type_from_name(const std::string& name);  // "log" | "linear"
const char* warmup_type_name(WarmupType type);

// The scheduler's parameters as DeepSpeed names them, already resolved (no "auto").
struct LrScheduleConfig {
  LrScheduleType type = LrScheduleType::Constant;
  double base_lr = 1e-3;        // optimizer.params.lr: the Constant rate, WarmupCosineLR's peak
  double warmup_min_lr = 0.0;   // WarmupLR, WarmupDecayLR
  double warmup_max_lr = 1e-3;  // WarmupLR (DeepSpeed default: the optimizer lr), WarmupDecayLR
  int64_t warmup_num_steps = 1000;
  WarmupType warmup_type = WarmupType::Log;
  int64_t total_num_steps = 0;    // WarmupDecayLR, WarmupCosineLR
  double warmup_min_ratio = 0.0;  // WarmupCosineLR
  double cos_min_ratio = 0.0001;  // WarmupCosineLR
};

// The rate as a function of DeepSpeed's `last_batch_iteration` i (the number of scheduler steps
// taken minus one). With W = max(2, warmup_num_steps):
//
// Warmup fraction during i < W:   log:    gamma_w(i) = ln(i + 1) / ln(W)
//                                 linear: gamma_w(i) = i / W
//
// WarmupLR:       lr(i) = warmup_min_lr + (warmup_max_lr - warmup_min_lr) * gamma(i),
//                 gamma(i) = gamma_w(i) for i < W, else 1.
// WarmupDecayLR:  as WarmupLR, but for i >= W
//                 gamma(i) = max(0, (total_num_steps - i) / max(1, total_num_steps - W)),
//                 i.e. a linear decay that reaches warmup_min_lr at i = total_num_steps.
// WarmupCosineLR: lr(i) = base_lr * ratio(i), with
//                 i < W:  ratio = warmup_min_ratio + (1 - warmup_min_ratio) * gamma_w(i)
//                 i >= W: p = min(1, (i - W + 1) / max(1, total_num_steps - W))
//                         ratio = max(0, cos_min_ratio + (1 - cos_min_ratio) * (1 + cos(pi p)) / 2)
//                 (p is clamped as in current DeepSpeed, so the rate stays at the floor after
//                 total_num_steps instead of rising again).
// Constant:       lr(i) = base_lr.
//
// Before the first scheduler step (i < 0) DeepSpeed sets warmup_min_lr (WarmupLR,
// WarmupDecayLR) or 0 (WarmupCosineLR); lr_at(-1) returns the same.
class LrSchedule {
 public:
  explicit LrSchedule(LrScheduleConfig config);

  // The rate after `iteration` = DeepSpeed's last_batch_iteration (>= -1).
  double lr_at(int64_t iteration) const;
  // The rate optimizer step `step` (0-based) uses in DeepSpeed's engine, which steps the
  // scheduler after the optimizer: lr_at(step - 1). Step 0 thus runs at the initial rate.
  double lr_for_step(int64_t step) const { return lr_at(step - 1); }

  const LrScheduleConfig& config() const { return config_; }

 private:
  double warmup_fraction(int64_t iteration) const;  // gamma_w

  LrScheduleConfig config_;
  int64_t warmup_steps_;  // W = max(2, warmup_num_steps)
};

}  // namespace autotp
