// `autotp export CHECKPOINT OUT_DIR [--dtype f32|bf16|f16]`: a training checkpoint of any
// layout (one process, TP x DP, any ZeRO stage) written as one Hugging Face model directory.
#pragma once

#include <string>
#include <vector>

namespace autotp::tools {

struct ExportArgs {
  std::string checkpoint;  // a checkpoint directory (state.json) or a run directory (latest)
  std::string out_dir;
  std::string dtype;  // empty: the checkpoint's
};

ExportArgs parse_export_args(const std::vector<std::string>& args);
int run_export(const std::vector<std::string>& args);

extern const char* const kExportUsage;

}  // namespace autotp::tools
