// SafetensorsCheckpoint (model.safetensors or index + shards, cross-checked) and save_sharded
// (transformers' shard split, file names and index layout).
#include "core/io/sharded_safetensors.h"

#include <filesystem>
#include <set>
#include <unordered_map>

#include "core/io/atomic_file.h"
#include "core/io/json.h"

namespace autotp::io {

namespace fs = std::filesystem;

namespace {

// "model-00001-of-00003.safetensors"
std::string shard_name(size_t index, size_t count) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index + 1, count);
}

bool all_digits(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return !s.empty();
}

// True for names shard_name() produces.
bool is_shard_name(std::string_view name) {
  constexpr std::string_view kPrefix = "model-", kOf = "-of-", kSuffix = ".safetensors";
  if (name.size() != kPrefix.size() + 5 + kOf.size() + 5 + kSuffix.size()) return false;
  return name.starts_with(kPrefix) && all_digits(name.substr(6, 5)) && name.substr(11, 4) == kOf &&
         all_digits(name.substr(15, 5)) && name.ends_with(kSuffix);
}

// A shard named by an index must be a plain file in the checkpoint directory.
bool is_plain_file_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

}  // namespace

// ---- reading ---------------------------------------------------------------------

SafetensorsCheckpoint::SafetensorsCheckpoint(std::string dir) : dir_(std::move(dir)) {
  const fs::path single = fs::path(dir_) / kSafetensorsFileName;
  const fs::path index_path = fs::path(dir_) / kSafetensorsIndexName;
  if (fs::exists(single)) {
    files_.emplace_back(single.string());
    for (const auto& t : files_[0].tensors())
      owner_[t.name] = 0;
    return;
  }
  AUTOTP_CHECK(fs::exists(index_path),
               "'{}' holds no safetensors weights: neither {} nor {} exists", dir_,
               kSafetensorsFileName, kSafetensorsIndexName);
  const std::string index_file = index_path.string();
  const json::Value index = json::parse_file(index_file);
  const json::Value& weight_map = index["weight_map"];
  AUTOTP_CHECK(weight_map.is_object(), "{}: {}: expected an object {{tensor name: file}}, got {}",
               index_file, weight_map.path(), json::kind_name(weight_map.kind()));

  // The shards in order of first mention, and the tensors the index places in each.
  std::unordered_map<std::string, std::string> file_of;  // tensor -> shard file
  std::vector<std::string> shard_files;
  std::map<std::string, std::vector<std::string>> listed;  // shard file -> tensors
  for (size_t i = 0; i < weight_map.size(); ++i) {
    const std::string& name = weight_map.keys()[i];
    const json::Value& file_value = weight_map.elements()[i];
    const std::string& file = file_value.as_string();
    AUTOTP_CHECK(is_plain_file_name(file),
                 "{}: {}: '{}' is not a file name in the checkpoint "
                 "directory",
                 index_file, file_value.path(), file);
    file_of[name] = file;
    auto& names = listed[file];
    if (names.empty()) shard_files.push_back(file);
    names.push_back(name);
  }

  for (const std::string& file : shard_files) {
    const std::vector<std::string>& names = listed[file];
    const fs::path shard_path = fs::path(dir_) / file;
    AUTOTP_CHECK(fs::exists(shard_path),
                 "{}: shard file '{}' (holding '{}' and {} more tensors) "
                 "is missing from '{}'",
                 index_file, file, names[0], names.size() - 1, dir_);
    SafetensorsFile shard(shard_path.string());
    for (const auto& t : shard.tensors()) {
      const auto it = file_of.find(t.name);
      AUTOTP_CHECK(it != file_of.end(), "{}: holds tensor '{}', which {} does not list",
                   shard.path(), t.name, index_file);
      AUTOTP_CHECK(it->second == file,
                   "tensor '{}' is listed twice: '{}' holds it, but {} places "
                   "it in '{}'",
                   t.name, shard.path(), index_file, it->second);
    }
    for (const std::string& name : names) {
      AUTOTP_CHECK(shard.contains(name), "{} places tensor '{}' in '{}', which does not hold it",
                   index_file, name, shard.path());
      owner_[name] = files_.size();
    }
    files_.push_back(std::move(shard));
  }
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(owner_.size());
  for (const auto& [name, file] : owner_)
    out.push_back(name);
  return out;
}

