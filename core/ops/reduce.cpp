// Reductions: each dim is reduced as the middle axis of a contiguous [outer, n, inner] view.
#include "core/ops/reduce.h"

#include <algorithm>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/elementwise.h"
#include "kernels/cpu/reduce.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/reduce.h"
#endif

namespace autotp::ops {

namespace {

struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};

AxisSplit split_at(const Shape& shape, int64_t dim) {
  AxisSplit s;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < dim)
      s.outer *= shape[d];
    else if (d == dim)
      s.n = shape[d];
    else
      s.inner *= shape[d];
  }
  return s;
}

// Sums one dim, keeping it as size 1. No autograd.
Tensor sum_one_dim(const Tensor& x, int64_t dim) {
  const Tensor in = x.contiguous();
  const AxisSplit s = split_at(x.shape(), dim);
  Shape out_shape = x.shape();
  out_shape[dim] = 1;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "sum", [&]<typename T>(TypeTag<T>) {
      kernels::cpu::sum_axis<T>(out.data<T>(), static_cast<const T*>(in.raw_data()), s.outer, s.n,
                                s.inner);
    });
  } else {
#ifdef AUTOTP_WITH_CUDA
    kernels::cuda::sum_axis(static_cast<int>(x.dtype()), out.raw_data(), in.raw_data(), s.outer,
                            s.n, s.inner, nullptr);
#else
    AUTOTP_FAIL("sum: CUDA tensors need a build with the CUDA backend");
#endif
  }
  return out;
}

std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim,
                                    const char* what) {
  std::vector<int64_t> out;
  for (int64_t d : dims) {
    const int64_t w = wrap_dim(d, ndim, what);
    AUTOTP_CHECK(std::find(out.begin(), out.end(), w) == out.end(), "{}: dim {} given twice", what,
                 d);
    out.push_back(w);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Shape reduced_shape(const Shape& shape, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    const bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!reduced)
      out.push_back(shape[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  AUTOTP_CHECK(x.defined(), "sum: undefined tensor");
  const std::vector<int64_t> dims = normalize_dims(dims_in, x.dim(), "sum");
  // With no dim to reduce (a 0-dim x, or dims = {}) the result is still a new tensor, never
  // an alias of x's storage.
  Tensor out = dims.empty() ? x.detach().clone() : x.detach();
  for (int64_t d : dims)
    out = sum_one_dim(out, d);
  out = out.reshape(reduced_shape(x.shape(), dims, keepdim)).detach();
  const Shape in_shape = x.shape();
  const Shape kept_shape = reduced_shape(x.shape(), dims, true);
  return record_op(out, "SumBackward", {&x}, [in_shape, kept_shape](const Tensor& g) {
    return std::vector<Tensor>{g.reshape(kept_shape).expand(in_shape).contiguous()};
  });
}

Tensor sum(const Tensor& x) {
  std::vector<int64_t> all(static_cast<size_t>(x.dim()));
  for (int64_t d = 0; d < x.dim(); ++d)
    all[d] = d;
  return sum(x, all, false);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  const std::vector<int64_t> dims = normalize_dims(dims_in, x.dim(), "mean");
  int64_t count = 1;
  for (int64_t d : dims)
    count *= x.shape()[d];
  AUTOTP_CHECK(count > 0, "mean: reducing over an empty dim of shape {}", shape_str(x.shape()));
  return div(sum(x, dims, keepdim), static_cast<double>(count));
}

Tensor mean(const Tensor& x) {
  AUTOTP_CHECK(x.numel() > 0, "mean: tensor is empty");
  return div(sum(x), static_cast<double>(x.numel()));
}

namespace {
// Values and first-argmax along `dim`, kept as size 1.
std::pair<Tensor, Tensor> max_with_index(const Tensor& x, int64_t dim) {
  AUTOTP_CHECK(x.shape()[dim] > 0, "max: dim {} of shape {} is empty", dim, shape_str(x.shape()));
  const Tensor in = x.contiguous();
  const AxisSplit s = split_at(x.shape(), dim);
  Shape out_shape = x.shape();
  out_shape[dim] = 1;
  Tensor values = Tensor::empty(out_shape, x.dtype(), x.device());
  Tensor index = Tensor::empty(out_shape, DType::I64, x.device());
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "max", [&]<typename T>(TypeTag<T>) {
      kernels::cpu::max_axis<T>(values.data<T>(), index.data<int64_t>(),
                                static_cast<const T*>(in.raw_data()), s.outer, s.n, s.inner);
    });
  } else {
#ifdef AUTOTP_WITH_CUDA
    kernels::cuda::max_axis(static_cast<int>(x.dtype()), values.raw_data(), index.data<int64_t>(),
                            in.raw_data(), s.outer, s.n, s.inner, nullptr);
#else
    AUTOTP_FAIL("max: CUDA tensors need a build with the CUDA backend");
#endif
  }
  return {values, index};
}
}  // namespace

Tensor max(const Tensor& x, int64_t dim_in, bool keepdim) {
  const int64_t dim = wrap_dim(dim_in, x.dim(), "max");
  auto [values, index] = max_with_index(x, dim);
  Tensor out = keepdim ? values : values.squeeze(dim);
  const Shape in_shape = x.shape();
  return record_op(out, "MaxBackward", {&x}, [in_shape, dim, index, keepdim](const Tensor& g) {
    // Scatter g into the argmax positions: one-hot along `dim`, built on the host.
    const Tensor gk = (keepdim ? g : g.unsqueeze(dim)).contiguous().to(Device::cpu());
    Tensor full = Tensor::zeros(in_shape, g.dtype(), Device::cpu());
    const AxisSplit s = split_at(in_shape, dim);
    const Tensor index_host = index.to(Device::cpu());
    const int64_t* idx = index_host.data<int64_t>();
    dispatch_any(g.dtype(), [&]<typename T>(TypeTag<T>) {  // a copy of g: any dtype (bf16 on GPUs)
      const T* src = static_cast<const T*>(gk.raw_data());
      T* dst = full.data<T>();
      for (int64_t o = 0; o < s.outer; ++o) {
        for (int64_t i = 0; i < s.inner; ++i) {
          const int64_t k = idx[o * s.inner + i];
          dst[(o * s.n + k) * s.inner + i] = src[o * s.inner + i];
        }
      }
    });
    return std::vector<Tensor>{full.to(g.device())};
  });
}

Tensor argmax(const Tensor& x, int64_t dim_in, bool keepdim) {
  const int64_t dim = wrap_dim(dim_in, x.dim(), "argmax");
  Tensor index = max_with_index(x.detach(), dim).second;
  return keepdim ? index : index.squeeze(dim);
}

Tensor max(const Tensor& x) {
  AUTOTP_CHECK(x.numel() > 0, "max: tensor is empty");
  return max(x.reshape({x.numel()}), 0, false);
}

}  // namespace autotp::ops
