// Distributed training checkpoints: per-rank weight shards and optimizer partitions with
// their splits in the manifest (written last), and any layout read back unsharded to re-split.
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
#include "layers/parallel/tensor_parallel_layer.h"

namespace autotp {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStateFile = "state.json";
constexpr const char* kOptimizerFile = "optimizer.safetensors";

// File names: tp = 1 keeps the single-process names (model.safetensors makes the directory an
// HF model directory); tp > 1 adds the TP rank.
std::string model_file(int t, int tp) {
  return tp == 1 ? std::string(io::kSafetensorsFileName)
                 : fmt::format("model-tp{:05d}-of-{:05d}.safetensors", t, tp);
}
std::string optimizer_file(int t, int tp) {
  return tp == 1 ? std::string(kOptimizerFile)
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

std::vector<int64_t> read_ints(const json::Value& array) {
  std::vector<int64_t> out;
  for (const json::Value& v : array.elements())
    out.push_back(v.as_int64());
  return out;
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

struct SavedSplit {
  Shape shape;
  SplitPlan plan;
};

SavedSplit split_from_json(const json::Value& v, int64_t tp) {
  SavedSplit s;
  s.shape = read_ints(v["shape"]);
  s.plan.view = read_ints(v["view"]);
  s.plan.dim = v["dim"].as_int64();
  for (const json::Value& w : v["widths"].elements())
    s.plan.widths.push_back(read_ints(w));
  bool ok = s.plan.dim >= 0 && s.plan.dim < static_cast<int64_t>(s.plan.view.size()) &&
            shape_numel(s.plan.view) == shape_numel(s.shape) && !s.plan.widths.empty();
  for (const auto& w : s.plan.widths)
    ok = ok && static_cast<int64_t>(w.size()) == tp;
  if (ok) {
    int64_t sum = 0;
    for (int64_t size : s.plan.sub_sizes())
      sum += size;
    ok = sum == s.plan.view[static_cast<size_t>(s.plan.dim)];
  }
  AUTOTP_CHECK(ok, "{}: {}: an inconsistent split for {} TP ranks", v.source(), v.path(), tp);
  return s;
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

// The tensors of one safetensors file in file order (= save order).
NamedTensors read_all(const fs::path& file) {
  const io::SafetensorsFile f(file.string());
  NamedTensors out;
  for (const io::SafetensorsTensorInfo& info : f.tensors())
    out.emplace_back(info.name, f.load(info.name));
  return out;
}

// AdamW::state_dict() entries ("<name>.exp_avg", ".exp_avg_sq", ".step") by parameter name.
std::map<std::string, AdamWParamState> adamw_moments(const NamedTensors& state,
                                                     const std::string& file) {
  std::map<std::string, AdamWParamState> out;
  const auto strip = [](const std::string& name, std::string_view suffix) -> std::string {
    if (name.size() <= suffix.size() || !name.ends_with(suffix)) return "";
    return name.substr(0, name.size() - suffix.size());
  };
  for (const auto& [name, t] : state) {
    if (std::string p = strip(name, ".exp_avg_sq"); !p.empty()) {
      out[p].exp_avg_sq = t;
    } else if (std::string q = strip(name, ".exp_avg"); !q.empty()) {
      out[q].exp_avg = t;
    } else if (std::string s = strip(name, ".step"); !s.empty()) {
      out[s].step = static_cast<int64_t>(t.to_vector().at(0));
    } else {
      AUTOTP_FAIL("{}: '{}' is not an AdamW state entry (<param>.exp_avg, .exp_avg_sq, .step)",
                  file, name);
    }
  }
  for (const auto& [name, s] : out) {
    AUTOTP_CHECK(s.exp_avg.defined() && s.exp_avg_sq.defined() && s.step > 0,
                 "{}: the AdamW state of '{}' is incomplete", file, name);
  }
  return out;
}

// One TP rank's ZeRO partitions (every DP rank's slice of its flat state) unflattened into
// per-parameter moments, shaped like that rank's weights.
std::map<std::string, AdamWParamState> zero_moments(const fs::path& dir, const json::Value& files,
                                                    const std::vector<std::string>& names,
                                                    const std::map<std::string, Tensor>& weights,
                                                    int t, int64_t tp) {
  std::vector<int64_t> offsets, numels;
  int64_t total = 0;
  for (const std::string& name : names) {
    const auto it = weights.find(name);
    AUTOTP_CHECK(it != weights.end(), "{}: the ZeRO state names parameter '{}', which {} lacks",
                 dir.string(), name, model_file(t, static_cast<int>(tp)));
    offsets.push_back(total);
    numels.push_back(it->second.numel());
    total += it->second.numel();
  }
  const std::string of_tp = tp > 1 ? fmt::format(" of TP rank {}", t) : "";
  Tensor m, v;
  int64_t step = 0;
  for (size_t d = 0; d < files.size(); ++d) {
    const fs::path file = dir / files.at(d).as_string();
    AUTOTP_CHECK(fs::is_regular_file(file),
                 "'{}' is not a complete training checkpoint: ZeRO partition {} of {}{} ({}) is "
                 "missing",
                 dir.string(), d, files.size(), of_tp, file.filename().string());
    const io::SafetensorsFile part(file.string());
    const Tensor pm = part.load("exp_avg"), pv = part.load("exp_avg_sq");
    if (!m.defined()) {
      m = Tensor::zeros({total}, pm.dtype());
      v = Tensor::zeros({total}, pm.dtype());
    }
    const int64_t offset = std::stoll(part.metadata().at("partition_offset"));
    AUTOTP_CHECK(offset >= 0 && offset + pm.numel() <= total && pv.numel() == pm.numel(),
                 "{}: a partition at offset {} with {} elements does not fit the {} elements of "
                 "the parameters",
                 file.string(), offset, pm.numel(), total);
    m.narrow(0, offset, pm.numel()).copy_(pm.to(m.dtype()));
    v.narrow(0, offset, pv.numel()).copy_(pv.to(v.dtype()));
    step = static_cast<int64_t>(part.load("step").to_vector().at(0));
  }
  std::map<std::string, AdamWParamState> out;
  if (step == 0 || !m.defined()) return out;  // never stepped
  for (size_t i = 0; i < names.size(); ++i) {
    const Shape& shape = weights.at(names[i]).shape();
    out[names[i]] = {step, m.narrow(0, offsets[i], numels[i]).contiguous().reshape(shape),
                     v.narrow(0, offsets[i], numels[i]).contiguous().reshape(shape)};
  }
  return out;
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
  const fs::path root = fs::path(out_dir) / "checkpoints";
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
      io::write_file_atomically((staged / kStateFile).string(), manifest.dump(2) + "\n");
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
  const fs::path dir(checkpoint_dir);
  UnshardedCheckpoint out;
  out.state = read_training_state(checkpoint_dir);  // a missing manifest is named here
  const json::Value manifest = json::parse_file((dir / kStateFile).string());
  if (const json::Value* layout = manifest.find("layout")) {
    out.tp_size = layout->get<int64_t>("tp_size");
    out.dp_size = layout->get<int64_t>("dp_size");
    out.zero_stage = layout->get<int64_t>("zero_stage");
    AUTOTP_CHECK(out.tp_size >= 1 && out.dp_size >= 1 && out.zero_stage >= 0,
                 "{}/{}: layout {} is invalid", checkpoint_dir, kStateFile, out.layout());
  }
  const int64_t tp = out.tp_size;
  const json::Value* files = manifest.find("files");
  std::vector<std::string> model_files;
  for (int64_t t = 0; t < tp; ++t) {
    model_files.push_back(files != nullptr
                              ? (*files)["model"].at(static_cast<size_t>(t)).as_string()
                              : model_file(0, 1));
  }

  // Each TP rank's weights and moments, as written.
  std::vector<NamedTensors> weights(static_cast<size_t>(tp));
  std::vector<std::map<std::string, Tensor>> by_name(static_cast<size_t>(tp));
  std::vector<std::map<std::string, AdamWParamState>> moments(static_cast<size_t>(tp));
  for (int64_t t = 0; t < tp; ++t) {
    const auto ti = static_cast<size_t>(t);
    const fs::path file = dir / model_files[ti];
    AUTOTP_CHECK(fs::is_regular_file(file),
                 "'{}' is not a complete training checkpoint: {} (the weights of TP rank {} of "
                 "{}) is missing",
                 checkpoint_dir, model_files[ti], t, tp);
    weights[ti] = read_all(file);
    for (const auto& [name, w] : weights[ti])
      by_name[ti][name] = w;
    if (out.zero_stage > 0) {
      AUTOTP_CHECK(files != nullptr, "{}/{}: ZeRO stage {} without a file list", checkpoint_dir,
                   kStateFile, out.zero_stage);
      std::vector<std::string> names;
      for (const json::Value& n : manifest["params"].elements())
        names.push_back(n.as_string());
      moments[ti] = zero_moments(dir, (*files)["optimizer"].at(ti), names, by_name[ti],
                                 static_cast<int>(t), tp);
    } else {
      const std::string name =
          files != nullptr ? (*files)["optimizer"].at(ti).as_string() : std::string(kOptimizerFile);
      const fs::path opt = dir / name;
      AUTOTP_CHECK(fs::is_regular_file(opt),
                   "'{}' is not a complete training checkpoint: {} is missing", checkpoint_dir,
                   name);
      moments[ti] = adamw_moments(read_all(opt), opt.string());
    }
  }

  // Reassemble the sharded tensors from their per-rank pieces.
  std::map<std::string, SavedSplit> splits;
  if (const json::Value* s = manifest.find("splits")) {
    for (const std::string& name : s->keys())
      splits[name] = split_from_json((*s)[name], tp);
  }
  const auto unshard = [&](const std::string& name, const auto& piece_of) -> Tensor {
    const auto it = splits.find(name);
    if (it == splits.end()) return piece_of(0);
    std::vector<Tensor> pieces;
    for (int64_t t = 0; t < tp; ++t)
      pieces.push_back(piece_of(static_cast<size_t>(t)));
    return assemble_full(pieces, it->second.plan).reshape(it->second.shape);
  };
  for (const auto& [name, w0] : weights[0]) {
    out.weights.emplace_back(name, unshard(name, [&](size_t t) {
                               const auto it = by_name[t].find(name);
                               AUTOTP_CHECK(it != by_name[t].end(),
                                            "'{}': {} lacks '{}', which TP rank 0's file has",
                                            checkpoint_dir, model_files[t], name);
                               return it->second;
                             }));
  }
  for (const auto& [name, s0] : moments[0]) {
    const auto piece = [&](size_t t) -> const AdamWParamState& {
      const auto it = moments[t].find(name);
      AUTOTP_CHECK(it != moments[t].end(), "'{}': TP rank {} has no optimizer state for '{}'",
                   checkpoint_dir, t, name);
      return it->second;
    };
    AdamWParamState full;
    full.step = s0.step;
    full.exp_avg = unshard(name, [&](size_t t) { return piece(t).exp_avg; });
    full.exp_avg_sq = unshard(name, [&](size_t t) { return piece(t).exp_avg_sq; });
    out.adamw[name] = full;
  }
  return out;
}

TrainingState load_any_training_checkpoint(const std::string& checkpoint_dir, Module& model,
                                           AdamW& adamw, ZeroAdamW* zero,
                                           const NamedTensors* stand_ins) {
  const UnshardedCheckpoint saved = read_unsharded_checkpoint(checkpoint_dir);
  load_unsharded_checkpoint(saved, checkpoint_dir, model, &adamw, zero, stand_ins);
  return saved.state;
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
