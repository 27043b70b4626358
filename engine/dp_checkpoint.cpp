// Data-parallel training checkpoints: per-rank ZeRO partition files, the manifest written
// last by rank 0, and loading any layout (gather the partitions, re-split).
#include "engine/dp_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/io/sharded_safetensors.h"
#include "engine/checkpoint_files.h"
#include "engine/hf_config.h"

namespace autotp {

namespace fs = std::filesystem;

namespace {

constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kStateFile = "state.json";

std::string partition_file(int rank, int size) {
  return fmt::format("optimizer-zero-r{:05d}-of-{:05d}.safetensors", rank, size);
}

json::Value int_array(const std::vector<int64_t>& values) {
  json::Value a = json::Value::array();
  for (int64_t v : values)
    a.push(v);
  return a;
}

}  // namespace

std::string save_dp_checkpoint(const std::string& out_dir, const CausalLM& model,
                               const AdamW& adamw, const ZeroAdamW* zero,
                               const TrainingState& state, Communicator& world) {
  const fs::path root = fs::path(out_dir) / "checkpoints";
  const std::string name = fmt::format("step-{:08d}", state.step);
  const fs::path target = root / name;
  const fs::path staged = root / fmt::format(".{}.tmp.dp", name);
  if (world.rank() == 0) {
    fs::create_directories(root);
    fs::remove_all(staged);
    fs::create_directories(staged);
  }
  world.barrier();
  if (zero != nullptr) {
    const FlatParamLayout& l = zero->layout();
    const int r = world.rank(), n = world.size();
    std::map<std::string, std::string> meta = {
        {"partition_offset", std::to_string(l.partition_offsets[static_cast<size_t>(r)])},
        {"partition_size", std::to_string(l.partition_sizes[static_cast<size_t>(r)])},
        {"total_numel", std::to_string(l.total)},
        {"dp_rank", std::to_string(r)},
        {"dp_size", std::to_string(n)},
        {"zero_stage", std::to_string(zero->stage())}};
    io::save_safetensors((staged / partition_file(r, n)).string(),
                         {{"exp_avg", zero->exp_avg()},
                          {"exp_avg_sq", zero->exp_avg_sq()},
                          {"step", Tensor::from_vector_i64({zero->step_count()}, {})}},
                         meta);
  }
  if (world.rank() == 0) {
    const DType dtype = checkpoint_files::model_dtype(model);
    io::write_file_atomically((staged / "config.json").string(),
                              hf_config_json(model.config(), dtype).dump(2) + "\n");
    io::save_safetensors((staged / io::kSafetensorsFileName).string(),
                         checkpoint_files::ordered_state(model), {{"format", "pt"}});
    if (zero == nullptr)
      io::save_safetensors((staged / kOptimizerFile).string(), adamw.state_dict());
  }
  world.barrier();  // every partition file is written
  if (world.rank() == 0) {
    json::Value manifest = training_state_json(state);
    if (zero != nullptr) {
      const FlatParamLayout& l = zero->layout();
      json::Value z = json::Value::object();
      json::Value files = json::Value::array(), params = json::Value::array();
      for (int r = 0; r < world.size(); ++r) {
        const std::string file = partition_file(r, world.size());
        AUTOTP_CHECK(fs::is_regular_file(staged / file),
                     "save_dp_checkpoint: rank {}'s partition {} is missing in {}", r, file,
                     staged.string());
        files.push(file);
      }
      for (size_t i = 0; i < l.numels.size(); ++i) {
        params.push(json::Value::array().push(adamw.params()[i].first).push(l.numels[i]));
      }
      z.set("stage", static_cast<int64_t>(zero->stage()))
          .set("dp_size", static_cast<int64_t>(world.size()))
          .set("total_numel", l.total)
          .set("partition_offsets", int_array(l.partition_offsets))
          .set("partition_sizes", int_array(l.partition_sizes))
          .set("files", files)
          .set("params", params);
      manifest.set("zero", z);
    }
    // The manifest last: its presence marks the directory complete.
    io::write_file_atomically((staged / kStateFile).string(), manifest.dump(2) + "\n");
    checkpoint_files::sync_directory(staged.string());
    checkpoint_files::replace_directory(staged.string(), target.string());
    io::write_file_atomically((root / "latest").string(), name + "\n");
  }
  world.barrier();
  return target.string();
}

TrainingState load_any_training_checkpoint(const std::string& checkpoint_dir, CausalLM& model,
                                           AdamW& adamw, ZeroAdamW* zero) {
  const fs::path dir(checkpoint_dir);
  const TrainingState state = read_training_state(checkpoint_dir);
  const json::Value manifest = json::parse_file((dir / kStateFile).string());
  const FlatParamLayout layout = FlatParamLayout::build(adamw.params(), 1);
  FlatAdamWState full;
  bool have_full = false;
  if (const json::Value* z = manifest.find("zero")) {
    // Check everything is there and matches before touching the model.
    const json::Value& params = (*z)["params"];
    AUTOTP_CHECK(params.size() == adamw.params().size(),
                 "{}: the ZeRO state covers {} parameters, the model has {}", checkpoint_dir,
                 params.size(), adamw.params().size());
    for (size_t i = 0; i < params.size(); ++i) {
      const std::string pname = params.at(i).at(0).as_string();
      const int64_t numel = params.at(i).at(1).as_int64();
      AUTOTP_CHECK(pname == adamw.params()[i].first && numel == layout.numels[i],
                   "{}: ZeRO parameter {} is '{}' ({} elements), the model's is '{}' ({})",
                   checkpoint_dir, i, pname, numel, adamw.params()[i].first, layout.numels[i]);
    }
    const Tensor& first = adamw.params().front().second;
    full.exp_avg = Tensor::zeros({layout.total}, first.dtype(), first.device());
    full.exp_avg_sq = Tensor::zeros({layout.total}, first.dtype(), first.device());
    const json::Value& files = (*z)["files"];
    for (size_t r = 0; r < files.size(); ++r) {
      const fs::path file = dir / files.at(r).as_string();
      AUTOTP_CHECK(fs::is_regular_file(file),
                   "'{}' is not a complete training checkpoint: ZeRO partition {} of {} ({}) is "
                   "missing",
                   checkpoint_dir, r, files.size(), file.filename().string());
      const io::SafetensorsFile part(file.string());
      const int64_t offset = std::stoll(part.metadata().at("partition_offset"));
      const Tensor m = part.load("exp_avg", first.dtype());
      const Tensor v = part.load("exp_avg_sq", first.dtype());
      AUTOTP_CHECK(offset >= 0 && offset + m.numel() <= layout.total && v.numel() == m.numel(),
                   "{}: partition at offset {} with {} elements does not fit {} elements",
                   file.string(), offset, m.numel(), layout.total);
      full.exp_avg.narrow(0, offset, m.numel()).copy_(m);
      full.exp_avg_sq.narrow(0, offset, v.numel()).copy_(v);
      full.step = static_cast<int64_t>(part.load("step").to_vector()[0]);
    }
    have_full = true;
  }
  // Weights (checked by name and shape before anything is copied).
  const io::SafetensorsCheckpoint weights(checkpoint_dir);
  if (!have_full) {
    const fs::path optimizer_file = dir / kOptimizerFile;
    AUTOTP_CHECK(fs::is_regular_file(optimizer_file),
                 "'{}' is not a complete training checkpoint: {} is missing", checkpoint_dir,
                 kOptimizerFile);
    const io::SafetensorsFile optimizer_state(optimizer_file.string());
    NamedTensors moments;
    for (const io::SafetensorsTensorInfo& info : optimizer_state.tensors()) {
      moments.emplace_back(info.name, optimizer_state.load(info.name));
    }
    checkpoint_files::load_weights(model, weights, /*tied_lm_head_allowed=*/false);
    try {
      adamw.load_state_dict(moments);
    } catch (const Error& e) {
      throw Error(fmt::format("{}: {}", optimizer_file.string(), e.what()));
    }
    if (zero != nullptr) zero->load_full_state(flatten_adamw_state(adamw, layout));
    return state;
  }
  checkpoint_files::load_weights(model, weights, /*tied_lm_head_allowed=*/false);
  if (zero != nullptr) {
    zero->load_full_state(full);
  } else {
    adamw.load_state_dict(unflatten_adamw_state(full, adamw.params(), layout));
  }
  return state;
}

std::vector<std::string> incomplete_checkpoints(const std::string& out_dir) {
  std::vector<std::string> out;
  const fs::path root = fs::path(out_dir) / "checkpoints";
  if (!fs::is_directory(root)) return out;
  for (const fs::directory_entry& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (!e.is_directory() || !n.starts_with("step-")) continue;
    try {
      read_training_state(e.path().string());
    } catch (const Error&) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

}  // namespace autotp
