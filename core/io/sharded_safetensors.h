// Hugging Face checkpoint weights in a directory: one model.safetensors, or shards
// model-00001-of-0000N.safetensors listed by model.safetensors.index.json.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/io/safetensors.h"

namespace autotp::io {

inline constexpr const char* kSafetensorsFileName = "model.safetensors";
inline constexpr const char* kSafetensorsIndexName = "model.safetensors.index.json";
// transformers' default max_shard_size ("5GB").
inline constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000;

// The safetensors weights of a checkpoint directory, opened and validated (every header read,
// the index checked against the shards) without reading tensor data. Like transformers, it
// reads model.safetensors when present, else the index and its shards.
class SafetensorsCheckpoint {
 public:
  // Throws autotp::Error naming the directory or file: no weights found, a shard file missing,
  // a tensor listed twice or held by a shard other than the one the index names.
  explicit SafetensorsCheckpoint(std::string dir);

  const std::string& dir() const { return dir_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return owner_.count(name) > 0; }
  const SafetensorsTensorInfo& info(const std::string& name) const;
  Tensor load(const std::string& name, std::optional<DType> dtype = std::nullopt) const;
  std::map<std::string, Tensor> load_all(std::optional<DType> dtype = std::nullopt) const;

 private:
  const SafetensorsFile& owner(const std::string& name) const;

  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> owner_;  // tensor name -> index into files_
};

// Every tensor of the checkpoint in `dir` (see SafetensorsCheckpoint).
std::map<std::string, Tensor> load_sharded(const std::string& dir,
                                           std::optional<DType> dtype = std::nullopt);

// Writes `tensors` into `dir` (created if needed) as transformers does: tensors are taken in
// order and a new shard starts when the next tensor would push the current one past
// `max_shard_bytes` (a tensor larger than that gets a shard of its own). One shard is written
// as model.safetensors; several as model-0000k-of-0000n.safetensors plus the index
// {"metadata": {"total_parameters": elements, "total_size": bytes}, "weight_map": {name: file}}
// laid out as transformers writes it (json.dumps(indent=2, sort_keys=True)). Each file is written
// atomically; weight files of an earlier save that the new one does not use are removed afterwards.
// Returns the weight files written.
std::vector<std::string> save_sharded(const std::string& dir,
                                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                                      uint64_t max_shard_bytes = kDefaultMaxShardBytes,
                                      const std::map<std::string, std::string>& metadata = {
                                          {"format", "pt"}});

}  // namespace autotp::io
