// softmax / log_softmax over any dim (moved to the last axis for the kernels) and
// cross_entropy, each with its backward kernel.
#include <vector>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/nn.h"
#include "core/ops/nn_common.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/softmax.h"

namespace autotp::ops {

using detail::check_cpu;
using detail::dispatch_index;

namespace {

// `t` with `dim` swapped to the last axis, contiguous: a [rows, n] row-major block.
Tensor to_last_axis(const Tensor& t, int64_t dim) {
  return (dim == t.dim() - 1 ? t : t.transpose(dim, -1)).contiguous();
}

// Inverse of to_last_axis for a tensor laid out with `dim` last.
Tensor from_last_axis(const Tensor& t, int64_t dim) {
  return dim == t.dim() - 1 ? t : t.transpose(dim, -1).contiguous();
}

Tensor softmax_family(const Tensor& x, int64_t dim_in, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  AUTOTP_CHECK(x.defined(), "{}: undefined tensor", name);
  const int64_t dim = wrap_dim(dim_in, x.dim(), name);
  check_cpu(x, name);
  const Tensor xt = to_last_axis(x.detach(), dim);  // [rows, n]
  const int64_t n = x.shape()[dim];
  const int64_t rows = n == 0 ? 0 : x.numel() / n;
  Tensor yt = Tensor::empty(xt.shape(), x.dtype(), x.device());  // [rows, n]
  dispatch_float(x.dtype(), name, [&]<typename T>(TypeTag<T>) {
    const T* in = static_cast<const T*>(xt.raw_data());
    if (log) {
      kernels::cpu::log_softmax_forward<T>(yt.data<T>(), in, rows, n);
    } else {
      kernels::cpu::softmax_forward<T>(yt.data<T>(), in, rows, n);
    }
  });
  Tensor y = from_last_axis(yt, dim);
  const Tensor saved_y = yt.detach();  // [rows, n]
  return record_op(y, log ? "LogSoftmaxBackward" : "SoftmaxBackward", {&x},
                   [saved_y, dim, rows, n, log, name](const Tensor& g) {
                     check_cpu(g, name);
                     const Tensor gt = to_last_axis(g, dim);  // [rows, n]
                     Tensor dxt = Tensor::empty(gt.shape(), g.dtype(), g.device());
                     dispatch_float(g.dtype(), name, [&]<typename T>(TypeTag<T>) {
                       const T* y_p = static_cast<const T*>(saved_y.raw_data());
                       const T* g_p = static_cast<const T*>(gt.raw_data());
                       if (log) {
                         kernels::cpu::log_softmax_backward<T>(dxt.data<T>(), y_p, g_p, rows, n);
                       } else {
                         kernels::cpu::softmax_backward<T>(dxt.data<T>(), y_p, g_p, rows, n);
                       }
                     });
                     return std::vector<Tensor>{from_last_axis(dxt, dim)};
                   });
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_family(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_family(x, dim, true); }

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  AUTOTP_CHECK(logits.defined() && targets.defined(), "cross_entropy: undefined logits or targets");
  AUTOTP_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, C], got shape {}",
               shape_str(logits.shape()));
  const int64_t rows = logits.shape()[0], classes = logits.shape()[1];
  AUTOTP_CHECK(targets.dtype() == DType::I64 || targets.dtype() == DType::I32,
               "cross_entropy: targets must be i64 or i32, got {}", dtype_name(targets.dtype()));
  AUTOTP_CHECK(targets.dim() == 1 && targets.shape()[0] == rows,
               "cross_entropy: targets of shape {} do not match logits of shape {} (expected "
               "[{}])",
               shape_str(targets.shape()), shape_str(logits.shape()), rows);
  check_cpu(logits, "cross_entropy");
  check_cpu(targets, "cross_entropy");
  const std::vector<int64_t> host_targets = targets.to_vector_i64();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = host_targets[r];
    AUTOTP_CHECK(t == ignore_index || (t >= 0 && t < classes),
                 "cross_entropy: target {} at row {} is outside [0, {}) and is not the "
                 "ignore_index {}",
                 t, r, classes, ignore_index);
  }
  const Tensor lc = logits.detach().contiguous();  // [N, C]
  const Tensor tc = targets.contiguous();          // [N]
  Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());  // []
  dispatch_float(logits.dtype(), "cross_entropy", [&]<typename T>(TypeTag<T>) {
    dispatch_index(targets.dtype(), "cross_entropy", [&]<typename I>(TypeTag<I>) {
      kernels::cpu::cross_entropy_forward<T, I>(loss.data<T>(), lc.data<T>(), tc.data<I>(), rows,
                                                classes, ignore_index);
    });
  });
  return record_op(loss, "CrossEntropyBackward", {&logits},
                   [lc, tc, rows, classes, ignore_index](const Tensor& g) {
                     check_cpu(g, "cross_entropy backward");
                     const Tensor gc = g.contiguous();                          // []
                     Tensor dlogits = Tensor::empty(lc.shape(), lc.dtype(), lc.device());  // [N, C]
                     dispatch_float(lc.dtype(), "cross_entropy", [&]<typename T>(TypeTag<T>) {
                       dispatch_index(tc.dtype(), "cross_entropy", [&]<typename I>(TypeTag<I>) {
                         kernels::cpu::cross_entropy_backward<T, I>(
                             dlogits.data<T>(), lc.data<T>(), tc.data<I>(), gc.data<T>(), rows,
                             classes, ignore_index);
                       });
                     });
                     return std::vector<Tensor>{dlogits};
                   });
}

}  // namespace autotp::ops
