// Training checkpoints: OUT/checkpoints/step-<NNNNNNNN>/ (model and optimizer safetensors,
// config.json, state.json last) staged under a temporary name, plus the `latest` pointer file.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/io/atomic_file.h"
#include "core/io/json.h"
#include "core/io/safetensors.h"
#include "core/io/sharded_safetensors.h"
#include "engine/checkpoint.h"
#include "engine/checkpoint_files.h"
#include "engine/hf_config.h"

namespace autotp {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLatestFile = "latest";
constexpr const char* kConfigFile = "config.json";
constexpr const char* kFormat = "autotp-training-checkpoint";
constexpr int64_t kFormatVersion = 1;

std::string step_dir_name(int64_t step) {
  return fmt::format("step-{:08d}", step);
}

// The step of a directory name step_dir_name() produces, or -1 for any other name (temporary
// directories, stray files).
int64_t step_of_dir_name(const std::string& name) {
  constexpr std::string_view kPrefix = "step-";
  if (name.size() < kPrefix.size() + 8 || !name.starts_with(kPrefix)) return -1;
  int64_t step = 0;
  for (size_t i = kPrefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (INT64_MAX - 9) / 10) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return name == step_dir_name(step) ? step : -1;
}

json::Value state_json(const TrainingState& state) {
  json::Value out = json::Value::object();
  out.set("format", kFormat);
  out.set("format_version", kFormatVersion);
  out.set("step", state.step);
  out.set("seed", state.seed);
  out.set("tokens_seen", state.tokens_seen);
  out.set("config_yaml", state.config_yaml);
  if (state.loss_scaler) {
    json::Value scaler = json::Value::object();
    scaler.set("cur_scale", state.loss_scaler->cur_scale)
        .set("cur_iter", state.loss_scaler->cur_iter)
        .set("last_overflow_iter", state.loss_scaler->last_overflow_iter)
        .set("cur_hysteresis", state.loss_scaler->cur_hysteresis);
    out.set("loss_scaler", scaler);
  }
  return out;
}

// Reads and checks DIR/state.json (errors name the file).
TrainingState read_state(const fs::path& dir) {
  const fs::path path = dir / kCheckpointManifestFile;
  AUTOTP_CHECK(fs::is_regular_file(path),
               "'{}' is not a complete training checkpoint: {} is missing (an interrupted save?)",
               dir.string(), kCheckpointManifestFile);
  const json::Value root = json::parse_file(path.string());
  AUTOTP_CHECK(root.is_object(), "{}: expected a JSON object, got {}", path.string(),
               json::kind_name(root.kind()));
  const std::string format = root.get<std::string>("format");
  AUTOTP_CHECK(format == kFormat, "{}: format is '{}', expected '{}'", path.string(), format,
               kFormat);
  const int64_t version = root.get<int64_t>("format_version");
  AUTOTP_CHECK(version == kFormatVersion,
               "{}: format_version {} is not supported by this autotp (it reads version {})",
               path.string(), version, kFormatVersion);
  TrainingState state;
  state.step = root.get<int64_t>("step");
  state.seed = root.get<uint64_t>("seed");
  state.tokens_seen = root.get<int64_t>("tokens_seen");
  state.config_yaml = root.get<std::string>("config_yaml");
  if (root.contains("loss_scaler")) {
    const json::Value& s = root["loss_scaler"];
    LossScalerState scaler;
    scaler.cur_scale = s.get<double>("cur_scale");
    scaler.cur_iter = s.get<int64_t>("cur_iter");
    scaler.last_overflow_iter = s.get<int64_t>("last_overflow_iter");
    scaler.cur_hysteresis = s.get<int64_t>("cur_hysteresis");
    AUTOTP_CHECK(scaler.cur_scale > 0.0 && scaler.cur_hysteresis >= 1,
                 "{}: loss_scaler.cur_scale ({}) must be positive and cur_hysteresis ({}) at "
                 "least 1",
                 path.string(), scaler.cur_scale, scaler.cur_hysteresis);
    state.loss_scaler = scaler;
  }
  AUTOTP_CHECK(state.step >= 0 && state.tokens_seen >= 0,
               "{}: step ({}) and tokens_seen ({}) must not be negative", path.string(), state.step,
               state.tokens_seen);
  return state;
}

// True when DIR holds a state.json that reads back (what every finished save leaves).
bool is_complete(const fs::path& dir) {
  try {
    read_state(dir);
    return true;
  } catch (const Error&) {
    return false;
  }
}

// The first line of the `latest` file, trimmed; empty when unreadable.
std::string read_latest(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  if (!in || !std::getline(in, line)) return "";
  while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
    line.pop_back();
  return line;
}

}  // namespace

