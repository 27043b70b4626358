// FlatParamLayout, even partitions, copies between parameters and flat ranges, and the
// bucketed gradient averaging (all_reduce or reduce_scatter per bucket).
#include "engine/zero_partition.h"

#include <algorithm>
#include <cstring>

#include "core/autograd/grad_mode.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/ops/elementwise.h"

namespace autotp {

namespace {

// Calls fn(param index, first element within the parameter, flat offset, count) for every
// piece of flat range [begin, end).
template <typename Fn>
void for_each_piece(const FlatParamLayout& layout, int64_t begin, int64_t end, Fn&& fn) {
  for (size_t i = 0; i < layout.offsets.size(); ++i) {
    const int64_t a = std::max(begin, layout.offsets[i]);
    const int64_t b = std::min(end, layout.offsets[i] + layout.numels[i]);
    if (a < b) fn(i, a - layout.offsets[i], a, b - a);
  }
}

// Multiplies every element of the contiguous tensor `t` by `factor` in place.
void scale(const Tensor& t, double factor) {
  if (!t.device().is_cpu()) {
    NoGradGuard no_grad;
    t.copy_(ops::mul(t, factor));
    return;
  }
  dispatch_float(t.dtype(), "gradient mean", [&]<typename T>(TypeTag<T>) {
    T* p = t.data<T>();
    const T f = static_cast<T>(factor);
    for (int64_t i = 0; i < t.numel(); ++i)
      p[i] *= f;
  });
}

// `t` as a flat view without autograd history.
Tensor flat_view(const Tensor& t) {
  return t.detach().view({t.numel()});
}

}  // namespace

std::vector<int64_t> even_partition(int64_t total, int parts) {
  AUTOTP_CHECK(parts >= 1 && total >= 0, "even_partition: {} elements into {} parts", total, parts);
  std::vector<int64_t> sizes(static_cast<size_t>(parts), total / parts);
  for (int64_t r = 0; r < total % parts; ++r)
    sizes[static_cast<size_t>(r)] += 1;
  return sizes;
}

void copy_flat_elements(const Tensor& dst, int64_t dst_at, const Tensor& src, int64_t src_at,
                        int64_t n) {
  AUTOTP_ASSERT(dst.is_contiguous() && src.is_contiguous() && dst.dtype() == src.dtype(),
                "flat copy between {} {} and {} {}", dtype_name(dst.dtype()),
                dst.is_contiguous() ? "contiguous" : "strided", dtype_name(src.dtype()),
                src.is_contiguous() ? "contiguous" : "strided");
  AUTOTP_ASSERT(n >= 0 && dst_at >= 0 && src_at >= 0 && dst_at + n <= dst.numel() &&
                    src_at + n <= src.numel(),
                "flat copy of {} elements from [{}] of {} to [{}] of {}", n, src_at, src.numel(),
                dst_at, dst.numel());
  if (n == 0) return;
  if (dst.device().is_cpu() && src.device().is_cpu()) {
    const size_t item = dst.itemsize();
    std::memcpy(static_cast<char*>(dst.raw_data()) + static_cast<size_t>(dst_at) * item,
                static_cast<const char*>(src.raw_data()) + static_cast<size_t>(src_at) * item,
                static_cast<size_t>(n) * item);
    return;
  }
  flat_view(dst).narrow(0, dst_at, n).copy_(flat_view(src).narrow(0, src_at, n));
}

FlatParamLayout FlatParamLayout::build(const NamedTensors& params, int dp_size) {
  FlatParamLayout l;
  for (const auto& [name, p] : params) {
    AUTOTP_CHECK(p.is_contiguous(), "data parallelism: parameter '{}' must be contiguous", name);
    AUTOTP_CHECK(p.dtype() == params.front().second.dtype(),
                 "data parallelism: parameter '{}' is {}, the first parameter is {} (one dtype "
                 "expected)",
                 name, dtype_name(p.dtype()), dtype_name(params.front().second.dtype()));
    AUTOTP_CHECK(p.device() == params.front().second.device(),
                 "data parallelism: parameter '{}' is on {}, the first parameter on {} (one "
                 "device expected)",
                 name, p.device().str(), params.front().second.device().str());
    l.offsets.push_back(l.total);
    l.numels.push_back(p.numel());
    l.total += p.numel();
  }
  l.partition_sizes = even_partition(l.total, dp_size);
  int64_t at = 0;
  for (int64_t s : l.partition_sizes) {
    l.partition_offsets.push_back(at);
    at += s;
  }
  return l;
}

void gather_flat_range(const NamedTensors& params, const FlatParamLayout& layout, int64_t begin,
                       int64_t end, const Tensor& out, bool grads) {
  AUTOTP_ASSERT(out.numel() >= end - begin, "gather of {} elements into {}", end - begin,
                out.numel());
  NoGradGuard no_grad;
  for_each_piece(layout, begin, end, [&](size_t i, int64_t within, int64_t flat, int64_t n) {
    const Tensor& p = params[i].second;
    const Tensor source = grads ? p.grad() : p;
    if (!source.defined()) {
      flat_view(out).narrow(0, flat - begin, n).zero_();
      return;
    }
    AUTOTP_CHECK(source.is_contiguous() && source.dtype() == p.dtype(),
                 "data parallelism: the gradient of '{}' must be contiguous {}", params[i].first,
                 dtype_name(p.dtype()));
    copy_flat_elements(out, flat - begin, source, within, n);
  });
}

void scatter_flat_range(const NamedTensors& params, const FlatParamLayout& layout, int64_t begin,
                        int64_t end, const Tensor& in) {
  AUTOTP_ASSERT(in.numel() >= end - begin, "scatter of {} elements from {}", end - begin,
                in.numel());
  NoGradGuard no_grad;
  for_each_piece(layout, begin, end, [&](size_t i, int64_t within, int64_t flat, int64_t n) {
    copy_flat_elements(params[i].second, within, in, flat - begin, n);
  });
}

void gather_flat_range(const NamedTensors& params, const FlatParamLayout& layout, int64_t begin,
                       int64_t end, void* out, bool grads) {
  char* dst = static_cast<char*>(out);
  for_each_piece(layout, begin, end, [&](size_t i, int64_t within, int64_t flat, int64_t n) {
    const Tensor& p = params[i].second;
    AUTOTP_CHECK(p.device().is_cpu(),
                 "gather_flat_range into host memory: '{}' is on {} (pass a tensor instead)",
                 params[i].first, p.device().str());
    const size_t item = p.itemsize();
    char* to = dst + static_cast<size_t>(flat - begin) * item;
    const Tensor source = grads ? p.grad() : p;
    if (!source.defined()) {
      std::memset(to, 0, static_cast<size_t>(n) * item);
      return;
    }
    AUTOTP_CHECK(source.is_contiguous() && source.dtype() == p.dtype(),
                 "data parallelism: the gradient of '{}' must be contiguous {}", params[i].first,
                 dtype_name(p.dtype()));
    std::memcpy(to,
                static_cast<const char*>(source.raw_data()) + static_cast<size_t>(within) * item,
                static_cast<size_t>(n) * item);
  });
}

void scatter_flat_range(const NamedTensors& params, const FlatParamLayout& layout, int64_t begin,
                        int64_t end, const void* in) {
  const char* src = static_cast<const char*>(in);
  for_each_piece(layout, begin, end, [&](size_t i, int64_t within, int64_t flat, int64_t n) {
    const Tensor& p = params[i].second;
    AUTOTP_CHECK(p.device().is_cpu(),
                 "scatter_flat_range from host memory: '{}' is on {} (pass a tensor instead)",
                 params[i].first, p.device().str());
    const size_t item = p.itemsize();
    std::memcpy(static_cast<char*>(p.raw_data()) + static_cast<size_t>(within) * item,
                src + static_cast<size_t>(flat - begin) * item, static_cast<size_t>(n) * item);
  });
}

// The reducer's data, shared with the parameters' hooks (which hold weak pointers).
struct GradientReducer::State {
  struct Bucket {
    size_t first = 0, last = 0;  // parameters [first, last)
    int64_t begin = 0, end = 0;  // flat range
  };
  NamedTensors params;
  std::shared_ptr<Communicator> dp;
  FlatParamLayout layout;
  std::vector<Bucket> buckets;
  std::vector<size_t> bucket_of;  // per parameter

