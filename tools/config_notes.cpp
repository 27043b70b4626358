// Config warnings for the commands other than train.
#include "tools/config_notes.h"

namespace autotp::tools {

void print_config_warnings(const Config& config, const std::string& command, std::FILE* out) {
  for (const std::string& w : config.warnings)
    std::fprintf(out, "%s: warning: %s\n", command.c_str(), w.c_str());
}

void note_unsharded_run(const Config& config, const std::string& command, std::FILE* out) {
  const int64_t tp = config.tensor_parallel.autotp_size;
  if (tp <= 1) return;
  std::fprintf(out,
               "%s: warning: tensor_parallel.autotp_size is %lld, but %s runs one process on "
               "the unsharded model (`autotp plan` shows the TP plan; `mpirun -np N autotp "
               "train` trains it)\n",
               command.c_str(), static_cast<long long>(tp), command.c_str());
}

}  // namespace autotp::tools
