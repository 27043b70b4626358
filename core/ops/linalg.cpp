// matmul and linear on the CPU GEMM kernel or cuBLASLt: strided views are passed to the
// kernel as leading dimensions and transpose flags, broadcast batch dims as stride-0 strides.
#include "core/ops/linalg.h"

#include <algorithm>
#include <vector>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "kernels/cpu/gemm.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/gemm.h"
#endif

namespace autotp::ops {

namespace {

// How the GEMM kernel reads a strided matrix [rows, cols]: row-major with leading dimension
// `ld` (unit column stride), or as the transpose of a row-major [cols, rows] matrix (unit row
// stride). Neither: the matrix needs a contiguous copy.
struct MatrixLayout {
  bool usable = false;
  bool trans = false;
  int64_t ld = 0;
};

MatrixLayout matrix_layout(const Tensor& t) {
  const int64_t nd = t.dim();
  const int64_t rows = t.shape()[nd - 2], cols = t.shape()[nd - 1];
  const int64_t row_stride = t.strides()[nd - 2], col_stride = t.strides()[nd - 1];
  if (col_stride == 1 || cols == 1) return {true, false, row_stride};
  if (row_stride == 1 || rows == 1) return {true, true, col_stride};
  return {};
}

// The same two forms as cuBLAS reads them: the leading dimension must be at least the length
// of a stored row (and >= 1), so stride-0 (expanded) rows or columns need a copy. The leading
// dimension of a single row or column is never used and is normalized; so is an empty matrix's.
MatrixLayout cuda_matrix_layout(const Tensor& t) {
  const int64_t nd = t.dim();
  const int64_t rows = t.shape()[nd - 2], cols = t.shape()[nd - 1];
  const int64_t row_stride = t.strides()[nd - 2], col_stride = t.strides()[nd - 1];
  if (rows == 0 || cols == 0) return {true, false, std::max<int64_t>(cols, 1)};
  if (col_stride == 1 || cols == 1) {
    const int64_t ld = rows == 1 ? cols : row_stride;
    if (ld >= cols) return {true, false, ld};
  }
  if (row_stride == 1 || rows == 1) {
    const int64_t ld = cols == 1 ? rows : col_stride;
    if (ld >= rows) return {true, true, ld};
  }
  return {};
}

MatrixLayout layout_for(const Tensor& t) {
  return t.device().is_cpu() ? matrix_layout(t) : cuda_matrix_layout(t);
}

// `t` itself when the kernel of its device can read its last two dims, else a contiguous copy.
Tensor gemm_operand(const Tensor& t) {
  return layout_for(t).usable ? t : t.contiguous();
}

// One batch dim of a GEMM: its size and each operand's stride (0 where broadcast).
struct BatchDim {
  int64_t size, a, b, c;
};

// out [batch..., M, N] (contiguous) = a [batch..., M, K] @ b [batch..., K, N] + beta * C, where C
// is `c_in` (contiguous, out's shape, another buffer) when defined and out itself otherwise.
// a and b are views of the full batch shape (stride 0 on broadcast dims) whose matrix dims
// layout_for() accepts. The innermost batch dims that every operand lays out with one
// stride become one strided-batched kernel call; the remaining outer dims are looped over.
// CPU and CUDA make the same logical calls (same sizes, flags, leading dims and strides).
void gemm_into(const Tensor& out, const Tensor& a, const Tensor& b, double beta, const char* op,
               const Tensor& c_in = Tensor()) {
  if (out.numel() == 0) return;
  AUTOTP_ASSERT(!c_in.defined() || (c_in.is_contiguous() && c_in.shape() == out.shape() &&
                                    !c_in.shares_storage(out)),
                "{}: gemm_into's C input must be a separate contiguous tensor of out's shape", op);
  const int64_t nd = out.dim();
  const int64_t m = out.shape()[nd - 2], n = out.shape()[nd - 1], k = a.shape()[nd - 1];
  const MatrixLayout la = layout_for(a), lb = layout_for(b);
  AUTOTP_ASSERT(out.is_contiguous() && la.usable && lb.usable,
                "{}: gemm_into needs a contiguous output and kernel-readable operands", op);
  const Strides out_strides = contiguous_strides(out.shape());
  std::vector<BatchDim> dims;
  for (int64_t d = 0; d < nd - 2; ++d) {
    if (out.shape()[d] == 1) continue;
    dims.push_back({out.shape()[d], a.strides()[d], b.strides()[d], out_strides[d]});
  }
  // dims[first:] collapse into `count` matrices at constant strides.
  size_t first = dims.empty() ? 0 : dims.size() - 1;
  auto nests = [](const BatchDim& outer, const BatchDim& inner) {
    return outer.a == inner.a * inner.size && outer.b == inner.b * inner.size &&
           outer.c == inner.c * inner.size;
  };
  while (first > 0 && nests(dims[first - 1], dims[first]))
    --first;
  int64_t count = 1, outer_count = 1;
  for (size_t d = 0; d < dims.size(); ++d)
    (d < first ? outer_count : count) *= dims[d].size;
  const BatchDim stride = dims.empty() ? BatchDim{1, 0, 0, 0} : dims.back();
  // A shared b and a's matrices stacked evenly: the batch folds into M (one larger GEMM).
  const bool fold =
      count > 1 && stride.b == 0 && !la.trans && stride.a == m * la.ld && stride.c == m * n;

  // Calls run(off_a, off_b, off_c) (element offsets) once per outer batch index.
  auto for_each_outer = [&](auto&& run) {
    std::vector<int64_t> index(first, 0);
    int64_t off_a = 0, off_b = 0, off_c = 0;
    for (int64_t o = 0; o < outer_count; ++o) {
      run(off_a, off_b, off_c);
      // Odometer over the outer batch dims.
      for (size_t d = first; d-- > 0;) {
        off_a += dims[d].a;
        off_b += dims[d].b;
        off_c += dims[d].c;
        if (++index[d] < dims[d].size) break;
        off_a -= dims[d].a * dims[d].size;
        off_b -= dims[d].b * dims[d].size;
        off_c -= dims[d].c * dims[d].size;
        index[d] = 0;
      }
    }
  };

  if (out.device().is_cpu()) {
    if (c_in.defined() && beta != 0.0) out.copy_(c_in);  // the CPU kernel reads C in place
    dispatch_float(out.dtype(), op, [&]<typename T>(TypeTag<T>) {
      T* c = out.data<T>();
      const T* pa = static_cast<const T*>(a.raw_data());
      const T* pb = static_cast<const T*>(b.raw_data());
      for_each_outer([&](int64_t off_a, int64_t off_b, int64_t off_c) {
        if (fold) {
          kernels::cpu::gemm<T>(c + off_c, n, pa + off_a, la.ld, false, pb + off_b, lb.ld, lb.trans,
                                count * m, n, k, T(1), static_cast<T>(beta));
        } else {
          kernels::cpu::gemm_strided_batched<T>(c + off_c, n, stride.c, pa + off_a, la.ld, stride.a,
                                                la.trans, pb + off_b, lb.ld, stride.b, lb.trans, m,
                                                n, k, T(1), static_cast<T>(beta), count);
        }
      });
    });
    return;
  }
#ifdef AUTOTP_WITH_CUDA
  kernels::cuda::GemmContext& ctx = kernels::cuda::GemmContext::for_device(out.device().index);
  const int dtype = static_cast<int>(out.dtype());
  const int64_t item = static_cast<int64_t>(out.itemsize());
  char* c = static_cast<char*>(out.raw_data());
  const char* c_read = c_in.defined() ? static_cast<const char*>(c_in.raw_data()) : c;
  const char* pa = static_cast<const char*>(a.raw_data());
  const char* pb = static_cast<const char*>(b.raw_data());
  for_each_outer([&](int64_t off_a, int64_t off_b, int64_t off_c) {
    if (fold) {
      kernels::cuda::gemm_strided_batched(
          ctx, dtype, c + off_c * item, n, 0, pa + off_a * item, la.ld, 0, false, pb + off_b * item,
          lb.ld, 0, lb.trans, count * m, n, k, 1.0, beta, 1, nullptr, c_read + off_c * item);
    } else {
      kernels::cuda::gemm_strided_batched(ctx, dtype, c + off_c * item, n, stride.c,
                                          pa + off_a * item, la.ld, stride.a, la.trans,
                                          pb + off_b * item, lb.ld, stride.b, lb.trans, m, n, k,
                                          1.0, beta, count, nullptr, c_read + off_c * item);
    }
  });
#else
  AUTOTP_FAIL("{}: CUDA tensors need a build with the CUDA backend", op);
#endif
}

void check_same_kind(const Tensor& a, const Tensor& b, const char* op, const char* a_name,
                     const char* b_name) {
  AUTOTP_CHECK(a.dtype() == b.dtype(),
               "{}: {} ({}, shape {}) and {} ({}, shape {}) differ in dtype", op, a_name,
               dtype_name(a.dtype()), shape_str(a.shape()), b_name, dtype_name(b.dtype()),
               shape_str(b.shape()));
  AUTOTP_CHECK(a.device() == b.device(), "{}: {} (shape {}) is on {} but {} (shape {}) is on {}",
               op, a_name, shape_str(a.shape()), a.device().str(), b_name, shape_str(b.shape()),
               b.device().str());
}

// True when a pending gradient can take a GEMM's result in place (beta = 1): present, of the
// gradient's shape, dtype and device, and owned by the engine alone (see PendingGradients).
bool can_accumulate_into(const Tensor& pending, const Shape& shape, const Tensor& like) {
  return pending.defined() && pending.shape() == shape && pending.dtype() == like.dtype() &&
         pending.device() == like.device() && owns_its_storage(pending);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  AUTOTP_CHECK(a.defined() && b.defined(), "matmul: undefined operand");
  AUTOTP_CHECK(a.dim() >= 2 && b.dim() >= 2,
               "matmul: operands need at least 2 dims, got shapes {} and {}", shape_str(a.shape()),
               shape_str(b.shape()));
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  AUTOTP_CHECK(b.size(-2) == k,
               "matmul: shapes {} and {} do not match (a's last dim {} vs b's second-to-last {})",
               shape_str(a.shape()), shape_str(b.shape()), k, b.size(-2));
  check_same_kind(a, b, "matmul", "a", "b");
  // Batch dims broadcast with NumPy rules.
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2);
  const Shape b_batch(b.shape().begin(), b.shape().end() - 2);
  const size_t nb = std::max(a_batch.size(), b_batch.size());
  Shape batch(nb);
  for (size_t i = 0; i < nb; ++i) {
    const int64_t da = i < nb - a_batch.size() ? 1 : a_batch[i - (nb - a_batch.size())];
    const int64_t db = i < nb - b_batch.size() ? 1 : b_batch[i - (nb - b_batch.size())];
    AUTOTP_CHECK(da == db || da == 1 || db == 1,
                 "matmul: batch dims of shapes {} and {} cannot be broadcast ({} vs {})",
                 shape_str(a.shape()), shape_str(b.shape()), da, db);
    batch[i] = da == 1 ? db : da;
  }
  Shape a_full = batch, b_full = batch, out_shape = batch;
  a_full.insert(a_full.end(), {m, k});
  b_full.insert(b_full.end(), {k, n});
  out_shape.insert(out_shape.end(), {m, n});

  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  // Broadcast batch dims become stride-0 views: a 2-D b is shared by every batch, not copied.
  gemm_into(out, gemm_operand(a.detach()).expand(a_full), gemm_operand(b.detach()).expand(b_full),
            0.0, "matmul");

