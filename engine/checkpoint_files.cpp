// Strict name/shape matching of checkpoint weights against a model, save order of a model's
// tensors, and the rename sequence that replaces a directory without leaving a partial one.
#include "engine/checkpoint_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/autograd/grad_mode.h"
#include "core/error.h"

namespace autotp::checkpoint_files {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTiedLmHead = "lm_head.weight";
constexpr const char* kEmbedTokens = "model.embed_tokens.weight";

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names)
    out += (out.empty() ? "" : ", ") + name;
  return out;
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> ordered_state(const Module& model) {
  const StateDict all = model.state_dict();
  std::vector<std::pair<std::string, Tensor>> out;
  std::set<std::string> seen;
  auto add = [&](const std::string& name) {
    if (!seen.insert(name).second) return;
    out.emplace_back(name, all.at(name));
  };
  for (const auto& [name, t] : model.named_parameters())
    add(name);
  for (const auto& [name, t] : model.named_buffers())
    add(name);
  for (const auto& [name, t] : all)
    add(name);  // tied tensors under their other names
  return out;
}

DType model_dtype(const Module& model) {
  const auto params = model.named_parameters();
  return params.empty() ? DType::F32 : params.front().second.dtype();
}

void load_weights(const Module& model, const io::SafetensorsCheckpoint& weights,
                  bool tied_lm_head_allowed) {
  const StateDict targets = model.state_dict();
  std::vector<std::string> missing, unexpected, problems;
  for (const auto& [name, dst] : targets) {
    if (!weights.contains(name)) {
      missing.push_back(name);
      continue;
    }
    const io::SafetensorsTensorInfo& info = weights.info(name);
    if (info.shape != dst.shape()) {
      problems.push_back(fmt::format("'{}' has shape {} in the checkpoint, the model needs {}",
                                     name, shape_str(info.shape), shape_str(dst.shape())));
    }
    if (!info.dtype.has_value() || is_floating(*info.dtype) != is_floating(dst.dtype())) {
      problems.push_back(
          fmt::format("'{}' has dtype {} in the checkpoint, which cannot be "
                      "loaded into a {} tensor",
                      name, info.dtype_name, dtype_name(dst.dtype())));
    }
  }
  for (const std::string& name : weights.names()) {
    if (targets.count(name) > 0) continue;
    if (tied_lm_head_allowed && name == kTiedLmHead && targets.count(kEmbedTokens) > 0 &&
        weights.info(name).shape == targets.at(kEmbedTokens).shape()) {
      continue;  // a tied model's copy of the embedding; transformers ignores it too
    }
    unexpected.push_back(name);
  }
  if (!missing.empty()) {
    problems.push_back(
        fmt::format("missing tensors ({}): {}", missing.size(), join_names(missing)));
  }
  if (!unexpected.empty()) {
    problems.push_back(
        fmt::format("unexpected tensors ({}): {}", unexpected.size(), join_names(unexpected)));
  }
  if (!problems.empty()) {
    std::string lines;
    for (const std::string& p : problems)
      lines += "\n  " + p;
    AUTOTP_FAIL("checkpoint '{}' does not match the model (nothing was loaded):{}", weights.dir(),
                lines);
  }
  NoGradGuard no_grad;
  for (const auto& [name, dst] : targets)
    dst.copy_(weights.load(name, dst.dtype()));
}

void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // some file systems cannot sync a directory: not an error
  ::close(fd);
}

void replace_directory(const std::string& staged, const std::string& target) {
  std::error_code ec;
  const fs::path target_path(target);
  const std::string parent = target_path.parent_path().string();
  if (!fs::exists(fs::symlink_status(target_path))) {
    fs::rename(staged, target_path, ec);
    AUTOTP_CHECK(!ec, "cannot rename '{}' to '{}': {}", staged, target, ec.message());
    sync_directory(parent);
    return;
  }
  const std::string old = fmt::format("{}.old.{}", target, ::getpid());
  fs::remove_all(old, ec);
  fs::rename(target_path, old, ec);
  AUTOTP_CHECK(!ec, "cannot move the existing '{}' aside to '{}': {}", target, old, ec.message());
  fs::rename(staged, target_path, ec);
  if (ec) {
    std::error_code restore;
    fs::rename(old, target_path, restore);  // put the old directory back
    AUTOTP_FAIL("cannot rename '{}' to '{}': {}", staged, target, ec.message());
  }
  sync_directory(parent);
  fs::remove_all(old, ec);
  AUTOTP_CHECK(!ec, "replaced '{}', but cannot remove the previous version at '{}': {}", target,
               old, ec.message());
}

}  // namespace autotp::checkpoint_files
