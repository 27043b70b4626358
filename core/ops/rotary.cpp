// Rotary position embedding: apply_rotary (rotate-half, CPU or CUDA kernels, backward kernel
// for x) and the cos/sin tables of Hugging Face's rope (default or from given inverse
// frequencies), computed in double.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/nn.h"
#include "core/ops/nn_common.h"
#include "kernels/cpu/rotary.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/rotary.h"
#endif

namespace autotp::ops {

using detail::check_same_device;
using detail::fail_without_cuda;

Tensor apply_rotary(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  AUTOTP_CHECK(x.defined() && cos.defined() && sin.defined(),
               "apply_rotary: undefined x, cos or sin");
  AUTOTP_CHECK(x.dim() >= 1, "apply_rotary: x must be [..., S, D], got shape {}",
               shape_str(x.shape()));
  const int64_t dim = x.shape().back();
  AUTOTP_CHECK(dim % 2 == 0, "apply_rotary: head dim {} of x {} must be even", dim,
               shape_str(x.shape()));
  AUTOTP_CHECK(cos.shape() == sin.shape(), "apply_rotary: cos {} and sin {} differ in shape",
               shape_str(cos.shape()), shape_str(sin.shape()));
  AUTOTP_CHECK(cos.dtype() == x.dtype() && sin.dtype() == x.dtype(),
               "apply_rotary: cos/sin dtype {} differs from x dtype {}", dtype_name(cos.dtype()),
               dtype_name(x.dtype()));
  AUTOTP_CHECK(cos.dim() <= x.dim() && broadcast_shapes(cos.shape(), x.shape()) == x.shape(),
               "apply_rotary: cos/sin of shape {} do not broadcast to x of shape {}",
               shape_str(cos.shape()), shape_str(x.shape()));
  AUTOTP_CHECK(cos.shape().back() == dim,
               "apply_rotary: cos/sin last dim {} must equal the head dim {} of x {}",
               cos.shape().back(), dim, shape_str(x.shape()));
  AUTOTP_CHECK(!needs_grad({&cos, &sin}),
               "apply_rotary: gradients w.r.t. cos/sin are not supported; pass tables that do "
               "not require grad (e.g. from rotary_tables or .detach())");
  check_same_device(x, cos, "apply_rotary", "x", "cos");
  check_same_device(x, sin, "apply_rotary", "x", "sin");
  const int64_t rows = dim == 0 ? 0 : x.numel() / dim;
  // Tables whose shape (less leading 1s) is a suffix of x's repeat every table_rows rows of x
  // and are used as they are; any other broadcast is materialized to x's shape.
  Shape table_shape = cos.shape();
  while (!table_shape.empty() && table_shape.front() == 1)
    table_shape.erase(table_shape.begin());
  const bool is_suffix = std::equal(table_shape.rbegin(), table_shape.rend(), x.shape().rbegin());
  Tensor cos_t = cos.detach(), sin_t = sin.detach();
  if (!is_suffix) {
    cos_t = cos_t.expand(x.shape());
    sin_t = sin_t.expand(x.shape());
  }
  cos_t = cos_t.contiguous();  // [table_rows, D]
  sin_t = sin_t.contiguous();  // [table_rows, D]
  const int64_t table_rows = std::max<int64_t>(cos_t.numel() / std::max<int64_t>(dim, 1), 1);
  // x [B, H, S, D] stored in [B, S, H, D] order (a projection's output viewed per head) with
  // one table row per position ([S, D]): rotated in that order, H consecutive rows sharing a
  // position, and the output (and, for such a gradient, dx) keeps the order: no transposed
  // copy on the way in or out.
  const bool per_position_table = x.dim() == 4 && table_shape == Shape{x.shape()[2], dim};
  auto in_sequence_order = [per_position_table](const Tensor& t) {
    return per_position_table && t.transpose(1, 2).is_contiguous();
  };
  // The input in an order the kernels walk as [rows, D], the output in the same order, and
  // the rows that share a table row.
  struct Walk {
    Tensor in, out;
    int64_t row_group;
  };
  auto walk_of = [in_sequence_order](const Tensor& t) {
    const Tensor d = t.detach();
    if (!in_sequence_order(d)) {
      return Walk{d.contiguous(), Tensor::empty(d.shape(), d.dtype(), d.device()), 1};
    }
    const Shape& sh = d.shape();  // [B, H, S, D]
    return Walk{d,
                Tensor::empty({sh[0], sh[2], sh[1], sh[3]}, d.dtype(), d.device()).transpose(1, 2),
                sh[1]};
  };
  const Walk w = walk_of(x);
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "apply_rotary", [&]<typename T>(TypeTag<T>) {
      kernels::cpu::rotary_forward<T>(w.out.data<T>(), w.in.data<T>(), cos_t.data<T>(),
                                      sin_t.data<T>(), rows, dim, table_rows, w.row_group);
    });
  } else {
#ifdef AUTOTP_WITH_CUDA
    kernels::cuda::rotary_forward(static_cast<int>(x.dtype()), w.out.raw_data(), w.in.raw_data(),
                                  cos_t.raw_data(), sin_t.raw_data(), rows, dim, table_rows,
                                  w.row_group, nullptr);
#else
    fail_without_cuda("apply_rotary");
#endif
  }
  return record_op(
      w.out, "RotaryBackward", {&x, &cos, &sin},
      [cos_t, sin_t, rows, dim, table_rows, walk_of](const Tensor& g) {
        check_same_device(cos_t, g, "apply_rotary backward", "cos", "gradient");
        const Walk gw = walk_of(g);  // dx in the gradient's order
        if (g.device().is_cpu()) {
          dispatch_float(g.dtype(), "apply_rotary", [&]<typename T>(TypeTag<T>) {
            kernels::cpu::rotary_backward<T>(gw.out.data<T>(), cos_t.data<T>(), sin_t.data<T>(),
                                             gw.in.data<T>(), rows, dim, table_rows, gw.row_group);
          });
        } else {
#ifdef AUTOTP_WITH_CUDA
          kernels::cuda::rotary_backward(static_cast<int>(g.dtype()), gw.out.raw_data(),
                                         cos_t.raw_data(), sin_t.raw_data(), gw.in.raw_data(), rows,
                                         dim, table_rows, gw.row_group, nullptr);
#else
          fail_without_cuda("apply_rotary backward");
#endif
        }
        return std::vector<Tensor>{gw.out, Tensor(), Tensor()};
      });
}