const SafetensorsFile& SafetensorsCheckpoint::owner(const std::string& name) const {
  const auto it = owner_.find(name);
  AUTOTP_CHECK(it != owner_.end(), "checkpoint '{}' has no tensor named '{}' ({} tensors)", dir_,
               name, owner_.size());
  return files_[it->second];
}

const SafetensorsTensorInfo& SafetensorsCheckpoint::info(const std::string& name) const {
  return owner(name).info(name);
}

Tensor SafetensorsCheckpoint::load(const std::string& name, std::optional<DType> dtype) const {
  return owner(name).load(name, dtype);
}

std::map<std::string, Tensor> SafetensorsCheckpoint::load_all(std::optional<DType> dtype) const {
  std::map<std::string, Tensor> out;
  for (const auto& [name, file] : owner_)
    out.emplace(name, files_[file].load(name, dtype));
  return out;
}

std::map<std::string, Tensor> load_sharded(const std::string& dir, std::optional<DType> dtype) {
  return SafetensorsCheckpoint(dir).load_all(dtype);
}

// ---- writing ---------------------------------------------------------------------

std::vector<std::string> save_sharded(const std::string& dir,
                                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                                      uint64_t max_shard_bytes,
                                      const std::map<std::string, std::string>& metadata) {
  AUTOTP_CHECK(max_shard_bytes > 0, "save_sharded: max_shard_bytes must be positive");
  std::set<std::string_view> seen;
  for (const auto& [name, tensor] : tensors) {
    AUTOTP_CHECK(seen.insert(name).second, "{}: tensor name '{}' appears twice", dir, name);
    AUTOTP_CHECK(tensor.defined(), "{}: tensor '{}' is undefined", dir, name);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  AUTOTP_CHECK(!ec, "cannot create checkpoint directory '{}': {}", dir, ec.message());

  // transformers' split: in order; a tensor that would overflow the current shard starts a
  // new one, and one larger than the limit gets its own.
  std::vector<std::vector<size_t>> shards;
  std::vector<size_t> current;
  uint64_t current_bytes = 0, total_bytes = 0, total_numel = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.itemsize();
    total_bytes += bytes;
    total_numel += static_cast<uint64_t>(t.numel());
    if (bytes > max_shard_bytes) {
      shards.push_back({i});
      continue;
    }
    if (current_bytes + bytes > max_shard_bytes && !current.empty()) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(i);
    current_bytes += bytes;
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));

  std::vector<std::string> written;
  std::map<std::string, std::string> weight_map;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file =
        shards.size() == 1 ? kSafetensorsFileName : shard_name(s, shards.size());
    std::vector<std::pair<std::string, Tensor>> part;
    part.reserve(shards[s].size());
    for (size_t i : shards[s]) {
      part.push_back(tensors[i]);
      weight_map[tensors[i].first] = file;
    }
    save_safetensors((fs::path(dir) / file).string(), part, metadata);
    written.push_back(file);
  }
  const bool sharded = shards.size() > 1;
  if (sharded) {
    json::Value map = json::Value::object();
    for (const auto& [name, file] : weight_map)
      map.set(name, file);
    json::Value index = json::Value::object();
    index.set(
        "metadata",
        json::Value::object().set("total_parameters", total_numel).set("total_size", total_bytes));
    index.set("weight_map", std::move(map));
    write_file_atomically((fs::path(dir) / kSafetensorsIndexName).string(), index.dump(2) + "\n");
  }

  // Remove weight files of an earlier save: model.safetensors would shadow a new index.
  const std::set<std::string> keep(written.begin(), written.end());
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if ((name == kSafetensorsFileName && sharded) || (name == kSafetensorsIndexName && !sharded) ||
        (is_shard_name(name) && keep.count(name) == 0)) {
      stale.push_back(entry.path());
    }
  }
  for (const fs::path& path : stale) {
    fs::remove(path, ec);
    AUTOTP_CHECK(!ec, "cannot remove the stale weight file '{}': {}", path.string(), ec.message());
  }
  return written;
}

}  // namespace autotp::io