  const Tensor sa = a.detach(), sb = b.detach();
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  return record_op(out, "MatmulBackward", {&a, &b}, [sa, sb, ga, gb](const Tensor& g) {
    // g [batch..., M, N]
    Tensor da, db;
    if (ga) {
      // dA [batch..., M, K] = g @ B^T, summed over the dims a was broadcast along.
      da = sum_to_shape(matmul(g, sb.transpose(-1, -2)), sa.shape());
    }
    if (gb) {
      const int64_t k = sa.size(-1), n = sb.size(-1);
      if (sb.dim() == 2 && sa.dim() > 2) {
        // A shared 2-D b: dB [K, N] = A^T [K, rows] @ g [rows, N] over all batch rows at once.
        db = matmul(sa.reshape({-1, k}).transpose(0, 1), g.reshape({-1, n}));
      } else {
        // dB [batch..., K, N] = A^T @ g, summed over the dims b was broadcast along.
        db = sum_to_shape(matmul(sa.transpose(-1, -2), g), sb.shape());
      }
    }
    return std::vector<Tensor>{da, db};
  });
}

namespace {

// linear (op "linear") and linear_add (op "linear_add": `residual` defined) in one body.
Tensor linear_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                   const Tensor& residual, const char* op) {
  AUTOTP_CHECK(x.defined() && weight.defined(), "{}: undefined input or weight", op);
  AUTOTP_CHECK(weight.dim() == 2, "{}: weight must be [out_features, in_features], got {}", op,
               shape_str(weight.shape()));
  AUTOTP_CHECK(x.dim() >= 1, "{}: input must have at least 1 dim, got shape {}", op,
               shape_str(x.shape()));
  const int64_t out_features = weight.size(0), in_features = weight.size(1);
  AUTOTP_CHECK(x.size(-1) == in_features,
               "{}: input shape {} does not match weight shape {} (last dim {} vs "
               "in_features {})",
               op, shape_str(x.shape()), shape_str(weight.shape()), x.size(-1), in_features);
  check_same_kind(x, weight, op, "input", "weight");
  const bool has_bias = bias.defined();
  if (has_bias) {
    AUTOTP_CHECK(bias.dim() == 1 && bias.size(0) == out_features,
                 "{}: bias shape {} does not match weight shape {} (expected [{}])", op,
                 shape_str(bias.shape()), shape_str(weight.shape()), out_features);
    check_same_kind(bias, weight, op, "bias", "weight");
  }
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  const bool has_residual = residual.defined();
  if (has_residual) {
    AUTOTP_CHECK(residual.shape() == out_shape,
                 "{}: residual shape {} does not match the output shape {} (input {}, weight {})",
                 op, shape_str(residual.shape()), shape_str(out_shape), shape_str(x.shape()),
                 shape_str(weight.shape()));
    check_same_kind(residual, weight, op, "residual", "weight");
  }

  // All leading dims flattened into rows: out2 [rows, out] = x2 [rows, in] @ W^T (+ bias)
  // (+ residual). Rows counted explicitly (not -1), so zero-width in/out features (empty TP
  // shards) work.
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d)
    rows *= x.size(d);
  const Tensor x2 = x.detach().reshape({rows, in_features});
  Tensor out2 = Tensor::empty({rows, out_features}, x.dtype(), x.device());
  // What the GEMM adds its product to (beta = 1): the residual, read as the GEMM's C input;
  // the bias, broadcast over rows into out2; both, summed into out2 first.
  Tensor c_in;
  if (has_residual && !has_bias) {
    c_in = residual.detach().contiguous().view({rows, out_features});
  } else if (has_residual) {
    out2.copy_(ops::add(residual.detach(), bias.detach()).view({rows, out_features}));
  } else if (has_bias) {
    out2.copy_(bias.detach());
  }
  // W^T is a transposed view of the [out, in] weight: the kernel reads it with trans_b.
  gemm_into(out2, gemm_operand(x2), gemm_operand(weight.detach().transpose(0, 1)),
            has_bias || has_residual ? 1.0 : 0.0, op, c_in);
  Tensor out = out2.view(out_shape);