  // The reduction in progress (between arm() or the start of a reduction and its end).
  bool armed = false;
  ReduceCollective collective = ReduceCollective::AllReduce;
  std::vector<int64_t> waiting;   // per bucket: parameters whose gradient is not final yet
  std::vector<bool> is_final;     // per parameter: its hook fired since arm()
  int64_t next = -1;              // the next bucket to launch (they go last to first); -1: none
  std::vector<Tensor> buffers;    // per bucket: packed gradients, alive until the wait
  std::vector<WorkHandle> works;  // per bucket; null until launched
  int64_t launched_from_hooks = 0;

  // Fresh per-reduction bookkeeping: nothing launched, no gradient final.
  void begin(ReduceCollective c) {
    collective = c;
    waiting.clear();
    for (const Bucket& b : buckets)
      waiting.push_back(static_cast<int64_t>(b.last - b.first));
    is_final.assign(params.size(), false);
    next = static_cast<int64_t>(buckets.size()) - 1;
    buffers.assign(buckets.size(), Tensor());
    works.assign(buckets.size(), nullptr);
    launched_from_hooks = 0;
  }

  // Packs bucket k's gradients and starts its collective.
  void launch(size_t k) {
    const Bucket& b = buckets[k];
    const Tensor& first = params.front().second;
    buffers[k] = Tensor::empty({b.end - b.begin}, first.dtype(), first.device());
    gather_flat_range(params, layout, b.begin, b.end, buffers[k], /*grads=*/true);
    if (collective == ReduceCollective::AllReduce) {
      works[k] = dp->all_reduce_async(buffers[k], ReduceOp::Sum);
      return;
    }
    std::vector<int64_t> sizes;  // the bucket's overlap with each rank's partition
    for (int r = 0; r < dp->size(); ++r) {
      const int64_t r0 = layout.partition_offsets[static_cast<size_t>(r)];
      const int64_t r1 = r0 + layout.partition_sizes[static_cast<size_t>(r)];
      sizes.push_back(std::max<int64_t>(0, std::min(b.end, r1) - std::max(b.begin, r0)));
    }
    works[k] = dp->reduce_scatter_async(buffers[k], 0, sizes, ReduceOp::Sum);
    // The bucket's gradients are in flight: free them (ZeRO 2 keeps only the partition).
    for (size_t i = b.first; i < b.last; ++i)
      params[i].second.zero_grad();
  }

