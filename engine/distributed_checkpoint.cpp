// Distributed training checkpoints: per-rank weight shards and optimizer partitions with
// their splits in the manifest (written last), and any layout loaded parameter by parameter.
#include "engine/distributed_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/ranges.h>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/io/sharded_safetensors.h"
#include "engine/checkpoint_files.h"
#include "engine/hf_config.h"
#include "engine/saved_checkpoint.h"
#include "layers/parallel/tensor_parallel_layer.h"

namespace autotp {

namespace fs = std::filesystem;

namespace {

// File names: tp = 1 keeps the single-process names (model.safetensors makes the directory an
// HF model directory); tp > 1 adds the TP rank.
std::string model_file(int t, int tp) {
  return tp == 1 ? std::string(io::kSafetensorsFileName)
                 : fmt::format("model-tp{:05d}-of-{:05d}.safetensors", t, tp);
}
std::string optimizer_file(int t, int tp) {
  return tp == 1 ? std::string(kCheckpointOptimizerFile)
                 : fmt::format("optimizer-tp{:05d}-of-{:05d}.safetensors", t, tp);
}
std::string partition_file(int t, int tp, int d, int dp) {
  return tp == 1 ? fmt::format("optimizer-zero-r{:05d}-of-{:05d}.safetensors", d, dp)
                 : fmt::format("optimizer-zero-tp{:05d}-r{:05d}-of-{:05d}.safetensors", t, d, dp);
}

json::Value int_array(const std::vector<int64_t>& values) {
  json::Value a = json::Value::array();
  for (int64_t v : values)
    a.push(v);
  return a;
}

// How a sharded tensor was split: its full shape, the logical view, the split dim of the view
// and widths[sub-parameter][rank].
json::Value split_json(const ParamSplitInfo& info) {
  json::Value widths = json::Value::array();
  for (const auto& w : info.plan.widths)
    widths.push(int_array(w));
  json::Value out = json::Value::object();
  out.set("shape", int_array(info.original_shape))
      .set("view", int_array(info.plan.view))
      .set("dim", info.plan.dim)
      .set("widths", widths);
  return out;
}

// Every rank learns whether any rank failed (so none waits in a barrier for a rank that
// threw); the error names the first failing rank and its message.
void throw_if_any_rank_failed(Communicator& world, const std::string& failure,
                              const std::string& what) {
  const std::vector<uint8_t> mine(failure.begin(), failure.end());
  const std::vector<std::vector<uint8_t>> all = world.exchange_bytes(mine);
  for (size_t r = 0; r < all.size(); ++r) {
    if (all[r].empty()) continue;
    AUTOTP_FAIL("{}: rank {} failed: {}", what, r, std::string(all[r].begin(), all[r].end()));
  }
}

// The model's tensors in save order, each parameter named in `stand_ins` replaced by its
// stand-in (same shape required).
std::vector<std::pair<std::string, Tensor>> state_with(const Module& model,
                                                       const NamedTensors* stand_ins) {
  std::vector<std::pair<std::string, Tensor>> state = checkpoint_files::ordered_state(model);
  if (stand_ins == nullptr) return state;
  std::map<std::string, Tensor> by_name(stand_ins->begin(), stand_ins->end());
  size_t used = 0;
  for (auto& [name, t] : state) {
    const auto it = by_name.find(name);
    if (it == by_name.end()) continue;
    AUTOTP_CHECK(it->second.shape() == t.shape(),
                 "checkpoint: the stand-in for '{}' has shape {}, the parameter {}", name,
                 shape_str(it->second.shape()), shape_str(t.shape()));
    t = it->second;
    ++used;
  }
  AUTOTP_CHECK(used == by_name.size(),
               "checkpoint: {} of {} stand-in tensors name no tensor of the model",
               by_name.size() - used, by_name.size());
  return state;
}

}  // namespace

std::string UnshardedCheckpoint::layout() const {
  return fmt::format("tp {} x dp {}, ZeRO stage {}", tp_size, dp_size, zero_stage);
}

std::string save_distributed_checkpoint(const std::string& out_dir, const Module& model,
                                        const AdamW& adamw, const ZeroAdamW* zero,
                                        const TrainingState& state, const ParallelGrid& grid,
                                        const NamedTensors* stand_ins) {
  Communicator& world = *grid.world();
  const int t = grid.tp()->rank(), tp = grid.tp()->size();
  const int d = grid.dp()->rank(), dp = grid.dp()->size();
  const fs::path root = fs::path(out_dir) / kCheckpointsDir;
  const std::string name = fmt::format("step-{:08d}", state.step);
  const fs::path target = root / name;
  // Hidden and not a step-<N> name: never mistaken for a checkpoint.
  const fs::path staged = root / fmt::format(".{}.tmp.dist", name);
  std::string failure;
  if (world.rank() == 0) {
    try {
      fs::create_directories(root);
      fs::remove_all(staged);
      fs::create_directories(staged);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  throw_if_any_rank_failed(world, failure, "saving a checkpoint");
  const std::map<std::string, std::string> layout_meta = {{"tp_rank", std::to_string(t)},
                                                          {"tp_size", std::to_string(tp)},
                                                          {"dp_rank", std::to_string(d)},
                                                          {"dp_size", std::to_string(dp)}};
  try {
    if (d == 0) {
      std::map<std::string, std::string> meta = layout_meta;
      meta["format"] = "pt";
      io::save_safetensors((staged / model_file(t, tp)).string(), state_with(model, stand_ins),
                           meta);
      if (zero == nullptr) {
        io::save_safetensors((staged / optimizer_file(t, tp)).string(), adamw.state_dict(),
                             layout_meta);
      }
    }
    if (zero != nullptr) {
      const FlatParamLayout& l = zero->layout();
      std::map<std::string, std::string> meta = layout_meta;
      meta["partition_offset"] = std::to_string(l.partition_offsets[static_cast<size_t>(d)]);
      meta["partition_size"] = std::to_string(l.partition_sizes[static_cast<size_t>(d)]);
      meta["total_numel"] = std::to_string(l.total);
      meta["zero_stage"] = std::to_string(zero->stage());
      io::save_safetensors((staged / partition_file(t, tp, d, dp)).string(),
                           {{"exp_avg", zero->exp_avg()},
                            {"exp_avg_sq", zero->exp_avg_sq()},
                            {"step", Tensor::from_vector_i64({zero->step_count()}, {})}},
                           meta);
    }
    const auto* causal_lm = dynamic_cast<const CausalLM*>(&model);
    if (world.rank() == 0 && causal_lm != nullptr) {
      const DType dtype = stand_ins != nullptr && !stand_ins->empty()
                              ? stand_ins->front().second.dtype()
                              : checkpoint_files::model_dtype(model);
      io::write_file_atomically((staged / "config.json").string(),
                                hf_config_json(causal_lm->config(), dtype).dump(2) + "\n");
    }
  } catch (const std::exception& e) {
    failure = e.what();
  }
  throw_if_any_rank_failed(world, failure, fmt::format("saving checkpoint {}", target.string()));

  if (world.rank() == 0) {
    try {
      json::Value manifest = training_state_json(state);
      json::Value layout = json::Value::object();
      layout.set("tp_size", static_cast<int64_t>(tp))
          .set("dp_size", static_cast<int64_t>(dp))
          .set("zero_stage", static_cast<int64_t>(zero != nullptr ? zero->stage() : 0));
      json::Value models = json::Value::array(), optimizers = json::Value::array();
      std::vector<std::string> expected;
      for (int r = 0; r < tp; ++r) {
        models.push(model_file(r, tp));
        expected.push_back(model_file(r, tp));
        if (zero == nullptr) {
          optimizers.push(optimizer_file(r, tp));
          expected.push_back(optimizer_file(r, tp));
          continue;
        }
        json::Value parts = json::Value::array();
        for (int q = 0; q < dp; ++q) {
          parts.push(partition_file(r, tp, q, dp));
          expected.push_back(partition_file(r, tp, q, dp));
        }
        optimizers.push(parts);
      }
      for (const std::string& file : expected) {
        AUTOTP_CHECK(fs::is_regular_file(staged / file), "a rank's file {} is missing in {}", file,
                     staged.string());
      }
      json::Value params = json::Value::array();
      for (const auto& [pname, p] : adamw.params())
        params.push(pname);
      json::Value splits = json::Value::object();
      for (const auto& [pname, sharded] : sharded_parameters(model))
        splits.set(pname, split_json(sharded.split));
      json::Value files = json::Value::object();
      files.set("model", models).set("optimizer", optimizers);
      manifest.set("layout", layout)
          .set("files", files)
          .set("params", params)
          .set("splits", splits);
      // The manifest last: its presence marks the directory complete.
      io::write_file_atomically((staged / kCheckpointManifestFile).string(),
                                manifest.dump(2) + "\n");
      checkpoint_files::sync_directory(staged.string());
      checkpoint_files::replace_directory(staged.string(), target.string());
      io::write_file_atomically((root / "latest").string(), name + "\n");
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  throw_if_any_rank_failed(world, failure, fmt::format("saving checkpoint {}", target.string()));
  return target.string();
}

UnshardedCheckpoint read_unsharded_checkpoint(const std::string& checkpoint_dir) {
  SavedCheckpoint saved(checkpoint_dir);
  UnshardedCheckpoint out;
  out.state = saved.state();
  out.tp_size = saved.tp_size();
  out.dp_size = saved.dp_size();
  out.zero_stage = saved.zero_stage();
  for (const std::string& name : saved.names())
    out.weights.emplace_back(name, saved.read_full(name, SavedTensor::Weight));
  for (const std::string& name : saved.moment_names()) {
    out.adamw[name] = {saved.step(name), saved.read_full(name, SavedTensor::ExpAvg),
                       saved.read_full(name, SavedTensor::ExpAvgSq)};
  }
  return out;
}

namespace {

// load_any_training_checkpoint with the optimizer optional: with neither `adamw` nor `zero`
// only the weights are read.
TrainingState load_checkpoint(const std::string& checkpoint_dir, Module& model, AdamW* adamw,
                              ZeroAdamW* zero, const NamedTensors* stand_ins,
                              CheckpointReadStats* stats) {
  SavedCheckpoint saved(checkpoint_dir);
  const std::map<std::string, ShardedParameter> current = sharded_parameters(model);
  const std::string where = fmt::format("'{}' (saved at {})", checkpoint_dir, saved.layout());
  // The saved tensor's unsharded shape against the model's (from the headers and manifest).
  const auto check_shape = [&](const std::string& name, SavedTensor which, const Tensor& like) {
    const Shape full = saved.full_shape(name, which);
    const auto it = current.find(name);
    if (it == current.end()) {
      AUTOTP_CHECK(full == like.shape(), "{}: '{}' has shape {} there, the model's is {}", where,
                   name, shape_str(full), shape_str(like.shape()));
      return;
    }
    AUTOTP_CHECK(full == it->second.split.original_shape,
                 "{}: '{}' has shape {} there, the model's unsharded shape is {}", where, name,
                 shape_str(full), shape_str(it->second.split.original_shape));
  };
  // This rank's part of a saved tensor, shaped like `like`: only the pieces it needs are read.
  const auto local_part = [&](const std::string& name, SavedTensor which,
                              const Tensor& like) -> Tensor {
    const auto it = current.find(name);
    const Tensor part = it == current.end() ? saved.read_full(name, which)
                                            : saved.read_shard(name, which, it->second.split.plan,
                                                               it->second.tp_rank);
    AUTOTP_ASSERT(part.numel() == like.numel(), "'{}': a part of {} elements for a {} parameter",
                  name, part.numel(), shape_str(like.shape()));
    const Tensor out = part.reshape(like.shape()).to(like.dtype());
    saved.track(out);
    return out;
  };

  // Every name and shape checked (headers and manifest only) before anything is read or copied.
  const std::vector<std::pair<std::string, Tensor>> state = state_with(model, stand_ins);
  std::vector<std::string> missing, unexpected;
  std::set<std::string> model_names;
  for (const auto& [name, dst] : state) {
    model_names.insert(name);
    if (!saved.contains(name)) {
      missing.push_back(name);
      continue;
    }
    check_shape(name, SavedTensor::Weight, dst);
  }
  for (const std::string& name : saved.names()) {
    if (model_names.count(name) == 0) unexpected.push_back(name);
  }
  AUTOTP_CHECK(missing.empty() && unexpected.empty(),
               "{} does not match the model (nothing was loaded): missing tensors: [{}]; "
               "unexpected tensors: [{}]",
               where, fmt::join(missing, ", "), fmt::join(unexpected, ", "));
  // ZeRO's parameters (the same as AdamW's, or their f32 masters) carry the state when given.
  const NamedTensors no_params;
  const NamedTensors& params =
      zero != nullptr ? zero->params() : (adamw != nullptr ? adamw->params() : no_params);
  for (const auto& [name, p] : params) {
    if (!saved.has_moments(name)) continue;
    check_shape(name, SavedTensor::ExpAvg, p);
    check_shape(name, SavedTensor::ExpAvgSq, p);
  }
  int64_t flat_step = 0;
  if (zero != nullptr && !params.empty()) {
    // One flat state: every parameter stepped equally often (or none did).
    flat_step = saved.step(params[0].first);
    for (const auto& [name, p] : params) {
      AUTOTP_CHECK(saved.step(name) == flat_step,
                   "{}: optimizer state: parameter '{}' took {} steps, '{}' took {} (a flat state "
                   "needs equal counts)",
                   where, name, saved.step(name), params[0].first, flat_step);
    }
  }

  // One tensor at a time: read this rank's part, copy it in, let it go.
  {
    NoGradGuard no_grad;
    for (const auto& [name, dst] : state)
      dst.copy_(local_part(name, SavedTensor::Weight, dst).to(dst.device()));
  }
  try {
    if (zero != nullptr) {
      zero->load_state_by_parameter(flat_step, [&](size_t i) {
        const auto& [name, p] = params[i];
        return std::pair{local_part(name, SavedTensor::ExpAvg, p),
                         local_part(name, SavedTensor::ExpAvgSq, p)};
      });
    } else if (adamw != nullptr) {
      adamw->load_state_dict({});  // parameters without saved state start fresh
      for (size_t i = 0; i < params.size(); ++i) {
        const auto& [name, p] = params[i];
        if (!saved.has_moments(name)) continue;
        const Tensor m = local_part(name, SavedTensor::ExpAvg, p);
        adamw->load_param_state(i, saved.step(name), m, local_part(name, SavedTensor::ExpAvgSq, p));
      }
    }
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", where, e.what()));
  }
  if (stats != nullptr) *stats = saved.stats();
  return saved.state();
}

}  // namespace

TrainingState load_any_training_checkpoint(const std::string& checkpoint_dir, Module& model,
                                           AdamW& adamw, ZeroAdamW* zero,
                                           const NamedTensors* stand_ins,
                                           CheckpointReadStats* stats) {
  return load_checkpoint(checkpoint_dir, model, &adamw, zero, stand_ins, stats);
}

TrainingState load_checkpoint_weights(const std::string& checkpoint_dir, Module& model,
                                      CheckpointReadStats* stats) {
  return load_checkpoint(checkpoint_dir, model, nullptr, nullptr, nullptr, stats);
}

void load_unsharded_checkpoint(const UnshardedCheckpoint& saved, const std::string& checkpoint_dir,
                               Module& model, AdamW* adamw, ZeroAdamW* zero,
                               const NamedTensors* stand_ins) {
  const std::map<std::string, ShardedParameter> current = sharded_parameters(model);
  const std::string where = fmt::format("'{}' (saved at {})", checkpoint_dir, saved.layout());
  // This rank's part of a full tensor, shaped like `like` (checked).
  const auto local_part = [&](const std::string& name, const Tensor& full,
                              const Tensor& like) -> Tensor {
    const auto it = current.find(name);
    if (it == current.end()) {
      AUTOTP_CHECK(full.shape() == like.shape(), "{}: '{}' has shape {} there, the model's is {}",
                   where, name, shape_str(full.shape()), shape_str(like.shape()));
      return full;
    }
    const ParamSplitInfo& split = it->second.split;
    AUTOTP_CHECK(full.shape() == split.original_shape,
                 "{}: '{}' has shape {} there, the model's unsharded shape is {}", where, name,
                 shape_str(full.shape()), shape_str(split.original_shape));
    const Tensor shard = take_shard(full, split.plan, it->second.tp_rank);
    AUTOTP_ASSERT(shard.numel() == like.numel(), "'{}': a shard of {} elements for a {} parameter",
                  name, shard.numel(), shape_str(like.shape()));
    return shard.reshape(like.shape());
  };

  // Weights: every name and shape checked before anything is copied.
  std::map<std::string, Tensor> saved_weights(saved.weights.begin(), saved.weights.end());
  std::vector<std::string> missing, unexpected;
  std::vector<std::pair<Tensor, Tensor>> copies;  // destination, source
  std::set<std::string> model_names;
  for (const auto& [name, dst] : state_with(model, stand_ins)) {
    model_names.insert(name);
    const auto it = saved_weights.find(name);
    if (it == saved_weights.end()) {
      missing.push_back(name);
      continue;
    }
    copies.emplace_back(dst, local_part(name, it->second, dst));
  }
  for (const auto& [name, w] : saved.weights) {
    if (model_names.count(name) == 0) unexpected.push_back(name);
  }
  AUTOTP_CHECK(missing.empty() && unexpected.empty(),
               "{} does not match the model (nothing was loaded): missing tensors: [{}]; "
               "unexpected tensors: [{}]",
               where, fmt::join(missing, ", "), fmt::join(unexpected, ", "));
  NamedTensors moments;
  if (adamw != nullptr) {
    for (const auto& [name, p] : adamw->params()) {
      const auto it = saved.adamw.find(name);
      if (it == saved.adamw.end()) continue;
      moments.emplace_back(name + ".exp_avg",
                           local_part(name, it->second.exp_avg, p).to(p.dtype()).to(p.device()));
      moments.emplace_back(name + ".exp_avg_sq",
                           local_part(name, it->second.exp_avg_sq, p).to(p.dtype()).to(p.device()));
      moments.emplace_back(name + ".step", Tensor::from_vector_i64({it->second.step}, {}));
    }
  }
  {
    NoGradGuard no_grad;
    for (const auto& [dst, src] : copies)
      dst.copy_(src.to(dst.dtype()).to(dst.device()));
  }
  if (adamw == nullptr) return;
  try {
    adamw->load_state_dict(moments);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", where, e.what()));
  }
  if (zero != nullptr) {
    zero->load_full_state(flatten_adamw_state(*adamw, FlatParamLayout::build(adamw->params(), 1)));
  }
}

std::vector<std::string> incomplete_checkpoints(const std::string& out_dir) {
  std::vector<std::string> out;
  const fs::path root = fs::path(out_dir) / kCheckpointsDir;
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