TrainingState read_training_state(const std::string& checkpoint_dir) {
  return read_state(fs::path(checkpoint_dir));
}

json::Value training_state_json(const TrainingState& state) {
  return state_json(state);
}

std::string save_training_checkpoint(const std::string& out_dir, const CausalLM& model,
                                     const AdamW& optimizer, const TrainingState& state) {
  AUTOTP_CHECK(state.step >= 0, "save_training_checkpoint: step must not be negative, got {}",
               state.step);
  const fs::path root = fs::path(out_dir) / kCheckpointsDir;
  fs::create_directories(root);
  const std::string name = step_dir_name(state.step);
  const fs::path target = root / name;
  // Hidden, and not a step-<N> name: never mistaken for a checkpoint.
  const fs::path staged = root / fmt::format(".{}.tmp.{}", name, ::getpid());
  std::error_code ec;
  fs::remove_all(staged, ec);
  fs::create_directory(staged, ec);
  AUTOTP_CHECK(!ec, "save_training_checkpoint: cannot create '{}': {}", staged.string(),
               ec.message());
  try {
    // Model weights as an HF directory (config.json + model.safetensors), so `eval` and
    // transformers can read a checkpoint directly.
    const DType dtype = checkpoint_files::model_dtype(model);
    io::write_file_atomically((staged / kConfigFile).string(),
                              hf_config_json(model.config(), dtype).dump(2) + "\n");
    io::save_safetensors((staged / io::kSafetensorsFileName).string(),
                         checkpoint_files::ordered_state(model), {{"format", "pt"}});
    io::save_safetensors((staged / kCheckpointOptimizerFile).string(), optimizer.state_dict());
    // state.json last: its presence marks the directory complete.
    io::write_file_atomically((staged / kCheckpointManifestFile).string(),
                              state_json(state).dump(2) + "\n");
    checkpoint_files::sync_directory(staged.string());
    checkpoint_files::replace_directory(staged.string(), target.string());
  } catch (...) {
    fs::remove_all(staged, ec);
    throw;
  }
  io::write_file_atomically((root / kLatestFile).string(), name + "\n");
  return target.string();
}

std::optional<std::string> latest_training_checkpoint(const std::string& out_dir) {
  const fs::path root = fs::path(out_dir) / kCheckpointsDir;
  if (!fs::is_directory(root)) return std::nullopt;
  const std::string latest = read_latest(root / kLatestFile);
  if (step_of_dir_name(latest) >= 0 && is_complete(root / latest)) return (root / latest).string();
  // No usable pointer (missing, or naming an incomplete directory): the newest complete step.
  int64_t best = -1;
  for (const fs::directory_entry& entry : fs::directory_iterator(root)) {
    const int64_t step = step_of_dir_name(entry.path().filename().string());
    if (step > best && entry.is_directory() && is_complete(entry.path())) best = step;
  }
  if (best < 0) return std::nullopt;
  return (root / step_dir_name(best)).string();
}

std::string latest_checkpoint_pointer(const std::string& out_dir) {
  return read_latest(fs::path(out_dir) / kCheckpointsDir / kLatestFile);
}

TrainingState load_training_checkpoint(const std::string& checkpoint_dir, CausalLM& model,
                                       AdamW& optimizer) {
  const fs::path dir(checkpoint_dir);
  const TrainingState state = read_state(dir);
  const fs::path model_file = dir / io::kSafetensorsFileName;
  AUTOTP_CHECK(fs::is_regular_file(model_file),
               "'{}' is not a complete training checkpoint: {} is missing", checkpoint_dir,
               io::kSafetensorsFileName);
  const fs::path optimizer_file = dir / kCheckpointOptimizerFile;
  AUTOTP_CHECK(fs::is_regular_file(optimizer_file),
               "'{}' is not a complete training checkpoint: {} is missing", checkpoint_dir,
               kCheckpointOptimizerFile);
  // Open (and validate) both files before changing the model or the optimizer.
  const io::SafetensorsCheckpoint weights(checkpoint_dir);
  const io::SafetensorsFile optimizer_state(optimizer_file.string());
  NamedTensors moments;
  for (const io::SafetensorsTensorInfo& info : optimizer_state.tensors()) {
    moments.emplace_back(info.name, optimizer_state.load(info.name));
  }
  checkpoint_files::load_weights(model, weights, /*tied_lm_head_allowed=*/false);
  try {
    optimizer.load_state_dict(moments);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", optimizer_file.string(), e.what()));
  }
  return state;
}

}  // namespace autotp