  const Tensor sx2 = x2, sw = weight.detach();
  const Shape x_shape = x.shape();
  const bool gx = x.requires_grad(), gw = weight.requires_grad();
  const bool gbias = has_bias && bias.requires_grad();
  const bool gresidual = has_residual && residual.requires_grad();
  // dx and dW accumulate onto a gradient already pending for x or W (x feeding several
  // projections, a weight used twice) inside the GEMM (beta = 1) when the engine's buffer may
  // be overwritten, instead of in a separate add. The residual's gradient is the output's.
  return record_folding_op(
      out, has_residual ? "LinearAddBackward" : "LinearBackward",
      {&x, &weight, has_bias ? &bias : nullptr, has_residual ? &residual : nullptr},
      [sx2, sw, x_shape, gx, gw, gbias, gresidual, out_features, in_features, rows](
          const Tensor& g, PendingGradients& pending) {
        const Tensor g2 = g.reshape({rows, out_features});  // [rows, out]
        Tensor dx, dw, db;
        if (gx) {  // [rows, out] @ [out, in]
          if (can_accumulate_into(pending[0], x_shape, sw)) {
            dx = std::move(pending[0]);
            gemm_into(dx.view({rows, in_features}), gemm_operand(g2), gemm_operand(sw), 1.0,
                      "linear backward");
          } else {
            dx = matmul(g2, sw).reshape(x_shape);
          }
        }
        if (gw) {  // [out, rows] @ [rows, in]
          if (can_accumulate_into(pending[1], sw.shape(), sw)) {
            dw = std::move(pending[1]);
            gemm_into(dw, gemm_operand(g2.transpose(0, 1)), gemm_operand(sx2), 1.0,
                      "linear backward");
          } else {
            dw = matmul(g2.transpose(0, 1), sx2);
          }
        }
        if (gbias) db = sum(g2, {0});  // [out]
        return std::vector<Tensor>{dx, dw, db, gresidual ? g : Tensor()};
      });
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  return linear_impl(x, weight, bias, Tensor(), "linear");
}

Tensor linear_add(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& residual) {
  AUTOTP_CHECK(residual.defined(), "linear_add: undefined residual");
  return linear_impl(x, weight, bias, residual, "linear_add");
}

void set_gemm_autotune(const Device& device, bool on) {
  if (device.is_cpu()) return;
#ifdef AUTOTP_WITH_CUDA
  kernels::cuda::GemmContext::for_device(device.index).set_autotune(on);
#else
  (void)on;
  AUTOTP_FAIL("gemm autotune on {}: CUDA devices need a build with the CUDA backend", device.str());
#endif
}

kernels::GemmAutotuneReport gemm_autotune_report(const Device& device) {
  if (device.is_cpu()) return {};
#ifdef AUTOTP_WITH_CUDA
  return kernels::cuda::GemmContext::for_device(device.index).autotune_report();
#else
  AUTOTP_FAIL("gemm autotune on {}: CUDA devices need a build with the CUDA backend", device.str());
#endif
}

}  // namespace autotp::ops