  // Launches buckets from `next` down while their gradients are final.
  void launch_ready() {
    while (next >= 0 && waiting[static_cast<size_t>(next)] == 0) {
      launch(static_cast<size_t>(next--));
      ++launched_from_hooks;
    }
  }

  // The hook of parameter i: its gradient is final for this step.
  void on_gradient_final(size_t i) {
    if (!armed) return;
    AUTOTP_CHECK(!is_final[i],
                 "gradient reduction: '{}' received a second gradient after arm() (arm the "
                 "reducer before the last backward pass of a step only)",
                 params[i].first);
    is_final[i] = true;
    --waiting[bucket_of[i]];
    launch_ready();
  }
};

GradientReducer::GradientReducer(NamedTensors params, std::shared_ptr<Communicator> dp,
                                 int64_t bucket_bytes)
    : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.params = std::move(params);
  s.dp = std::move(dp);
  AUTOTP_CHECK(s.dp != nullptr, "GradientReducer: no DP communicator");
  AUTOTP_CHECK(!s.params.empty(), "GradientReducer: no parameters");
  AUTOTP_CHECK(bucket_bytes > 0, "GradientReducer: bucket size must be > 0, got {}", bucket_bytes);
  s.layout = FlatParamLayout::build(s.params, s.dp->size());
  const int64_t item = static_cast<int64_t>(s.params.front().second.itemsize());
  State::Bucket b;
  for (size_t i = 0; i < s.params.size(); ++i) {
    b.last = i + 1;
    b.end = s.layout.offsets[i] + s.layout.numels[i];
    s.bucket_of.push_back(s.buckets.size());
    if ((b.end - b.begin) * item >= bucket_bytes || i + 1 == s.params.size()) {
      s.buckets.push_back(b);
      b.first = b.last;
      b.begin = b.end;
    }
  }
  // A parameter that needs no gradient gets no hook: its bucket launches at the reduction.
  const std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < s.params.size(); ++i) {
    const Tensor& p = s.params[i].second;
    hook_ids_.push_back(
        !p.requires_grad() ? -1 : p.register_post_accumulate_grad_hook([weak, i](const Tensor&) {
          if (auto st = weak.lock()) st->on_gradient_final(i);
        }));
  }
}

