// softmax / log_softmax over any dim (moved to the last axis for the kernels) and
// cross_entropy, each with its backward kernel, on the CPU or CUDA kernels.
#include <vector>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/nn.h"
#include "core/ops/nn_common.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/softmax.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/softmax.h"
#endif

namespace autotp::ops {

using detail::check_host_or_same_device;
using detail::check_same_device;
using detail::dispatch_index;
using detail::fail_without_cuda;
using detail::stats_dtype;

namespace {

// `t` with `dim` swapped to the last axis, contiguous: a [rows, n] row-major block.
Tensor to_last_axis(const Tensor& t, int64_t dim) {
  return (dim == t.dim() - 1 ? t : t.transpose(dim, -1)).contiguous();
}

// Inverse of to_last_axis for a tensor laid out with `dim` last.
Tensor from_last_axis(const Tensor& t, int64_t dim) {
  return dim == t.dim() - 1 ? t : t.transpose(dim, -1).contiguous();
}

// Where the cross entropy's logits gradient goes: into the saved logits' own memory when the
// graph frees them after this backward and no other handle can read them (the kernels read
// each element before writing it, in the same thread), else a new buffer. At a 128k
// vocabulary the logits are a step's largest tensor and training reaches its peak memory in
// this backward, so reusing them lowers the peak by their size.
Tensor logits_gradient_buffer(const Tensor& saved_logits, bool last_use) {
  if (last_use && owns_its_storage(saved_logits)) return saved_logits;
  return Tensor::empty(saved_logits.shape(), saved_logits.dtype(), saved_logits.device());
}

// y [rows, n] = (log_)softmax of x [rows, n] over the last axis (both contiguous).
void softmax_rows(const Tensor& y, const Tensor& x, int64_t rows, int64_t n, bool log,
                  const char* name) {
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), name, [&]<typename T>(TypeTag<T>) {
      const T* in = static_cast<const T*>(x.raw_data());
      if (log) {
        kernels::cpu::log_softmax_forward<T>(y.data<T>(), in, rows, n);
      } else {
        kernels::cpu::softmax_forward<T>(y.data<T>(), in, rows, n);
      }
    });
    return;
  }
#ifdef AUTOTP_WITH_CUDA
  const int dtype = static_cast<int>(x.dtype());
  if (log) {
    kernels::cuda::log_softmax_forward(dtype, y.raw_data(), x.raw_data(), rows, n, nullptr);
  } else {
    kernels::cuda::softmax_forward(dtype, y.raw_data(), x.raw_data(), rows, n, nullptr);
  }
#else
  fail_without_cuda(name);
#endif
}

// dx [rows, n] from the forward output y and dy (all contiguous, on one device).
void softmax_rows_backward(const Tensor& dx, const Tensor& y, const Tensor& dy, int64_t rows,
                           int64_t n, bool log, const char* name) {
  if (dy.device().is_cpu()) {
    dispatch_float(dy.dtype(), name, [&]<typename T>(TypeTag<T>) {
      const T* y_p = static_cast<const T*>(y.raw_data());
      const T* g_p = static_cast<const T*>(dy.raw_data());
      if (log) {
        kernels::cpu::log_softmax_backward<T>(dx.data<T>(), y_p, g_p, rows, n);
      } else {
        kernels::cpu::softmax_backward<T>(dx.data<T>(), y_p, g_p, rows, n);
      }
    });
    return;
  }
#ifdef AUTOTP_WITH_CUDA
  const int dtype = static_cast<int>(dy.dtype());
  if (log) {
    kernels::cuda::log_softmax_backward(dtype, dx.raw_data(), y.raw_data(), dy.raw_data(), rows, n,
                                        nullptr);
  } else {
    kernels::cuda::softmax_backward(dtype, dx.raw_data(), y.raw_data(), dy.raw_data(), rows, n,
                                    nullptr);
  }
#else
  fail_without_cuda(name);
#endif
}

