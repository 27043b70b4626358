// ZeroAdamW: partitioned moments, gradient reduction per stage, the flat AdamW update and the
// weight all_gather; conversions between per-parameter and flat optimizer state.
#include "engine/zero_optimizer.h"

#include <algorithm>

#include "core/autograd/grad_mode.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "kernels/cpu/adamw.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/adamw.h"
#endif

namespace autotp {

namespace {

int64_t begin_of(const FlatParamLayout& l, int rank) {
  return l.partition_offsets[static_cast<size_t>(rank)];
}
int64_t size_of(const FlatParamLayout& l, int rank) {
  return l.partition_sizes[static_cast<size_t>(rank)];
}

// One contiguous piece of this rank's slice: a parameter's elements and their moments and
// gradient, with that parameter's AdamW constants.
struct SlicePiece {
  void* param;
  void* exp_avg;
  void* exp_avg_sq;
  const void* grad;
  int64_t numel;
  kernels::cpu::AdamWStep step;
};

void* element_at(const Tensor& t, int64_t index) {
  return static_cast<char*>(t.raw_data()) + index * static_cast<int64_t>(t.itemsize());
}

// Every piece of a device slice in one multi-tensor launch: the CUDA kernel performs the CPU
// kernel's operations in the same order (kernels/cuda/adamw.h), so the update is the CPU's.
void update_pieces_on_device(const std::vector<SlicePiece>& pieces, DType dtype, Device device) {
  if (pieces.empty()) return;
  AUTOTP_CHECK(dtype == DType::F32 || dtype == DType::F64,
               "ZeroAdamW: {} parameters on {} (the flat update takes f32 or f64: keep f32 "
               "master weights behind low-precision models)",
               dtype_name(dtype), device.str());
#ifdef AUTOTP_WITH_CUDA
  std::vector<kernels::cuda::AdamWTensor> table;
  for (const SlicePiece& p : pieces) {
    table.push_back(
        {p.param, p.exp_avg, p.exp_avg_sq, p.grad, /*model_copy=*/nullptr, p.numel, p.step});
  }
  const auto count = static_cast<int64_t>(table.size());
  const int64_t bytes = kernels::cuda::adamw_workspace_bytes(table.data(), count);
  // Freed into the caching allocator on return; later work on the stream runs after the kernel.
  const Tensor workspace = Tensor::empty({(bytes + 7) / 8}, DType::I64, device);
  kernels::cuda::adamw_multi_tensor(static_cast<int>(dtype), static_cast<int>(dtype),
                                    kernels::cuda::kAdamWNoCopy, /*grad_scale=*/1.0, table.data(),
                                    count, workspace.raw_data(), workspace.numel() * 8, nullptr);
#else
  AUTOTP_FAIL("ZeroAdamW: parameters on {} need a build with the CUDA backend", device.str());
#endif
}

}  // namespace

ZeroAdamW::ZeroAdamW(NamedTensors params, AdamWOptions options, int stage,
                     std::shared_ptr<Communicator> dp, int64_t bucket_bytes)
    : params_(std::move(params)),
      options_(std::move(options)),
      stage_(stage),
      dp_(std::move(dp)),
      reducer_(params_, dp_, bucket_bytes) {
  AUTOTP_CHECK(stage_ == 1 || stage_ == 2, "ZeroAdamW: stage must be 1 or 2, got {}", stage_);
  const Tensor& first = params_.front().second;
  const int64_t n = size_of(layout(), dp_->rank());
  exp_avg_ = Tensor::zeros({n}, first.dtype(), first.device());
  exp_avg_sq_ = Tensor::zeros({n}, first.dtype(), first.device());
  grad_ = Tensor::zeros({n}, first.dtype(), first.device());
}

int64_t ZeroAdamW::optimizer_state_bytes() const {
  return 2 * exp_avg_.numel() * static_cast<int64_t>(exp_avg_.itemsize());
}

int64_t ZeroAdamW::gradient_bytes() const {
  const int64_t item = static_cast<int64_t>(grad_.itemsize());
  return stage_ == 2 ? grad_.numel() * item : layout().total * item;
}

void ZeroAdamW::reduce_gradients() {
  if (stage_ == 2) {
    reducer_.reduce_scatter_mean(grad_);
    return;
  }
  reducer_.all_reduce_mean();
  const int64_t p0 = begin_of(layout(), dp_->rank());
  gather_flat_range(params_, layout(), p0, p0 + grad_.numel(), grad_, /*grads=*/true);
}

double ZeroAdamW::partition_grad_sq_sum(const std::vector<bool>& counts) const {
  const FlatParamLayout& l = layout();
  const int64_t p0 = begin_of(l, dp_->rank()), p1 = p0 + grad_.numel();
  if (!grad_.device().is_cpu()) {
    // The counted pieces in one multi-tensor sum of squares on the device: one read.
    std::vector<Tensor> pieces;
    for (size_t i = 0; i < l.offsets.size(); ++i) {
      if (!counts.empty() && !counts[i]) continue;
      const int64_t a = std::max(p0, l.offsets[i]), b = std::min(p1, l.offsets[i] + l.numels[i]);
      if (a < b) pieces.push_back(grad_.narrow(0, a - p0, b - a));  // [b - a]
    }
    return pieces.empty() ? 0.0 : ops::sum_of_squares(pieces).item();
  }
  double sum = 0.0;
  dispatch_float(grad_.dtype(), "grad norm", [&]<typename T>(TypeTag<T>) {
    const T* g = grad_.data<T>();
    for (size_t i = 0; i < l.offsets.size(); ++i) {
      if (!counts.empty() && !counts[i]) continue;
      const int64_t a = std::max(p0, l.offsets[i]), b = std::min(p1, l.offsets[i] + l.numels[i]);
      for (int64_t k = a; k < b; ++k) {
        const double v = static_cast<double>(g[k - p0]);
        sum += v * v;
      }
    }
  });
  return sum;
}

void ZeroAdamW::scale_partition_grad(double coef) {
  if (!grad_.device().is_cpu()) {
    NoGradGuard no_grad;
    grad_.copy_(ops::mul(grad_, coef));
    return;
  }
  dispatch_float(grad_.dtype(), "clip", [&]<typename T>(TypeTag<T>) {
    T* g = grad_.data<T>();
    const T c = static_cast<T>(coef);
    for (int64_t k = 0; k < grad_.numel(); ++k)
      g[k] *= c;
  });
}

void ZeroAdamW::step() {
  NoGradGuard no_grad;
  const FlatParamLayout& l = layout();
  const int me = dp_->rank();
  const int64_t p0 = begin_of(l, me), p1 = p0 + grad_.numel();
  step_ += 1;
  const Tensor& first = params_.front().second;
  const bool on_host = first.device().is_cpu();
  std::vector<SlicePiece> device_pieces;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t a = std::max(p0, l.offsets[i]), b = std::min(p1, l.offsets[i] + l.numels[i]);
    if (a >= b) continue;
    const auto& [name, param] = params_[i];
    const bool decay = !(options_.no_weight_decay && options_.no_weight_decay(name));
    const kernels::cpu::AdamWStep c = adamw_step_constants(options_, step_, decay);
    if (!on_host) {
      device_pieces.push_back({element_at(param, a - l.offsets[i]), element_at(exp_avg_, a - p0),
                               element_at(exp_avg_sq_, a - p0), element_at(grad_, a - p0), b - a,
                               c});
      continue;
    }
    dispatch_float(param.dtype(), "ZeroAdamW", [&]<typename T>(TypeTag<T>) {
      kernels::cpu::adamw_step<T>(param.data<T>() + (a - l.offsets[i]),
                                  exp_avg_.data<T>() + (a - p0), exp_avg_sq_.data<T>() + (a - p0),
                                  grad_.data<T>() + (a - p0), b - a, c);
    });
  }
  if (!on_host) update_pieces_on_device(device_pieces, first.dtype(), first.device());
  // Every rank's updated slice into every rank's parameters.
  Tensor mine = Tensor::empty({p1 - p0}, first.dtype(), first.device());
  gather_flat_range(params_, l, p0, p1, mine, /*grads=*/false);
  const Tensor full = dp_->all_gather(mine, 0, l.partition_sizes).contiguous();  // [total]
  scatter_flat_range(params_, l, 0, l.total, full);
}

