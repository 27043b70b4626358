// The model section resolved: YAML or config.json text maps into ModelConfig, a directory's
// weights detected, and the model built (loaded or initialized from the seed).
#include "engine/model_source.h"

#include "engine/hf_config.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/checkpoint.h"
#include "models/registry.h"

namespace autotp {

namespace {

namespace fs = std::filesystem;

std::string yaml_scalar_text(const YAML::Node& v) {
  if (v.IsNull()) return "null";
  if (v.IsScalar()) return v.Scalar();
  return YAML::Dump(v);  // lists: only keys that autotp ignores hold them
}

// Weight files in `dir` that autotp does not read (safetensors shards without their index,
// PyTorch .bin/.pt files, ...): up to three names, then a count; empty when there is none.
std::string unreadable_weight_files(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    // Weights by their names: every *.safetensors, and PyTorch/GGUF files named model* or
    // pytorch_model* (not transformers' training_args.bin, optimizer.pt, rng_state.pth).
    const std::string name = e.path().filename().string();
    const std::string ext = e.path().extension().string();
    const bool model_named = name.rfind("model", 0) == 0 || name.rfind("pytorch_model", 0) == 0;
    if (ext == ".safetensors" || (model_named && (ext == ".bin" || ext == ".pt" || ext == ".pth" ||
                                                  ext == ".ckpt" || ext == ".gguf"))) {
      names.push_back(e.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  std::string listed;
  for (size_t i = 0; i < names.size() && i < 3; ++i)
    listed += (i ? ", " : "") + names[i];
  if (names.size() > 3) listed += fmt::format(" and {} more", names.size() - 3);
  return listed;
}

}  // namespace

ModelConfigMap model_config_map_from_yaml(const YAML::Node& node, const std::string& where) {
  AUTOTP_CHECK(node.IsMap(), "{}: 'model' must be a map of Hugging Face config.json fields", where);
  ModelConfigMap map;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key == "path") continue;
    const YAML::Node v = it->second;
    if (v.IsMap()) {
      auto& inner = map.objects[key];
      for (auto jt = v.begin(); jt != v.end(); ++jt) {
        AUTOTP_CHECK(!jt->second.IsMap(), "{} line {}: 'model.{}.{}' must not be a map", where,
                     jt->first.Mark().line + 1, key, jt->first.Scalar());
        inner[jt->first.Scalar()] = yaml_scalar_text(jt->second);
      }
    } else {
      map.scalars[key] = yaml_scalar_text(v);
    }
  }
  return map;
}

ModelConfig model_config_from_json_file(const std::string& path) {
  const json::Value root = json::parse_file(path);
  try {
    return ModelConfig::from_map(model_config_map_from_json(root));
  } catch (const Error& e) {
    AUTOTP_FAIL("{}: {}", path, e.what());
  }
}

bool has_hf_weights(const std::string& dir) {
  return fs::is_regular_file(fs::path(dir) / "model.safetensors") ||
         fs::is_regular_file(fs::path(dir) / "model.safetensors.index.json");
}

ModelSource resolve_model_source(const ModelSection& section) {
  AUTOTP_CHECK(section.present(),
               "the config has no 'model' section: give Hugging Face config.json fields "
               "(model_type, vocab_size, hidden_size, ...) or 'path:' to a config.json or a "
               "checkpoint directory");
  ModelSource source;
  if (section.path.empty()) {
    try {
      source.config =
          ModelConfig::from_map(model_config_map_from_yaml(section.node, section.where));
    } catch (const Error& e) {
      // An error naming a field given with --set is about that --set, not the file's line.
      const std::string message = e.what();
      std::string where = section.where;
      for (const std::string& field : section.overridden) {
        if (message.find("'" + field + "'") != std::string::npos) where = "--set model." + field;
      }
      AUTOTP_FAIL("{}: model: {}", where, message);
    }
    source.description = "inline config";
    return source;
  }
  for (auto it = section.node.begin(); it != section.node.end(); ++it) {
    const std::string key = it->first.Scalar();
    AUTOTP_CHECK(key == "path",
                 "{}: model: give either 'path' or inline config.json fields, not both (found "
                 "'{}' beside 'path' at line {})",
                 section.where, key, it->first.Mark().line + 1);
  }
  const fs::path path(section.path);
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path config_file = path / "config.json";
    AUTOTP_CHECK(fs::is_regular_file(config_file),
                 "{}: model.path '{}' is a directory without config.json (expected a Hugging "
                 "Face checkpoint directory or a config.json file)",
                 section.where, section.path);
    source.config = model_config_from_json_file(config_file.string());
    if (has_hf_weights(section.path)) {
      source.weights_dir = section.path;
      source.description = fmt::format("path {} (Hugging Face weights)", section.path);
    } else {
      // Weights that are there but unreadable must not turn into a run from random weights.
      const std::string unreadable = unreadable_weight_files(path);
      AUTOTP_CHECK(unreadable.empty(),
                   "{}: model.path '{}' holds weights autotp cannot read ({}): it reads "
                   "model.safetensors, or model.safetensors.index.json with the shards it lists "
                   "(transformers' save_pretrained writes them); to start from the seed instead, "
                   "point model.path at the config.json",
                   section.where, section.path, unreadable);
      source.description =
          fmt::format("path {} (config.json only: weights from the seed)", section.path);
    }
  } else {
    AUTOTP_CHECK(fs::is_regular_file(path, ec),
                 "{}: model.path '{}' does not exist (expected a config.json file or a "
                 "Hugging Face checkpoint directory)",
                 section.where, section.path);
    source.config = model_config_from_json_file(section.path);
    source.description = fmt::format("path {} (weights from the seed)", section.path);
  }
  return source;
}

std::shared_ptr<CausalLM> build_model(const ModelSource& source, uint64_t seed, DType dtype) {
  if (!source.weights_dir.empty()) {
    return load_hf_model(source.weights_dir, dtype);
  }
  return create_model(source.config, seed, dtype);
}

}  // namespace autotp
