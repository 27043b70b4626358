// cat (copies, backward narrows the gradient), split/chunk (narrow views) and index_select
// (gather kernel, backward through the deterministic index_add kernel; CPU or CUDA).
#include "core/ops/shape_ops.h"

#include <algorithm>
#include <string>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/index_segments.h"
#include "kernels/cpu/index.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/index.h"
#endif

namespace autotp::ops {

namespace {

std::string shapes_str(const std::vector<Tensor>& tensors) {
  std::string out;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (i > 0) out += ", ";
    out += shape_str(tensors[i].shape());
  }
  return out;
}

// Sizes of a contiguous [outer, n, inner] view around `dim`.
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

}  // namespace

// ---- cat ---------------------------------------------------------------------

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim_in) {
  AUTOTP_CHECK(!tensors.empty(), "cat: needs at least one tensor");
  const Tensor& first = tensors[0];
  for (const Tensor& t : tensors)
    AUTOTP_CHECK(t.defined(), "cat: undefined tensor in the list");
  const int64_t dim = wrap_dim(dim_in, first.dim(), "cat");
  Shape out_shape = first.shape();
  out_shape[dim] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    AUTOTP_CHECK(t.dim() == first.dim(),
                 "cat: tensor {} has {} dims but tensor 0 has {} (shapes {})", i, t.dim(),
                 first.dim(), shapes_str(tensors));
    for (int64_t d = 0; d < t.dim(); ++d) {
      AUTOTP_CHECK(d == dim || t.shape()[d] == first.shape()[d],
                   "cat along dim {}: tensor {} has size {} in dim {} but tensor 0 has {} "
                   "(shapes {})",
                   dim, i, t.shape()[d], d, first.shape()[d], shapes_str(tensors));
    }
    AUTOTP_CHECK(t.dtype() == first.dtype(), "cat: tensor {} is {} but tensor 0 is {}", i,
                 dtype_name(t.dtype()), dtype_name(first.dtype()));
    AUTOTP_CHECK(t.device() == first.device(), "cat: tensor {} is on {} but tensor 0 is on {}", i,
                 t.device().str(), first.device().str());
    out_shape[dim] += t.shape()[dim];
  }

  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  std::vector<int64_t> sizes;
  int64_t offset = 0;
  for (const Tensor& t : tensors) {
    out.narrow(dim, offset, t.shape()[dim]).copy_(t);
    sizes.push_back(t.shape()[dim]);
    offset += t.shape()[dim];
  }
  std::vector<const Tensor*> inputs;
  for (const Tensor& t : tensors)
    inputs.push_back(&t);
  return record_op(out, "CatBackward", inputs, [sizes, dim](const Tensor& g) {
    // g [..., sum(sizes), ...] -> one narrow view per input
    std::vector<Tensor> grads;
    int64_t start = 0;
    for (int64_t size : sizes) {
      grads.push_back(g.narrow(dim, start, size));
      start += size;
    }
    return grads;
  });
}

// ---- split / chunk -------------------------------------------------------------

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim_in) {
  AUTOTP_CHECK(x.defined(), "split: undefined tensor");
  const int64_t dim = wrap_dim(dim_in, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    AUTOTP_CHECK(s >= 0, "split: negative size {} in sizes for shape {}", s, shape_str(x.shape()));
    total += s;
  }
  AUTOTP_CHECK(total == x.shape()[dim],
               "split: sizes {} sum to {} but dim {} of shape {} has size {}", shape_str(sizes),
               total, dim, shape_str(x.shape()), x.shape()[dim]);
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(x.narrow(dim, start, s));
    start += s;
  }
  return pieces;
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim_in) {
  AUTOTP_CHECK(x.defined(), "split: undefined tensor");
  const int64_t dim = wrap_dim(dim_in, x.dim(), "split");
  const int64_t n = x.shape()[dim];
  AUTOTP_CHECK(size > 0 || (size == 0 && n == 0),
               "split: piece size {} must be positive (dim {} of shape {})", size, dim,
               shape_str(x.shape()));
  if (n == 0) return {x.narrow(dim, 0, 0)};
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < n; start += size)
    sizes.push_back(std::min(size, n - start));
  return split(x, sizes, dim);
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim_in) {
  AUTOTP_CHECK(x.defined(), "chunk: undefined tensor");
  AUTOTP_CHECK(chunks > 0, "chunk: number of chunks must be positive, got {} (shape {})", chunks,
               shape_str(x.shape()));
  const int64_t dim = wrap_dim(dim_in, x.dim(), "chunk");
  const int64_t n = x.shape()[dim];
  // An empty dim gives `chunks` empty pieces; otherwise pieces of ceil(n / chunks), which
  // may be fewer than `chunks` (n = 5, chunks = 4: sizes 2, 2, 1).
  if (n == 0) return split(x, std::vector<int64_t>(static_cast<size_t>(chunks), 0), dim);
  return split(x, (n + chunks - 1) / chunks, dim);
}

