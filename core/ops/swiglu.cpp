// ops::swiglu: silu(gate) * up forward and its backward, each one CPU/CUDA kernel over strided
// operands (kernels/cpu/swiglu.h, kernels/cuda/swiglu.h).
#include "kernels/cpu/swiglu.h"
#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/copy_ops.h"
#include "core/ops/elementwise.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/swiglu.h"
#endif

namespace autotp::ops {

namespace {

// Both gradients from the upstream gradient dy and the saved inputs, all of one shape:
// returns {d_gate, d_up}, contiguous.
std::vector<Tensor> swiglu_backward(const Tensor& dy, const Tensor& gate, const Tensor& up) {
  AUTOTP_ASSERT(
      dy.shape() == gate.shape() && dy.dtype() == gate.dtype() && dy.device() == gate.device(),
      "swiglu backward: upstream gradient {} {} does not match gate {} {}", shape_str(dy.shape()),
      dtype_name(dy.dtype()), shape_str(gate.shape()), dtype_name(gate.dtype()));
  const Shape& shape = gate.shape();
  Tensor d_gate = Tensor::empty(shape, gate.dtype(), gate.device());  // [...]
  Tensor d_up = Tensor::empty(shape, gate.dtype(), gate.device());    // [...]
  const Strides ds = broadcast_strides(dy, shape), gs = broadcast_strides(gate, shape),
                us = broadcast_strides(up, shape);
  const int ndim = static_cast<int>(shape.size());
  if (gate.device().is_cpu()) {
    dispatch_float(gate.dtype(), "swiglu backward", [&]<typename T>(TypeTag<T>) {
      kernels::cpu::swiglu_backward<T>(
          d_gate.data<T>(), d_up.data<T>(), static_cast<const T*>(dy.raw_data()), ds.data(),
          static_cast<const T*>(gate.raw_data()), gs.data(), static_cast<const T*>(up.raw_data()),
          us.data(), shape.data(), ndim);
    });
  } else {
#ifdef AUTOTP_WITH_CUDA
    kernels::cuda::swiglu_backward(static_cast<int>(gate.dtype()), d_gate.raw_data(),
                                   d_up.raw_data(), dy.raw_data(), ds.data(), gate.raw_data(),
                                   gs.data(), up.raw_data(), us.data(), shape.data(), ndim,
                                   nullptr);
#else
    AUTOTP_FAIL("swiglu backward: CUDA tensors need a build with the CUDA backend");
#endif
  }
  return {d_gate, d_up};
}

}  // namespace

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  AUTOTP_CHECK(gate.defined() && up.defined(), "swiglu: undefined operand");
  AUTOTP_CHECK(gate.shape() == up.shape(),
               "swiglu: gate {} and up {} must have the same shape (swiglu does not broadcast)",
               shape_str(gate.shape()), shape_str(up.shape()));
  AUTOTP_CHECK(gate.dtype() == up.dtype(), "swiglu: dtype mismatch (gate {} vs up {})",
               dtype_name(gate.dtype()), dtype_name(up.dtype()));
  AUTOTP_CHECK(gate.device() == up.device(), "swiglu: device mismatch (gate {} vs up {})",
               gate.device().str(), up.device().str());
  const Shape& shape = gate.shape();
  Tensor out = Tensor::empty(shape, gate.dtype(), gate.device());  // [...]
  const Strides gs = broadcast_strides(gate, shape), us = broadcast_strides(up, shape);
  const int ndim = static_cast<int>(shape.size());
  if (gate.device().is_cpu()) {
    dispatch_float(gate.dtype(), "swiglu", [&]<typename T>(TypeTag<T>) {
      kernels::cpu::swiglu<T>(out.data<T>(), static_cast<const T*>(gate.raw_data()), gs.data(),
                              static_cast<const T*>(up.raw_data()), us.data(), shape.data(), ndim);
    });
  } else {
#ifdef AUTOTP_WITH_CUDA
    kernels::cuda::swiglu(static_cast<int>(gate.dtype()), out.raw_data(), gate.raw_data(),
                          gs.data(), up.raw_data(), us.data(), shape.data(), ndim, nullptr);
#else
    AUTOTP_FAIL("swiglu: CUDA tensors need a build with the CUDA backend");
#endif
  }
  const bool gg = gate.requires_grad(), gu = up.requires_grad();
  const Tensor sg = gate.detach(), su = up.detach();  // [...] each; no silu(gate) is kept
  return record_op(out, "SwigluBackward", {&gate, &up}, [sg, su, gg, gu](const Tensor& g) {
    std::vector<Tensor> grads = swiglu_backward(g, sg, su);  // {d_gate, d_up} [...]
    if (!gg) grads[0] = Tensor();
    if (!gu) grads[1] = Tensor();
    return grads;
  });
}

}  // namespace autotp::ops
