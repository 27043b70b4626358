// What the commands other than `train` say about a config they read: its warnings (ignored
// DeepSpeed keys; train lists them in its summary) and, for the single-process commands, that
// tensor_parallel.autotp_size does not apply to them.
#pragma once

#include <cstdio>
#include <string>

#include "engine/config.h"

namespace autotp::tools {

// One "COMMAND: warning: ..." line per config warning, to `out`.
void print_config_warnings(const Config& config, const std::string& command,
                           std::FILE* out = stderr);

// For bench, bench-ops and eval, which run one process on the whole model: a line saying that
// an autotp_size above 1 is not applied (they time or evaluate the unsharded model).
void note_unsharded_run(const Config& config, const std::string& command, std::FILE* out = stderr);

}  // namespace autotp::tools