GradientReducer::~GradientReducer() {
  if (!state_) return;  // moved from
  for (size_t i = 0; i < hook_ids_.size(); ++i) {
    if (hook_ids_[i] >= 0) state_->params[i].second.remove_post_accumulate_grad_hook(hook_ids_[i]);
  }
}

const FlatParamLayout& GradientReducer::layout() const {
  return state_->layout;
}

int64_t GradientReducer::num_buckets() const {
  return static_cast<int64_t>(state_->buckets.size());
}

int64_t GradientReducer::buckets_launched_from_hooks() const {
  return state_->launched_from_hooks;
}

bool GradientReducer::armed() const {
  return state_->armed;
}

void GradientReducer::arm(ReduceCollective collective) {
  AUTOTP_CHECK(!state_->armed, "gradient reduction: arm() twice without a reduction in between");
  state_->begin(collective);
  state_->armed = true;
}

void GradientReducer::launch_remaining(ReduceCollective collective) {
  State& s = *state_;
  if (!s.armed) {
    s.begin(collective);
  } else {
    AUTOTP_CHECK(
        s.collective == collective, "gradient reduction: armed for {}, but {} was called",
        s.collective == ReduceCollective::AllReduce ? "all_reduce_mean" : "reduce_scatter_mean",
        collective == ReduceCollective::AllReduce ? "all_reduce_mean" : "reduce_scatter_mean");
  }
  s.armed = false;  // the hooks stop here; whatever did not fire launches now, in order
  for (; s.next >= 0; --s.next)
    s.launch(static_cast<size_t>(s.next));
}

void GradientReducer::all_reduce_mean() {
  NoGradGuard no_grad;
  launch_remaining(ReduceCollective::AllReduce);
  State& s = *state_;
  for (size_t k = 0; k < s.buckets.size(); ++k) {
    s.works[k]->wait();
    scale(s.buffers[k], 1.0 / static_cast<double>(s.dp->size()));
    const State::Bucket& b = s.buckets[k];
    for (size_t i = b.first; i < b.last; ++i) {
      const Tensor& p = s.params[i].second;
      if (!p.grad().defined()) p.set_grad(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    }
    const Tensor& buffer = s.buffers[k];
    for_each_piece(
        s.layout, b.begin, b.end, [&](size_t i, int64_t within, int64_t flat, int64_t n) {
          copy_flat_elements(s.params[i].second.grad(), within, buffer, flat - b.begin, n);
        });
  }
  s.buffers.assign(s.buckets.size(), Tensor());
  s.works.assign(s.buckets.size(), nullptr);
}

void GradientReducer::reduce_scatter_mean(const Tensor& partition) {
  NoGradGuard no_grad;
  State& s = *state_;
  const int me = s.dp->rank();
  const int64_t p0 = s.layout.partition_offsets[static_cast<size_t>(me)];
  const int64_t p1 = p0 + s.layout.partition_sizes[static_cast<size_t>(me)];
  AUTOTP_CHECK(partition.numel() == p1 - p0 && partition.is_contiguous(),
               "reduce_scatter_mean: the partition buffer has {} elements, expected {}",
               partition.numel(), p1 - p0);
  launch_remaining(ReduceCollective::ReduceScatter);
  for (size_t k = 0; k < s.buckets.size(); ++k) {
    s.works[k]->wait();
    const Tensor& piece = s.works[k]->result();
    const int64_t a = std::max(s.buckets[k].begin, p0);
    if (piece.numel() == 0) continue;
    copy_flat_elements(partition, a - p0, piece.contiguous(), 0, piece.numel());
  }
  s.buffers.assign(s.buckets.size(), Tensor());
  s.works.assign(s.buckets.size(), nullptr);
  scale(partition, 1.0 / static_cast<double>(s.dp->size()));
}

}  // namespace autotp
