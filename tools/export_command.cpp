// `autotp export`: reassembles a (possibly TP-sharded, ZeRO-partitioned) training checkpoint
// into full tensors and writes them as a Hugging Face model directory.
#include "tools/export_command.h"

#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "engine/checkpoint.h"
#include "engine/distributed_checkpoint.h"
#include "engine/saved_checkpoint.h"
#include "models/registry.h"
#include "tools/command_args.h"

namespace autotp::tools {

const char* const kExportUsage = "autotp export CHECKPOINT OUT_DIR [--dtype f32|bf16|f16]";

namespace fs = std::filesystem;

ExportArgs parse_export_args(const std::vector<std::string>& args) {
  ExportArgs a;
  ArgWalker w(args, "export", kExportUsage);
  for (; !w.done(); w.advance()) {
    const std::string& arg = w.current();
    if (auto d = w.take_value("--dtype")) {
      if (*d != "f32" && *d != "bf16" && *d != "f16") {
        w.fail(fmt::format("--dtype: '{}' is not f32, bf16 or f16", *d));
      }
      a.dtype = *d;
    } else if (arg.rfind("-", 0) == 0) {
      w.fail(fmt::format("unknown option '{}'", arg));
    } else if (a.checkpoint.empty()) {
      a.checkpoint = arg;
    } else if (a.out_dir.empty()) {
      a.out_dir = arg;
    } else {
      w.fail(fmt::format("unexpected argument '{}'", arg));
    }
  }
  if (a.out_dir.empty()) w.fail("expected CHECKPOINT and OUT_DIR");
  return a;
}

int run_export(const std::vector<std::string>& args) {
  const ExportArgs a = parse_export_args(args);
  check_single_process("export");
  std::string dir = a.checkpoint;
  if (!fs::is_regular_file(fs::path(dir) / "state.json")) {
    const std::optional<std::string> latest = latest_training_checkpoint(dir);
    AUTOTP_CHECK(latest.has_value(),
                 "export: '{}' is neither a training checkpoint (state.json) nor a run "
                 "directory with complete checkpoints (checkpoints/latest)",
                 dir);
    dir = *latest;
  }
  AUTOTP_CHECK(fs::is_regular_file(fs::path(dir) / "config.json"),
               "export: '{}' has no config.json (a checkpoint of a model autotp did not build?)",
               dir);
  const ModelConfig config = load_hf_config(dir);
  // The headers give the saved dtype; the weights are then read one parameter at a time and
  // the optimizer state not at all.
  const SavedCheckpoint saved(dir);
  const DType dtype =
      saved.names().empty() ? DType::F32 : saved.dtype(saved.names().front(), SavedTensor::Weight);
  std::shared_ptr<CausalLM> model = create_model_uninitialized(config, dtype);
  load_checkpoint_weights(dir, *model);
  std::optional<DType> out_dtype;
  if (!a.dtype.empty()) out_dtype = dtype_from_name(a.dtype);
  export_hf_model(*model, a.out_dir, out_dtype);
  std::printf("export: %s (step %lld, saved at %s) -> %s (a Hugging Face model directory)\n",
              dir.c_str(), static_cast<long long>(saved.state().step), saved.layout().c_str(),
              a.out_dir.c_str());
  return 0;
}

}  // namespace autotp::tools