std::vector<double> rope_inv_freq(int64_t head_dim, double theta) {
  AUTOTP_CHECK(head_dim > 0 && head_dim % 2 == 0,
               "rope_inv_freq: head_dim must be positive and even, got {}", head_dim);
  AUTOTP_CHECK(theta > 0.0, "rope_inv_freq: theta must be positive, got {}", theta);
  const int64_t half = head_dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    inv_freq[i] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
  }
  return inv_freq;
}

std::pair<Tensor, Tensor> rotary_tables_from_inv_freq(int64_t seq_len,
                                                      const std::vector<double>& inv_freq,
                                                      DType dtype, Device device) {
  AUTOTP_CHECK(seq_len >= 0, "rotary_tables: seq_len must be >= 0, got {}", seq_len);
  AUTOTP_CHECK(!inv_freq.empty(), "rotary_tables: inv_freq is empty");
  AUTOTP_CHECK(is_floating(dtype), "rotary_tables: dtype must be floating, got {}",
               dtype_name(dtype));
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  const int64_t head_dim = 2 * half;
  const size_t n = static_cast<size_t>(seq_len * head_dim);
  std::vector<double> cos_values(n), sin_values(n);
  for (int64_t s = 0; s < seq_len; ++s) {
    for (int64_t j = 0; j < head_dim; ++j) {
      const double angle = static_cast<double>(s) * inv_freq[j % half];  // emb = cat(f, f)
      cos_values[s * head_dim + j] = std::cos(angle);
      sin_values[s * head_dim + j] = std::sin(angle);
    }
  }
  return {Tensor::from_vector(cos_values, {seq_len, head_dim}, dtype, device),
          Tensor::from_vector(sin_values, {seq_len, head_dim}, dtype, device)};
}

std::pair<Tensor, Tensor> rotary_tables(int64_t seq_len, int64_t head_dim, double theta,
                                        DType dtype, Device device) {
  AUTOTP_CHECK(seq_len >= 0, "rotary_tables: seq_len must be >= 0, got {}", seq_len);
  AUTOTP_CHECK(head_dim > 0 && head_dim % 2 == 0,
               "rotary_tables: head_dim must be positive and even, got {}", head_dim);
  AUTOTP_CHECK(theta > 0.0, "rotary_tables: theta must be positive, got {}", theta);
  return rotary_tables_from_inv_freq(seq_len, rope_inv_freq(head_dim, theta), dtype, device);
}

}  // namespace autotp::ops
