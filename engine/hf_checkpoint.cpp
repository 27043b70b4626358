// Hugging Face model directories: load_hf_config / load_hf_model (config.json + safetensors,
// strict names) and export_hf_model (config.json + shards staged in a sibling, renamed in).
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/io/atomic_file.h"
#include "core/io/sharded_safetensors.h"
#include "engine/checkpoint.h"
#include "engine/checkpoint_files.h"
#include "engine/hf_config.h"
#include "models/registry.h"

namespace autotp {

namespace fs = std::filesystem;

namespace {

constexpr const char* kConfigFileName = "config.json";

// `dir` without a trailing separator ("out/model/" -> "out/model").
fs::path normalized_dir(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty() && p.has_parent_path()) p = p.parent_path();
  return p;
}

// True for a file an export writes: config.json, model.safetensors, the shard index and the
// shards (model-00001-of-00003.safetensors).
bool written_by_export(const std::string& name) {
  if (name == kConfigFileName || name == io::kSafetensorsFileName ||
      name == io::kSafetensorsIndexName) {
    return true;
  }
  static const std::regex shard(R"(model-[0-9]+-of-[0-9]+\.safetensors)");
  return std::regex_match(name, shard);
}

// What in `dir` an export would not write again (replacing `dir` would delete it): tokenizer
// files, a training checkpoint's optimizer state and manifest, sub-directories. At most five
// names, then "...".
std::string foreign_entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || !written_by_export(name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  std::string listed;
  for (size_t i = 0; i < names.size() && i < 5; ++i)
    listed += (i ? ", " : "") + names[i];
  if (names.size() > 5) listed += fmt::format(", ... ({} entries)", names.size());
  return listed;
}

}  // namespace

ModelConfig load_hf_config(const std::string& dir) {
  // A directory holds config.json; a path to the file itself is accepted too.
  AUTOTP_CHECK(fs::exists(dir), "model directory '{}' does not exist", dir);
  const fs::path path = fs::is_directory(dir) ? fs::path(dir) / kConfigFileName : fs::path(dir);
  AUTOTP_CHECK(fs::is_regular_file(path),
               "'{}' is not a Hugging Face model directory: it has no {}", dir, kConfigFileName);
  const json::Value config = json::parse_file(path.string());
  try {
    return ModelConfig::from_map(model_config_map_from_json(config));
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path.string(), e.what()));
  }
}

std::shared_ptr<CausalLM> load_hf_model(const std::string& dir, DType dtype) {
  const ModelConfig config = load_hf_config(dir);
  const io::SafetensorsCheckpoint weights(dir);  // every header validated before any allocation
  std::shared_ptr<CausalLM> model = create_model_uninitialized(config, dtype);
  checkpoint_files::load_weights(*model, weights, /*tied_lm_head_allowed=*/true);
  return model;
}

void export_hf_model(const CausalLM& model, const std::string& dir, std::optional<DType> dtype,
                     int64_t max_shard_bytes) {
  AUTOTP_CHECK(max_shard_bytes > 0, "export_hf_model: max_shard_bytes must be positive, got {}",
               max_shard_bytes);
  const fs::path target = normalized_dir(dir);
  AUTOTP_CHECK(!target.empty() && target.filename() != "." && target.filename() != "..",
               "export_hf_model: '{}' does not name a directory to create", dir);
  if (fs::exists(fs::symlink_status(target))) {
    AUTOTP_CHECK(fs::is_directory(fs::symlink_status(target)),
                 "export_hf_model: '{}' exists and is not a directory; refusing to replace it",
                 target.string());
    // An earlier export is replaced whole; anything else in the directory would be lost with it.
    const std::string foreign = foreign_entries(target);
    AUTOTP_CHECK(foreign.empty(),
                 "export_hf_model: '{}' holds what an export does not write ({}); refusing to "
                 "replace it (export into a new or empty directory, or one holding only an earlier "
                 "export)",
                 target.string(), foreign);
  }
  const DType save_dtype = dtype.value_or(checkpoint_files::model_dtype(model));
  AUTOTP_CHECK(is_floating(save_dtype),
               "export_hf_model: the saved dtype must be floating point, "
               "got {}",
               dtype_name(save_dtype));

  std::vector<std::pair<std::string, Tensor>> tensors = checkpoint_files::ordered_state(model);
  {
    NoGradGuard no_grad;
    for (auto& [name, t] : tensors) {
      if (t.dtype() != save_dtype) t = t.to(save_dtype);
    }
  }

  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string staged = fmt::format("{}.tmp.{}", target.string(), ::getpid());
  std::error_code ec;
  fs::remove_all(staged, ec);  // a leftover of an earlier failed export by a process with our pid
  fs::create_directory(staged, ec);
  AUTOTP_CHECK(!ec, "export_hf_model: cannot create '{}': {}", staged, ec.message());
  try {
    io::write_file_atomically((fs::path(staged) / kConfigFileName).string(),
                              hf_config_json(model.config(), save_dtype).dump(2) + "\n");
    io::save_sharded(staged, tensors, static_cast<uint64_t>(max_shard_bytes));
    checkpoint_files::sync_directory(staged);
    checkpoint_files::replace_directory(staged, target.string());
  } catch (...) {
    fs::remove_all(staged, ec);
    throw;
  }
}

}  // namespace autotp