void ZeroAdamW::zero_grad() {
  for (const auto& [name, p] : params_)
    p.zero_grad();
}

void ZeroAdamW::load_full_state(const FlatAdamWState& full) {
  AUTOTP_CHECK(full.exp_avg.numel() == layout().total && full.exp_avg_sq.numel() == layout().total,
               "ZeRO optimizer state: {} elements, the parameters have {}", full.exp_avg.numel(),
               layout().total);
  const int64_t p0 = begin_of(layout(), dp_->rank());
  exp_avg_.copy_(full.exp_avg.to(exp_avg_.dtype()).narrow(0, p0, exp_avg_.numel()));
  exp_avg_sq_.copy_(full.exp_avg_sq.to(exp_avg_sq_.dtype()).narrow(0, p0, exp_avg_sq_.numel()));
  step_ = full.step;
}

void ZeroAdamW::load_state_by_parameter(
    int64_t step, const std::function<std::pair<Tensor, Tensor>(size_t)>& moments) {
  const FlatParamLayout& l = layout();
  exp_avg_.zero_();
  exp_avg_sq_.zero_();
  step_ = step;
  if (step == 0) return;
  const int64_t p0 = begin_of(l, dp_->rank()), p1 = p0 + exp_avg_.numel();
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t a = std::max(p0, l.offsets[i]), b = std::min(p1, l.offsets[i] + l.numels[i]);
    if (a >= b) continue;
    const auto [m, v] = moments(i);
    AUTOTP_CHECK(m.numel() == l.numels[i] && v.numel() == l.numels[i],
                 "ZeRO optimizer state: parameter '{}' has {} elements, its moments {} and {}",
                 params_[i].first, l.numels[i], m.numel(), v.numel());
    const int64_t from = a - l.offsets[i];
    exp_avg_.narrow(0, a - p0, b - a).copy_(m.reshape({m.numel()}).narrow(0, from, b - a));
    exp_avg_sq_.narrow(0, a - p0, b - a).copy_(v.reshape({v.numel()}).narrow(0, from, b - a));
  }
}

