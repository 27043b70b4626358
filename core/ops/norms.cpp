// rms_norm and layer_norm over the last dim: fused CPU or CUDA kernels for forward and
// backward, per-row statistics (rstd, mean) saved between them.
#include <vector>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/nn.h"
#include "core/ops/nn_common.h"
#include "kernels/cpu/norm.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/norm.h"
#endif

namespace autotp::ops {

using detail::check_same_device;
using detail::fail_without_cuda;
using detail::stats_dtype;

namespace {

// Validates x [..., D] and an optional per-feature parameter [D]; returns D.
int64_t check_norm_inputs(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                          double eps) {
  AUTOTP_CHECK(x.defined(), "{}: undefined input", op);
  AUTOTP_CHECK(x.dim() >= 1, "{}: input must have at least one dim, got shape {}", op,
               shape_str(x.shape()));
  const int64_t dim = x.shape().back();
  AUTOTP_CHECK(dim > 0, "{}: the normalized (last) dim of shape {} is empty", op,
               shape_str(x.shape()));
  AUTOTP_CHECK(eps >= 0.0, "{}: eps must be >= 0, got {}", op, eps);
  for (const auto& [param, what] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (!param->defined()) continue;
    AUTOTP_CHECK(param->shape() == Shape{dim},
                 "{}: {} of shape {} does not match the last dim of input {} (expected [{}])", op,
                 what, shape_str(param->shape()), shape_str(x.shape()), dim);
    AUTOTP_CHECK(param->dtype() == x.dtype(), "{}: {} dtype {} differs from input dtype {}", op,
                 what, dtype_name(param->dtype()), dtype_name(x.dtype()));
    AUTOTP_CHECK(param->device() == x.device(), "{}: {} is on {} but the input is on {}", op, what,
                 param->device().str(), x.device().str());
  }
  return dim;
}

// Typed pointer to a contiguous tensor's data, or null for an undefined one.
template <typename T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

Tensor contiguous_or_undefined(const Tensor& t) {
  return t.defined() ? t.detach().contiguous() : Tensor();
}

// The dtype of the saved row statistics: x's on the CPU, f32 for 16-bit x on CUDA.
DType norm_stats_dtype(const Tensor& x) {
  return x.device().is_cpu() ? x.dtype() : stats_dtype(x.dtype());
}

#ifdef AUTOTP_WITH_CUDA
// Untyped data pointer (for the CUDA kernels), or null for an undefined tensor.
void* raw_or_null(const Tensor& t) {
  return t.defined() ? t.raw_data() : nullptr;
}

// Scratch for the CUDA dweight/dbias partial sums (undefined when neither is wanted).
Tensor norm_workspace(bool wanted, int64_t rows, int64_t dim, DType stats, Device device) {
  if (!wanted) return Tensor();
  return Tensor::empty({kernels::cuda::norm_backward_workspace_elems(rows, dim)}, stats, device);
}
#endif

}  // namespace

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  const int64_t dim = check_norm_inputs("rms_norm", x, weight, Tensor(), eps);
  const int64_t rows = x.numel() / dim;
  const Tensor xc = x.detach().contiguous();                             // [rows, D]
  const Tensor wc = contiguous_or_undefined(weight);                     // [D] or undefined
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());            // [..., D]
  Tensor rstd = Tensor::empty({rows}, norm_stats_dtype(x), x.device());  // [rows]
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "rms_norm", [&]<typename T>(TypeTag<T>) {
      kernels::cpu::rms_norm_forward<T>(y.data<T>(), rstd.data<T>(), xc.data<T>(),
                                        data_or_null<T>(wc), rows, dim, eps);
    });
  } else {
#ifdef AUTOTP_WITH_CUDA
    kernels::cuda::rms_norm_forward(static_cast<int>(x.dtype()), y.raw_data(), rstd.raw_data(),
                                    xc.raw_data(), raw_or_null(wc), rows, dim, eps, nullptr);
#else
    fail_without_cuda("rms_norm");
#endif
  }
  const bool want_dw = weight.defined() && weight.requires_grad();
  // A gradient already pending for x (the skip path of a residual connection) is added inside
  // the dx pass, in place when the engine's buffer may be overwritten.
  return record_folding_op(
      y, "RmsNormBackward", {&x, &weight},
      [xc, wc, rstd, rows, dim, want_dw](const Tensor& g, PendingGradients& pending) {
        check_same_device(xc, g, "rms_norm backward", "input", "gradient");
        const Tensor gc = g.contiguous();  // [..., D]
        Tensor addend;                     // [..., D] or undefined
        if (pending[0].defined() && pending[0].shape() == xc.shape() &&
            pending[0].dtype() == xc.dtype() && pending[0].device() == xc.device() &&
            pending[0].is_contiguous()) {
          addend = std::move(pending[0]);
        }
        Tensor dx = addend.defined() && owns_its_storage(addend)
                        ? addend
                        : Tensor::empty(xc.shape(), xc.dtype(), xc.device());            // [..., D]
        Tensor dw = want_dw ? Tensor::empty({dim}, xc.dtype(), xc.device()) : Tensor();  // [D]
        if (g.device().is_cpu()) {
          dispatch_float(xc.dtype(), "rms_norm", [&]<typename T>(TypeTag<T>) {
            kernels::cpu::rms_norm_backward<T>(dx.data<T>(), want_dw ? dw.data<T>() : nullptr,
                                               xc.data<T>(), data_or_null<T>(wc), rstd.data<T>(),
                                               gc.data<T>(), data_or_null<T>(addend), rows, dim);
          });
        } else {
#ifdef AUTOTP_WITH_CUDA
          const Tensor workspace = norm_workspace(want_dw, rows, dim, rstd.dtype(), xc.device());
          kernels::cuda::rms_norm_backward(static_cast<int>(xc.dtype()), dx.raw_data(),
                                           raw_or_null(dw), xc.raw_data(), raw_or_null(wc),
                                           rstd.raw_data(), gc.raw_data(), raw_or_null(addend),
                                           rows, dim, raw_or_null(workspace), nullptr);
#else
          fail_without_cuda("rms_norm backward");
#endif
        }
        return std::vector<Tensor>{dx, dw};
      });
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  const int64_t dim = check_norm_inputs("layer_norm", x, weight, bias, eps);
  const int64_t rows = x.numel() / dim;
  const Tensor xc = x.detach().contiguous();                             // [rows, D]
  const Tensor wc = contiguous_or_undefined(weight);                     // [D] or undefined
  const Tensor bc = contiguous_or_undefined(bias);                       // [D] or undefined
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());            // [..., D]
  Tensor mean = Tensor::empty({rows}, norm_stats_dtype(x), x.device());  // [rows]
  Tensor rstd = Tensor::empty({rows}, norm_stats_dtype(x), x.device());  // [rows]
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "layer_norm", [&]<typename T>(TypeTag<T>) {
      kernels::cpu::layer_norm_forward<T>(y.data<T>(), mean.data<T>(), rstd.data<T>(), xc.data<T>(),
                                          data_or_null<T>(wc), data_or_null<T>(bc), rows, dim, eps);
    });
  } else {
#ifdef AUTOTP_WITH_CUDA
    kernels::cuda::layer_norm_forward(static_cast<int>(x.dtype()), y.raw_data(), mean.raw_data(),
                                      rstd.raw_data(), xc.raw_data(), raw_or_null(wc),
                                      raw_or_null(bc), rows, dim, eps, nullptr);
#else
    fail_without_cuda("layer_norm");
#endif
  }
  const bool want_dw = weight.defined() && weight.requires_grad();
  const bool want_db = bias.defined() && bias.requires_grad();
  return record_op(
      y, "LayerNormBackward", {&x, &weight, &bias},
      [xc, wc, mean, rstd, rows, dim, want_dw, want_db](const Tensor& g) {
        check_same_device(xc, g, "layer_norm backward", "input", "gradient");
        const Tensor gc = g.contiguous();                                                // [..., D]
        Tensor dx = Tensor::empty(xc.shape(), xc.dtype(), xc.device());                  // [..., D]
        Tensor dw = want_dw ? Tensor::empty({dim}, xc.dtype(), xc.device()) : Tensor();  // [D]
        Tensor db = want_db ? Tensor::empty({dim}, xc.dtype(), xc.device()) : Tensor();  // [D]
        if (g.device().is_cpu()) {
          dispatch_float(xc.dtype(), "layer_norm", [&]<typename T>(TypeTag<T>) {
            kernels::cpu::layer_norm_backward<T>(dx.data<T>(), want_dw ? dw.data<T>() : nullptr,
                                                 want_db ? db.data<T>() : nullptr, xc.data<T>(),
                                                 data_or_null<T>(wc), mean.data<T>(),
                                                 rstd.data<T>(), gc.data<T>(), rows, dim);
          });
        } else {
#ifdef AUTOTP_WITH_CUDA
          const Tensor workspace =
              norm_workspace(want_dw || want_db, rows, dim, rstd.dtype(), xc.device());
          kernels::cuda::layer_norm_backward(
              static_cast<int>(xc.dtype()), dx.raw_data(), raw_or_null(dw), raw_or_null(db),
              xc.raw_data(), raw_or_null(wc), mean.raw_data(), rstd.raw_data(), gc.raw_data(), rows,
              dim, raw_or_null(workspace), nullptr);
#else
          fail_without_cuda("layer_norm backward");
#endif
        }
        return std::vector<Tensor>{dx, dw, db};
      });
}

}  // namespace autotp::ops