Tensor softmax_family(const Tensor& x, int64_t dim_in, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  AUTOTP_CHECK(x.defined(), "{}: undefined tensor", name);
  const int64_t dim = wrap_dim(dim_in, x.dim(), name);
  const Tensor xt = to_last_axis(x.detach(), dim);  // [rows, n]
  const int64_t n = x.shape()[dim];
  const int64_t rows = n == 0 ? 0 : x.numel() / n;
  Tensor yt = Tensor::empty(xt.shape(), x.dtype(), x.device());  // [rows, n]
  softmax_rows(yt, xt, rows, n, log, name);
  Tensor y = from_last_axis(yt, dim);
  const Tensor saved_y = yt.detach();  // [rows, n]
  return record_op(y, log ? "LogSoftmaxBackward" : "SoftmaxBackward", {&x},
                   [saved_y, dim, rows, n, log, name](const Tensor& g) {
                     check_same_device(saved_y, g, name, "output", "gradient");
                     const Tensor gt = to_last_axis(g, dim);  // [rows, n]
                     Tensor dxt = Tensor::empty(gt.shape(), g.dtype(), g.device());
                     softmax_rows_backward(dxt, saved_y, gt, rows, n, log, name);
                     return std::vector<Tensor>{from_last_axis(dxt, dim)};
                   });
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_family(x, dim, false);
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_family(x, dim, true);
}

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
  check_host_or_same_device(logits, targets, "cross_entropy", "logits", "targets");
  // Validated (and counted) on the host: host targets are read in place (and uploaded for
  // CUDA logits without a host wait), device targets with one copy from the device.
  const std::vector<int64_t> host_targets = targets.to_vector_i64();
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = host_targets[r];
    AUTOTP_CHECK(t == ignore_index || (t >= 0 && t < classes),
                 "cross_entropy: target {} at row {} is outside [0, {}) and is not the "
                 "ignore_index {}",
                 t, r, classes, ignore_index);
    count += t != ignore_index;
  }
  const Tensor lc = logits.detach().contiguous();                       // [N, C]
  const Tensor tc = targets.detach().to(logits.device()).contiguous();  // [N]
  if (logits.device().is_cpu()) {
    Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());  // []
    dispatch_float(logits.dtype(), "cross_entropy", [&]<typename T>(TypeTag<T>) {
      dispatch_index(targets.dtype(), "cross_entropy", [&]<typename I>(TypeTag<I>) {
        kernels::cpu::cross_entropy_forward<T, I>(loss.data<T>(), lc.data<T>(), tc.data<I>(), rows,
                                                  classes, ignore_index);
      });
    });
    return record_memory_reusing_op(
        loss, "CrossEntropyBackward", {&logits},
        [lc, tc, rows, classes, ignore_index](const Tensor& g, bool last_use) {
          check_same_device(lc, g, "cross_entropy backward", "logits", "gradient");
          const Tensor gc = g.contiguous();                       // []
          Tensor dlogits = logits_gradient_buffer(lc, last_use);  // [N, C]
          dispatch_float(lc.dtype(), "cross_entropy", [&]<typename T>(TypeTag<T>) {
            dispatch_index(tc.dtype(), "cross_entropy", [&]<typename I>(TypeTag<I>) {
              kernels::cpu::cross_entropy_backward<T, I>(dlogits.data<T>(), lc.data<T>(),
                                                         tc.data<I>(), gc.data<T>(), rows, classes,
                                                         ignore_index);
            });
          });
          return std::vector<Tensor>{dlogits};
        });
  }
#ifdef AUTOTP_WITH_CUDA
  // Fused over each vocabulary row; the loss (and the saved per-row logsumexp) are in f32 for
  // bf16/f16 logits, so a bf16 model's loss is computed and returned in f32.
  const DType loss_dtype = stats_dtype(logits.dtype());
  Tensor loss = Tensor::empty({}, loss_dtype, logits.device());          // []
  Tensor lse = Tensor::empty({rows}, loss_dtype, logits.device());       // [N]
  Tensor row_loss = Tensor::empty({rows}, loss_dtype, logits.device());  // [N], scratch
  kernels::cuda::cross_entropy_forward(static_cast<int>(logits.dtype()),
                                       static_cast<int>(tc.dtype()), loss.raw_data(),
                                       lse.raw_data(), row_loss.raw_data(), lc.raw_data(),
                                       tc.raw_data(), rows, classes, ignore_index, count, nullptr);
  return record_memory_reusing_op(
      loss, "CrossEntropyBackward", {&logits},
      [lc, tc, lse, rows, classes, ignore_index, count](const Tensor& g, bool last_use) {
        check_same_device(lc, g, "cross_entropy backward", "logits", "gradient");
        const Tensor gc = g.contiguous().to(lse.dtype());       // []
        Tensor dlogits = logits_gradient_buffer(lc, last_use);  // [N, C]
        kernels::cuda::cross_entropy_backward(
            static_cast<int>(lc.dtype()), static_cast<int>(tc.dtype()), dlogits.raw_data(),
            lc.raw_data(), tc.raw_data(), lse.raw_data(), gc.raw_data(), rows, classes,
            ignore_index, count, nullptr);
        return std::vector<Tensor>{dlogits};
      });
#else
  fail_without_cuda("cross_entropy");
#endif
}

}  // namespace autotp::ops