// ---- index_select --------------------------------------------------------------

Tensor index_select(const Tensor& x, int64_t dim_in, const Tensor& index) {
  AUTOTP_CHECK(x.defined() && index.defined(), "index_select: undefined tensor");
  AUTOTP_CHECK(x.dim() >= 1, "index_select: needs at least 1 dim, got shape {}",
               shape_str(x.shape()));
  const int64_t dim = wrap_dim(dim_in, x.dim(), "index_select");
  AUTOTP_CHECK(index.dtype() == DType::I64 || index.dtype() == DType::I32,
               "index_select: index must be i64 or i32, got {}", dtype_name(index.dtype()));
  AUTOTP_CHECK(index.dim() == 1, "index_select: index must be 1-D, got shape {}",
               shape_str(index.shape()));
  AUTOTP_CHECK(x.device() == index.device(),
               "index_select: x (shape {}) is on {} but index (shape {}) is on {}",
               shape_str(x.shape()), x.device().str(), shape_str(index.shape()),
               index.device().str());
  const int64_t n = x.shape()[dim];
  const std::vector<int64_t> values = index.to_vector_i64();
  for (size_t j = 0; j < values.size(); ++j) {
    AUTOTP_CHECK(values[j] >= 0 && values[j] < n,
                 "index_select: index {} at position {} is out of range for dim {} of size {} "
                 "(shape {})",
                 values[j], j, dim, n, shape_str(x.shape()));
  }

  const Tensor xc = x.detach().contiguous();
  const Tensor idx = index.contiguous();
  const AxisSplit s = split_at(x.shape(), dim);
  const int64_t count = index.numel();
  Shape out_shape = x.shape();
  out_shape[dim] = count;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  const Shape in_shape = x.shape();
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "index_select", [&]<typename T>(TypeTag<T>) {
      auto run = [&]<typename I>(const I* ip) {
        kernels::cpu::index_select<T, I>(out.data<T>(), xc.data<T>(), ip, s.outer, s.n, s.inner,
                                         count);
      };
      if (idx.dtype() == DType::I64)
        run(idx.data<int64_t>());
      else
        run(idx.data<int32_t>());
    });
    return record_op(out, "IndexSelectBackward", {&x}, [in_shape, s, idx, count](const Tensor& g) {
      // dx [in_shape] = zeros, then dx[.., idx[j], ..] += g[.., j, ..] in increasing j.
      const Tensor gc = g.contiguous();
      AUTOTP_CHECK(g.device().is_cpu(), "index_select backward: the gradient is on {}, not the cpu",
                   g.device().str());
      Tensor dx = Tensor::zeros(in_shape, g.dtype(), g.device());
      dispatch_float(g.dtype(), "index_select backward", [&]<typename T>(TypeTag<T>) {
        auto run = [&]<typename I>(const I* ip) {
          kernels::cpu::index_add<T, I>(dx.data<T>(), gc.data<T>(), ip, s.outer, s.n, s.inner,
                                        count);
        };
        if (idx.dtype() == DType::I64)
          run(idx.data<int64_t>());
        else
          run(idx.data<int32_t>());
      });
      return std::vector<Tensor>{dx};
    });
  }
#ifdef AUTOTP_WITH_CUDA
  kernels::cuda::index_select(static_cast<int>(x.dtype()), static_cast<int>(idx.dtype()),
                              out.raw_data(), xc.raw_data(), idx.raw_data(), s.outer, s.n, s.inner,
                              count, nullptr);
  return record_op(out, "IndexSelectBackward", {&x}, [in_shape, s, values, count](const Tensor& g) {
    // dx [in_shape] = zeros, then each dx[.., v, ..] = the sum of g[.., j, ..] over the j with
    // index[j] == v, in increasing j (grouped on the host; no atomics, deterministic).
    const Tensor gc = g.contiguous();
    Tensor dx = Tensor::zeros(in_shape, g.dtype(), g.device());
    const detail::IndexSegments seg = detail::make_index_segments(values, g.device());
    kernels::cuda::index_add_sorted(static_cast<int>(g.dtype()), dx.raw_data(), gc.raw_data(),
                                    seg.order.data<int64_t>(), seg.starts.data<int64_t>(),
                                    seg.values.data<int64_t>(), seg.segments, s.outer, s.n, s.inner,
                                    count, nullptr);
    return std::vector<Tensor>{dx};
  });
#else
  AUTOTP_FAIL("index_select: CUDA tensors need a build with the CUDA backend");
#endif
}

}  // namespace autotp::ops
