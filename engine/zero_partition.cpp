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

GradientReducer::GradientReducer(NamedTensors params, std::shared_ptr<Communicator> dp,
                                 int64_t bucket_bytes)
    : params_(std::move(params)), dp_(std::move(dp)) {
  AUTOTP_CHECK(dp_ != nullptr, "GradientReducer: no DP communicator");
  AUTOTP_CHECK(!params_.empty(), "GradientReducer: no parameters");
  AUTOTP_CHECK(bucket_bytes > 0, "GradientReducer: bucket size must be > 0, got {}", bucket_bytes);
  layout_ = FlatParamLayout::build(params_, dp_->size());
  const int64_t item = static_cast<int64_t>(params_.front().second.itemsize());
  Bucket b;
  for (size_t i = 0; i < params_.size(); ++i) {
    b.last = i + 1;
    b.end = layout_.offsets[i] + layout_.numels[i];
    if ((b.end - b.begin) * item >= bucket_bytes || i + 1 == params_.size()) {
      buckets_.push_back(b);
      b.first = b.last;
      b.begin = b.end;
    }
  }
}

Tensor GradientReducer::pack(const Bucket& b) const {
  const Tensor& first = params_.front().second;
  Tensor buffer = Tensor::empty({b.end - b.begin}, first.dtype(), first.device());
  gather_flat_range(params_, layout_, b.begin, b.end, buffer, /*grads=*/true);
  return buffer;
}

void GradientReducer::all_reduce_mean() const {
  NoGradGuard no_grad;
  std::vector<Tensor> buffers;
  std::vector<WorkHandle> works;
  for (const Bucket& b : buckets_) {
    buffers.push_back(pack(b));
    works.push_back(dp_->all_reduce_async(buffers.back(), ReduceOp::Sum));
  }
  for (size_t k = 0; k < buckets_.size(); ++k) {
    works[k]->wait();
    scale(buffers[k], 1.0 / static_cast<double>(dp_->size()));
    const Bucket& b = buckets_[k];
    for (size_t i = b.first; i < b.last; ++i) {
      const Tensor& p = params_[i].second;
      if (!p.grad().defined()) p.set_grad(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    }

    for_each_piece(layout_, b.begin, b.end, [&](size_t i, int64_t within, int64_t flat, int64_t n) {
      copy_flat_elements(params_[i].second.grad(), within, buffers[k], flat - b.begin, n);
    });
  }
}

void GradientReducer::reduce_scatter_mean(const Tensor& partition) const {
  NoGradGuard no_grad;
  const int me = dp_->rank();
  const int64_t p0 = layout_.partition_offsets[static_cast<size_t>(me)];
  const int64_t p1 = p0 + layout_.partition_sizes[static_cast<size_t>(me)];
  AUTOTP_CHECK(partition.numel() == p1 - p0 && partition.is_contiguous(),
               "reduce_scatter_mean: the partition buffer has {} elements, expected {}",
               partition.numel(), p1 - p0);
  std::vector<Tensor> buffers;  // kept alive until every transfer is done
  std::vector<WorkHandle> works;
  for (const Bucket& b : buckets_) {
    std::vector<int64_t> sizes;
    for (int r = 0; r < dp_->size(); ++r) {
      const int64_t r0 = layout_.partition_offsets[static_cast<size_t>(r)];
      const int64_t r1 = r0 + layout_.partition_sizes[static_cast<size_t>(r)];
      sizes.push_back(std::max<int64_t>(0, std::min(b.end, r1) - std::max(b.begin, r0)));
    }
    buffers.push_back(pack(b));
    works.push_back(dp_->reduce_scatter_async(buffers.back(), 0, sizes, ReduceOp::Sum));
    // The bucket's gradients are in flight: free them (ZeRO 2 keeps only the partition).
    for (size_t i = b.first; i < b.last; ++i)
      params_[i].second.zero_grad();
  }
  for (size_t k = 0; k < buckets_.size(); ++k) {
    works[k]->wait();
    const Tensor& piece = works[k]->result();
    const int64_t a = std::max(buckets_[k].begin, p0);
    if (piece.numel() == 0) continue;
    copy_flat_elements(partition, a - p0, piece.contiguous(), 0, piece.numel());
  }
  scale(partition, 1.0 / static_cast<double>(dp_->size()));
}

}  // namespace autotp
