// TEMPORARY stand-in for engine/checkpoint.cpp (being written on branch h-ckpt) so the trainer
// and its tests link. DELETE THIS FILE WHEN MERGING h-ckpt. Minimal: unsharded files only.
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/json.h"
#include "core/io/safetensors.h"
#include "engine/checkpoint.h"
#include "engine/model_source.h"
#include "models/registry.h"

namespace autotp {

namespace {

namespace fs = std::filesystem;

json::Value config_json(const ModelConfig& config) {
  const ModelConfigMap map = config.to_map();
  const auto value_of = [](const std::string& text) -> json::Value {
    if (text == "null") return json::Value();
    if (text == "true") return json::Value(true);
    if (text == "false") return json::Value(false);
    try {
      return json::parse(text);  // numbers
    } catch (const Error&) {
      return json::Value(text);
    }
  };
  json::Value root = json::Value::object();
  root.set("architectures", json::Value::array().push(config.architecture()));
  for (const auto& [k, v] : map.scalars) {
    json::Value value = value_of(v);
    if (!value.is_number() && !value.is_bool() && !value.is_null()) value = json::Value(v);
    root.set(k, value);
  }
  for (const auto& [k, obj] : map.objects) {
    json::Value o = json::Value::object();
    for (const auto& [ik, iv] : obj) {
      json::Value value = value_of(iv);
      if (!value.is_number() && !value.is_bool() && !value.is_null()) value = json::Value(iv);
      o.set(ik, value);
    }
    root.set(k, o);
  }
  return root;
}

void load_params(CausalLM& model, const std::map<std::string, Tensor>& tensors,
                 const std::string& what) {
  std::set<std::string> seen;
  NoGradGuard no_grad;
  for (const auto& [name, p] : model.named_parameters()) {
    auto it = tensors.find(name);
    AUTOTP_CHECK(it != tensors.end(), "{}: missing tensor '{}'", what, name);
    AUTOTP_CHECK(it->second.shape() == p.shape(), "{}: tensor '{}' has the wrong shape", what,
                 name);
    p.copy_(it->second.to(p.dtype()));
    seen.insert(name);
  }
  for (const auto& [name, t] : tensors) {
    AUTOTP_CHECK(seen.count(name) != 0, "{}: unexpected tensor '{}'", what, name);
  }
}

std::string step_dir_name(int64_t step) {
  return fmt::format("step-{:08d}", step);
}

}  // namespace

ModelConfig load_hf_config(const std::string& dir) {
  return model_config_from_json_file((fs::path(dir) / "config.json").string());
}

std::shared_ptr<CausalLM> load_hf_model(const std::string& dir, DType dtype) {
  std::shared_ptr<CausalLM> model = create_model_uninitialized(load_hf_config(dir), dtype);
  const std::string file = (fs::path(dir) / "model.safetensors").string();
  load_params(*model, io::load_safetensors(file), file);
  return model;
}

void export_hf_model(const CausalLM& model, const std::string& dir, std::optional<DType> dtype,
                     int64_t /*max_shard_bytes*/) {
  const fs::path target(dir);
  const fs::path tmp = target.string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, p] : model.named_parameters()) {
    tensors.emplace_back(name, dtype ? p.detach().to(*dtype) : p.detach());
  }
  io::save_safetensors((tmp / "model.safetensors").string(), tensors, {{"format", "pt"}});
  io::write_file_atomically((tmp / "config.json").string(), config_json(model.config()).dump(2));
  fs::remove_all(target);
  fs::rename(tmp, target);
}

std::string save_training_checkpoint(const std::string& out_dir, const CausalLM& model,
                                     const AdamW& optimizer, const TrainingState& state) {
  const fs::path root = fs::path(out_dir) / "checkpoints";
  fs::create_directories(root);
  const fs::path target = root / step_dir_name(state.step);
  const fs::path tmp = target.string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  std::vector<std::pair<std::string, Tensor>> weights;
  for (const auto& [name, p] : model.named_parameters())
    weights.emplace_back(name, p.detach());
  io::save_safetensors((tmp / "model.safetensors").string(), weights);
  io::save_safetensors((tmp / "optimizer.safetensors").string(), optimizer.state_dict());
  json::Value s = json::Value::object();
  s.set("step", state.step);
  s.set("seed", state.seed);
  s.set("tokens_seen", state.tokens_seen);
  s.set("config_yaml", state.config_yaml);
  io::write_file_atomically((tmp / "state.json").string(), s.dump(2));
  fs::remove_all(target);
  fs::rename(tmp, target);
  io::write_file_atomically((root / "latest").string(), step_dir_name(state.step) + "\n");
  return target.string();
}

std::optional<std::string> latest_training_checkpoint(const std::string& out_dir) {
  const fs::path root = fs::path(out_dir) / "checkpoints";
  std::ifstream in(root / "latest");
  if (!in.good()) return std::nullopt;
  std::string name;
  std::getline(in, name);
  const fs::path dir = root / name;
  if (!fs::is_regular_file(dir / "state.json")) return std::nullopt;
  return dir.string();
}

TrainingState load_training_checkpoint(const std::string& checkpoint_dir, CausalLM& model,
                                       AdamW& optimizer) {
  const fs::path dir(checkpoint_dir);
  const json::Value s = json::parse_file((dir / "state.json").string());
  TrainingState state;
  state.step = s.get<int64_t>("step");
  state.seed = s.get<uint64_t>("seed");
  state.tokens_seen = s.get<int64_t>("tokens_seen");
  state.config_yaml = s.get<std::string>("config_yaml");
  const std::string weights = (dir / "model.safetensors").string();
  load_params(model, io::load_safetensors(weights), weights);
  NamedTensors opt;
  for (auto& [name, t] : io::load_safetensors((dir / "optimizer.safetensors").string())) {
    opt.emplace_back(name, t);
  }
  optimizer.load_state_dict(opt);
  return state;
}

}  // namespace autotp
