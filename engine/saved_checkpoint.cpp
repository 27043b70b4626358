// SavedCheckpoint: the manifest and file headers of a training checkpoint indexed per TP rank,
// and reads of one parameter's pieces (whole tensors, or its range of a flat ZeRO state).
#include "engine/saved_checkpoint.h"

#include <algorithm>
#include <filesystem>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/io/json.h"
#include "core/io/sharded_safetensors.h"

namespace autotp {

namespace fs = std::filesystem;

namespace {

std::vector<int64_t> read_ints(const json::Value& array) {
  std::vector<int64_t> out;
  for (const json::Value& v : array.elements())
    out.push_back(v.as_int64());
  return out;
}

// The AdamW::state_dict() key of a moment: "<name>.exp_avg" / "<name>.exp_avg_sq".
std::string moment_key(const std::string& name, SavedTensor which) {
  return name + (which == SavedTensor::ExpAvg ? ".exp_avg" : ".exp_avg_sq");
}

// The flat ZeRO state's tensor of a moment.
const char* flat_key(SavedTensor which) {
  return which == SavedTensor::ExpAvg ? "exp_avg" : "exp_avg_sq";
}

int64_t sum_before(const std::vector<int64_t>& v, int64_t end) {
  int64_t s = 0;
  for (int64_t i = 0; i < end; ++i)
    s += v[static_cast<size_t>(i)];
  return s;
}

// Where sub-parameter j starts along the split dim of the full view.
int64_t sub_start(const SplitPlan& plan, size_t j) {
  int64_t s = 0;
  for (size_t k = 0; k < j; ++k) {
    for (int64_t w : plan.widths[k])
      s += w;
  }
  return s;
}

// Where sub-parameter j starts along the split dim of rank r's shard.
int64_t local_start(const SplitPlan& plan, size_t j, int64_t r) {
  int64_t s = 0;
  for (size_t k = 0; k < j; ++k)
    s += plan.widths[k][static_cast<size_t>(r)];
  return s;
}

bool same_split(const SplitPlan& a, const SplitPlan& b) {
  return a.view == b.view && a.dim == b.dim && a.widths == b.widths;
}

// Both cut the same view along the same dim into the same sub-parameters (ranks may differ).
bool same_cut(const SplitPlan& a, const SplitPlan& b) {
  return a.view == b.view && a.dim == b.dim && a.widths.size() == b.widths.size() &&
         a.sub_sizes() == b.sub_sizes();
}

}  // namespace

// ---- HeldBytesMeter -------------------------------------------------------------------

void HeldBytesMeter::track(const Tensor& t) {
  if (!t.defined()) return;
  const std::shared_ptr<Storage>& s = t.storage();
  std::erase_if(alive_, [](const std::weak_ptr<Storage>& w) { return w.expired(); });
  bool known = false;
  for (const std::weak_ptr<Storage>& w : alive_)
    known = known || w.lock() == s;
  if (!known) alive_.push_back(s);
  peak_ = std::max(peak_, held());
}

int64_t HeldBytesMeter::held() const {
  int64_t bytes = 0;
  for (const std::weak_ptr<Storage>& w : alive_) {
    if (const std::shared_ptr<Storage> s = w.lock()) bytes += static_cast<int64_t>(s->bytes());
  }
  return bytes;
}

// ---- SavedCheckpoint ------------------------------------------------------------------

struct SavedCheckpoint::TpRankFiles {
  std::string model_name;  // the weights file's name
  std::unique_ptr<io::SafetensorsFile> model;
  std::unique_ptr<io::SafetensorsFile> adamw;  // ZeRO 0: AdamW::state_dict() of the shards
  // ZeRO > 0: each DP rank's slice of the flat state of this TP rank's parameters.
  std::vector<io::SafetensorsFile> partitions;
  std::vector<int64_t> partition_offsets;
  std::map<std::string, int64_t> flat_offsets;  // parameter -> its offset in the flat state
  DType flat_dtype = DType::F32;
  std::map<std::string, int64_t> steps;  // parameters with state -> step count
};

SavedCheckpoint::~SavedCheckpoint() = default;
SavedCheckpoint::SavedCheckpoint(SavedCheckpoint&&) noexcept = default;
SavedCheckpoint& SavedCheckpoint::operator=(SavedCheckpoint&&) noexcept = default;

std::string SavedCheckpoint::layout() const {
  return fmt::format("tp {} x dp {}, ZeRO stage {}", tp_, dp_, zero_stage_);
}

SavedCheckpoint::SavedCheckpoint(std::string dir) : dir_(std::move(dir)) {
  const fs::path root(dir_);
  state_ = read_training_state(dir_);  // a missing manifest is named here
  const json::Value manifest = json::parse_file((root / kCheckpointManifestFile).string());
  if (const json::Value* layout = manifest.find("layout")) {
    tp_ = layout->get<int64_t>("tp_size");
    dp_ = layout->get<int64_t>("dp_size");
    zero_stage_ = layout->get<int64_t>("zero_stage");
    AUTOTP_CHECK(tp_ >= 1 && dp_ >= 1 && zero_stage_ >= 0, "{}/{}: layout {} is invalid", dir_,
                 kCheckpointManifestFile, this->layout());
  }
  const json::Value* files = manifest.find("files");
  AUTOTP_CHECK(zero_stage_ == 0 || files != nullptr, "{}/{}: ZeRO stage {} without a file list",
               dir_, kCheckpointManifestFile, zero_stage_);
  if (const json::Value* s = manifest.find("splits")) {
    for (const std::string& name : s->keys()) {
      const json::Value& v = (*s)[name];
      SavedSplitInfo info;
      info.shape = read_ints(v["shape"]);
      SplitPlan& plan = info.plan;
      plan.view = read_ints(v["view"]);
      plan.dim = v["dim"].as_int64();
      for (const json::Value& w : v["widths"].elements())
        plan.widths.push_back(read_ints(w));
      bool ok = plan.dim >= 0 && plan.dim < static_cast<int64_t>(plan.view.size()) &&
                shape_numel(plan.view) == shape_numel(info.shape) && !plan.widths.empty();
      for (const auto& w : plan.widths) {
        ok = ok && static_cast<int64_t>(w.size()) == tp_;
        for (int64_t x : w)
          ok = ok && x >= 0;
      }
      if (ok) {
        int64_t sum = 0;
        for (int64_t size : plan.sub_sizes())
          sum += size;
        ok = sum == plan.view[static_cast<size_t>(plan.dim)];
      }
      AUTOTP_CHECK(ok, "{}: {}: an inconsistent split for {} TP ranks", v.source(), v.path(), tp_);
      splits_[name] = std::move(info);
    }
  }
  std::vector<std::string> flat_params;  // ZeRO: the parameters of the flat state, in order
  if (zero_stage_ > 0) {
    for (const json::Value& n : manifest["params"].elements())
      flat_params.push_back(n.as_string());
  }

  ranks_.resize(static_cast<size_t>(tp_));
  for (int64_t t = 0; t < tp_; ++t) {
    TpRankFiles& r = ranks_[static_cast<size_t>(t)];
    r.model_name = files != nullptr ? (*files)["model"].at(static_cast<size_t>(t)).as_string()
                                    : std::string(io::kSafetensorsFileName);
    const fs::path model_path = root / r.model_name;
    AUTOTP_CHECK(fs::is_regular_file(model_path),
                 "'{}' is not a complete training checkpoint: {} (the weights of TP rank {} of "
                 "{}) is missing",
                 dir_, r.model_name, t, tp_);
    r.model = std::make_unique<io::SafetensorsFile>(model_path.string());
    if (zero_stage_ > 0) {
      // The flat state: the parameters concatenated in the manifest's order.
      int64_t total = 0;
      for (const std::string& name : flat_params) {
        AUTOTP_CHECK(r.model->contains(name),
                     "{}: the ZeRO state names parameter '{}', which {} lacks", dir_, name,
                     r.model_name);
        r.flat_offsets[name] = total;
        total += shape_numel(r.model->info(name).shape);
      }
      const json::Value& parts = (*files)["optimizer"].at(static_cast<size_t>(t));
      const std::string of_tp = tp_ > 1 ? fmt::format(" of TP rank {}", t) : "";
      int64_t step = 0;
      for (size_t d = 0; d < parts.size(); ++d) {
        const fs::path file = root / parts.at(d).as_string();
        AUTOTP_CHECK(fs::is_regular_file(file),
                     "'{}' is not a complete training checkpoint: ZeRO partition {} of {}{} ({}) "
                     "is missing",
                     dir_, d, parts.size(), of_tp, file.filename().string());
        io::SafetensorsFile part(file.string());
        const auto offset_entry = part.metadata().find("partition_offset");
        AUTOTP_CHECK(offset_entry != part.metadata().end(),
                     "{}: no partition_offset in the metadata of a ZeRO partition", file.string());
        const int64_t offset = std::stoll(offset_entry->second);
        const io::SafetensorsTensorInfo& m = part.info("exp_avg");
        const int64_t numel = shape_numel(m.shape);
        AUTOTP_CHECK(offset >= 0 && offset + numel <= total &&
                         shape_numel(part.info("exp_avg_sq").shape) == numel,
                     "{}: a partition at offset {} with {} elements does not fit the {} elements "
                     "of the parameters",
                     file.string(), offset, numel, total);
        AUTOTP_CHECK(m.dtype.has_value() && part.info("exp_avg_sq").dtype == m.dtype,
                     "{}: the moments have dtypes {} and {}, which autotp cannot load",
                     file.string(), m.dtype_name, part.info("exp_avg_sq").dtype_name);
        if (d == 0) r.flat_dtype = *m.dtype;
        AUTOTP_CHECK(*m.dtype == r.flat_dtype,
                     "{}: the moments are {}, those of partition 0 of TP rank {} {}", file.string(),
                     m.dtype_name, t, io::safetensors_dtype_name(r.flat_dtype));
        step = static_cast<int64_t>(part.load("step").to_vector().at(0));
        r.partition_offsets.push_back(offset);
        r.partitions.push_back(std::move(part));
      }
      if (step > 0 && !r.partitions.empty()) {
        for (const std::string& name : flat_params)
          r.steps[name] = step;
      }
    } else {
      const std::string name = files != nullptr
                                   ? (*files)["optimizer"].at(static_cast<size_t>(t)).as_string()
                                   : std::string(kCheckpointOptimizerFile);
      const fs::path opt = root / name;
      AUTOTP_CHECK(fs::is_regular_file(opt),
                   "'{}' is not a complete training checkpoint: {} is missing", dir_, name);
      r.adamw = std::make_unique<io::SafetensorsFile>(opt.string());
      // AdamW::state_dict() entries ("<name>.exp_avg", ".exp_avg_sq", ".step").
      std::map<std::string, int> parts;  // parameter -> moments seen
      const auto strip = [](const std::string& key, std::string_view suffix) -> std::string {
        if (key.size() <= suffix.size() || !key.ends_with(suffix)) return "";
        return key.substr(0, key.size() - suffix.size());
      };
      for (const io::SafetensorsTensorInfo& info : r.adamw->tensors()) {
        if (std::string p = strip(info.name, ".exp_avg_sq"); !p.empty()) {
          ++parts[p];
        } else if (std::string q = strip(info.name, ".exp_avg"); !q.empty()) {
          ++parts[q];
        } else if (std::string s = strip(info.name, ".step"); !s.empty()) {
          r.steps[s] = static_cast<int64_t>(r.adamw->load(info.name).to_vector().at(0));
          parts[s];
        } else {
          AUTOTP_FAIL("{}: '{}' is not an AdamW state entry (<param>.exp_avg, .exp_avg_sq, .step)",
                      opt.string(), info.name);
        }
      }
      for (const auto& [p, n] : parts) {
        const auto step = r.steps.find(p);
        AUTOTP_CHECK(n == 2 && step != r.steps.end() && step->second > 0,
                     "{}: the AdamW state of '{}' is incomplete", opt.string(), p);
        const io::SafetensorsTensorInfo& m = r.adamw->info(p + ".exp_avg");
        const io::SafetensorsTensorInfo& v = r.adamw->info(p + ".exp_avg_sq");
        AUTOTP_CHECK(m.shape == v.shape, "{}: the AdamW moments of '{}' have shapes {} and {}",
                     opt.string(), p, shape_str(m.shape), shape_str(v.shape));
      }
    }
  }

  // Every TP rank holds every tensor of TP rank 0, a sharded one as its split says.
  const TpRankFiles& first = ranks_[0];
  for (const io::SafetensorsTensorInfo& info : first.model->tensors())
    names_.push_back(info.name);
  for (const auto& [name, step] : first.steps) {
    moment_names_.push_back(name);
    steps_[name] = step;
  }
  for (int64_t t = 0; t < tp_; ++t) {
    const TpRankFiles& r = ranks_[static_cast<size_t>(t)];
    for (const std::string& name : names_) {
      AUTOTP_CHECK(r.model->contains(name), "'{}': {} lacks '{}', which TP rank 0's file has", dir_,
                   r.model_name, name);
    }
    for (const std::string& name : moment_names_) {
      AUTOTP_CHECK(r.steps.count(name) > 0, "'{}': TP rank {} has no optimizer state for '{}'",
                   dir_, t, name);
    }
    for (const auto& [name, split] : splits_) {
      const int64_t want = shape_numel(split.plan.local_view(t));
      const auto check = [&](const io::SafetensorsFile& file, const std::string& key) {
        if (!file.contains(key)) return;
        AUTOTP_CHECK(shape_numel(file.info(key).shape) == want,
                     "{}: '{}' has shape {}, but TP rank {}'s shard of the split in {} has {} "
                     "elements",
                     file.path(), key, shape_str(file.info(key).shape), t, kCheckpointManifestFile,
                     want);
      };
      check(*r.model, name);
      if (r.adamw) {
        check(*r.adamw, moment_key(name, SavedTensor::ExpAvg));
        check(*r.adamw, moment_key(name, SavedTensor::ExpAvgSq));
      }
    }
  }
}

bool SavedCheckpoint::contains(const std::string& name) const {
  return ranks_[0].model->contains(name);
}

int64_t SavedCheckpoint::step(const std::string& name) const {
  const auto it = steps_.find(name);
  return it == steps_.end() ? 0 : it->second;
}

const SplitPlan* SavedCheckpoint::saved_split(const std::string& name) const {
  const auto it = splits_.find(name);
  return it == splits_.end() ? nullptr : &it->second.plan;
}

Shape SavedCheckpoint::full_shape(const std::string& name, SavedTensor which) const {
  if (const auto it = splits_.find(name); it != splits_.end()) return it->second.shape;
  const TpRankFiles& r = ranks_[0];
  if (which == SavedTensor::Weight || !r.adamw) return r.model->info(name).shape;
  return r.adamw->info(moment_key(name, which)).shape;
}

DType SavedCheckpoint::saved_dtype(const std::string& name, SavedTensor which) const {
  const TpRankFiles& r = ranks_[0];
  if (which != SavedTensor::Weight && !r.adamw) return r.flat_dtype;
  const io::SafetensorsFile& file = which == SavedTensor::Weight ? *r.model : *r.adamw;
  const io::SafetensorsTensorInfo& info =
      file.info(which == SavedTensor::Weight ? name : moment_key(name, which));
  AUTOTP_CHECK(info.dtype.has_value(), "{}: tensor '{}' has dtype {}, which autotp cannot load",
               file.path(), info.name, info.dtype_name);
  return *info.dtype;
}

Tensor SavedCheckpoint::tracked(Tensor t) {
  meter_.track(t);
  return t;
}

Tensor SavedCheckpoint::read_piece(const std::string& name, SavedTensor which, int64_t t) {
  TpRankFiles& r = ranks_[static_cast<size_t>(t)];
  const auto load = [&](const io::SafetensorsFile& file, const std::string& key) {
    Tensor out = tracked(file.load(key));
    bytes_read_ += out.numel() * static_cast<int64_t>(out.itemsize());
    return out;
  };
  if (which == SavedTensor::Weight) return load(*r.model, name);
  if (r.adamw) return load(*r.adamw, moment_key(name, which));
  // This parameter's range of the flat state, from every partition that overlaps it.
  AUTOTP_ASSERT(r.flat_offsets.count(name) > 0, "'{}' is not in the flat ZeRO state", name);
  const Shape shape = r.model->info(name).shape;
  const int64_t begin = r.flat_offsets.at(name), numel = shape_numel(shape);
  const Tensor out = tracked(Tensor::zeros({numel}, r.flat_dtype));
  for (size_t d = 0; d < r.partitions.size(); ++d) {
    const io::SafetensorsFile& part = r.partitions[d];
    const int64_t p0 = r.partition_offsets[d];
    const int64_t p1 = p0 + shape_numel(part.info(flat_key(which)).shape);
    const int64_t lo = std::max(begin, p0), hi = std::min(begin + numel, p1);
    if (lo >= hi) continue;
    part.read_elements(flat_key(which), lo - p0, out.narrow(0, lo - begin, hi - lo));
    bytes_read_ += (hi - lo) * static_cast<int64_t>(out.itemsize());
  }
  return out.view(shape);
}

Tensor SavedCheckpoint::read_full(const std::string& name, SavedTensor which) {
  NoGradGuard no_grad;
  const auto it = splits_.find(name);
  if (it == splits_.end()) return read_piece(name, which, 0);
  const SplitPlan& plan = it->second.plan;
  Tensor full;  // [plan.view]
  for (int64_t t = 0; t < tp_; ++t) {
    const Tensor piece = read_piece(name, which, t).reshape(plan.local_view(t));
    if (!full.defined()) full = tracked(Tensor::empty(plan.view, piece.dtype()));
    for (size_t j = 0; j < plan.widths.size(); ++j) {
      const int64_t w = plan.widths[j][static_cast<size_t>(t)];
      if (w == 0) continue;
      const int64_t at = sub_start(plan, j) + sum_before(plan.widths[j], t);
      full.narrow(plan.dim, at, w).copy_(piece.narrow(plan.dim, local_start(plan, j, t), w));
    }
  }
  return full.reshape(it->second.shape);
}

Tensor SavedCheckpoint::read_shard(const std::string& name, SavedTensor which,
                                   const SplitPlan& plan, int64_t rank) {
  NoGradGuard no_grad;
  const Shape local = plan.local_view(rank);
  const auto it = splits_.find(name);
  if (it != splits_.end() && same_split(it->second.plan, plan)) {
    return read_piece(name, which, rank).reshape(local);
  }
  if (it != splits_.end() && same_cut(it->second.plan, plan)) {
    // Copy the overlap of each saved piece with this rank's part of every sub-parameter.
    const SplitPlan& saved = it->second.plan;
    const auto r = static_cast<size_t>(rank);
    Tensor out;  // [local]
    for (int64_t t = 0; t < tp_; ++t) {
      bool overlaps = false;
      for (size_t j = 0; j < plan.widths.size(); ++j) {
        const int64_t a = sum_before(plan.widths[j], rank), c = sum_before(saved.widths[j], t);
        overlaps = overlaps ||
                   std::max(a, c) <
                       std::min(a + plan.widths[j][r], c + saved.widths[j][static_cast<size_t>(t)]);
      }
      if (!overlaps) continue;
      const Tensor piece = read_piece(name, which, t).reshape(saved.local_view(t));
      if (!out.defined()) out = tracked(Tensor::empty(local, piece.dtype()));
      for (size_t j = 0; j < plan.widths.size(); ++j) {
        const int64_t a = sum_before(plan.widths[j], rank), w = plan.widths[j][r];
        const int64_t c = sum_before(saved.widths[j], t),
                      v = saved.widths[j][static_cast<size_t>(t)];
        const int64_t lo = std::max(a, c), hi = std::min(a + w, c + v);
        if (lo >= hi) continue;
        out.narrow(plan.dim, local_start(plan, j, rank) + lo - a, hi - lo)
            .copy_(piece.narrow(saved.dim, local_start(saved, j, t) + lo - c, hi - lo));
      }
    }
    // A zero-width shard overlaps no piece.
    return out.defined() ? out : Tensor::empty(local, saved_dtype(name, which));
  }
  const Tensor full = read_full(name, which);
  Tensor shard = take_shard(full, plan, rank).contiguous();
  if (shard.shares_storage(full)) shard = shard.clone();
  return tracked(shard).reshape(local);
}

}  // namespace autotp