FlatAdamWState ZeroAdamW::gather_full_state() const {
  FlatAdamWState s;
  s.step = step_;
  s.exp_avg = dp_->all_gather(exp_avg_, 0, layout().partition_sizes).contiguous();
  s.exp_avg_sq = dp_->all_gather(exp_avg_sq_, 0, layout().partition_sizes).contiguous();
  return s;
}

FlatAdamWState flatten_adamw_state(const AdamW& optimizer, const FlatParamLayout& layout) {
  const NamedTensors& params = optimizer.params();
  FlatAdamWState s;
  const Tensor& first = params.front().second;
  s.exp_avg = Tensor::zeros({layout.total}, first.dtype(), first.device());
  s.exp_avg_sq = Tensor::zeros({layout.total}, first.dtype(), first.device());
  for (size_t i = 0; i < params.size(); ++i) {
    const AdamWParamState& st = optimizer.state(i);
    AUTOTP_CHECK(i == 0 || st.step == s.step,
                 "optimizer state: parameter '{}' took {} steps, '{}' took {} (a flat state "
                 "needs equal counts)",
                 params[i].first, st.step, params[0].first, s.step);
    s.step = st.step;
    if (st.step == 0) continue;
    copy_flat_elements(s.exp_avg, layout.offsets[i], st.exp_avg.contiguous(), 0, layout.numels[i]);
    copy_flat_elements(s.exp_avg_sq, layout.offsets[i], st.exp_avg_sq.contiguous(), 0,
                       layout.numels[i]);
  }
  return s;
}

NamedTensors unflatten_adamw_state(const FlatAdamWState& state, const NamedTensors& params,
                                   const FlatParamLayout& layout) {
  NamedTensors out;
  if (state.step == 0) return out;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, p] = params[i];
    out.emplace_back(name + ".exp_avg",
                     state.exp_avg.narrow(0, layout.offsets[i], layout.numels[i]).view(p.shape()));
    out.emplace_back(
        name + ".exp_avg_sq",
        state.exp_avg_sq.narrow(0, layout.offsets[i], layout.numels[i]).view(p.shape()));
    out.emplace_back(name + ".step", Tensor::from_vector_i64({state.step}, {}));
  }
  return out;
}

}  // namespace autotp
