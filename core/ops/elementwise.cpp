// Elementwise ops: forward through the CPU/CUDA kernels, backward expressed in other ops
// (so every backward runs on whatever device the forward did).
#include "core/ops/elementwise.h"

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/copy_ops.h"
#include "kernels/cpu/elementwise.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/elementwise.h"
#endif

namespace autotp::ops {

using kernels::BinaryOp;
using kernels::UnaryOp;

namespace {

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add:
      return "add";
    case BinaryOp::Sub:
      return "sub";
    case BinaryOp::Mul:
      return "mul";
    case BinaryOp::Div:
      return "div";
  }
  return "binary";
}

Tensor binary_forward(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  AUTOTP_CHECK(a.defined() && b.defined(), "{}: undefined operand", name);
  AUTOTP_CHECK(a.dtype() == b.dtype(), "{}: dtype mismatch ({} vs {})", name, dtype_name(a.dtype()),
               dtype_name(b.dtype()));
  AUTOTP_CHECK(a.device() == b.device(), "{}: device mismatch ({} vs {})", name, a.device().str(),
               b.device().str());
  const Shape shape = broadcast_shapes(a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  const Strides as = broadcast_strides(a, shape), bs = broadcast_strides(b, shape);
  const int ndim = static_cast<int>(shape.size());
  if (a.device().is_cpu()) {
    dispatch_float(a.dtype(), name, [&]<typename T>(TypeTag<T>) {
      kernels::cpu::binary<T>(op, out.data<T>(), static_cast<const T*>(a.raw_data()), as.data(),
                              static_cast<const T*>(b.raw_data()), bs.data(), shape.data(), ndim);
    });
  } else {
#ifdef AUTOTP_WITH_CUDA
    kernels::cuda::binary(op, static_cast<int>(a.dtype()), out.raw_data(), a.raw_data(), as.data(),
                          b.raw_data(), bs.data(), shape.data(), ndim, nullptr);
#else
    AUTOTP_FAIL("{}: CUDA tensors need a build with the CUDA backend", name);
#endif
  }
  return out;
}

Tensor unary_forward(UnaryOp op, const Tensor& x, double scalar, const char* name) {
  AUTOTP_CHECK(x.defined(), "{}: undefined operand", name);
  const Tensor in = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), name, [&]<typename T>(TypeTag<T>) {
      kernels::cpu::unary<T>(op, out.data<T>(), static_cast<const T*>(in.raw_data()),
                             static_cast<T>(scalar), x.numel());
    });
  } else {
#ifdef AUTOTP_WITH_CUDA
    kernels::cuda::unary(op, static_cast<int>(x.dtype()), out.raw_data(), in.raw_data(), scalar,
                         x.numel(), nullptr);
#else
    AUTOTP_FAIL("{}: CUDA tensors need a build with the CUDA backend", name);
#endif
  }
  return out;
}

// dx = dy * op'(x) for activations whose derivative needs x.
Tensor activation_backward(UnaryOp op, const Tensor& x, const Tensor& dy) {
  const Tensor xc = x.contiguous(), dyc = dy.contiguous();
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "activation_backward", [&]<typename T>(TypeTag<T>) {
      kernels::cpu::activation_backward<T>(op, dx.data<T>(), static_cast<const T*>(xc.raw_data()),
                                           static_cast<const T*>(dyc.raw_data()), x.numel());
    });
  } else {
#ifdef AUTOTP_WITH_CUDA
    kernels::cuda::activation_backward(op, static_cast<int>(x.dtype()), dx.raw_data(),
                                       xc.raw_data(), dyc.raw_data(), x.numel(), nullptr);
#else
    AUTOTP_FAIL("activation_backward: CUDA tensors need a build with the CUDA backend");
#endif
  }
  return dx;
}

}  // namespace

// ---- binary ------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Add, a, b);
  const Shape sa = a.shape(), sb = b.shape();
  return record_op(out, "AddBackward", {&a, &b}, [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, sa), sum_to_shape(g, sb)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Sub, a, b);
  const Shape sa = a.shape(), sb = b.shape();
  return record_op(out, "SubBackward", {&a, &b}, [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, sa), neg(sum_to_shape(g, sb))};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Mul, a, b);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  const Tensor sa = a.detach(), sb = b.detach();
  return record_op(out, "MulBackward", {&a, &b}, [sa, sb, ga, gb](const Tensor& g) {
    return std::vector<Tensor>{ga ? sum_to_shape(mul(g, sb), sa.shape()) : Tensor(),
                               gb ? sum_to_shape(mul(g, sa), sb.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Div, a, b);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  const Tensor sb = b.detach(), so = out.detach();
  const Shape sa_shape = a.shape();
  return record_op(out, "DivBackward", {&a, &b}, [sb, so, sa_shape, ga, gb](const Tensor& g) {
    // d(a/b)/da = 1/b; d(a/b)/db = -(a/b)/b
    Tensor g_over_b = div(g, sb);
    return std::vector<Tensor>{ga ? sum_to_shape(g_over_b, sa_shape) : Tensor(),
                               gb ? sum_to_shape(neg(mul(g_over_b, so)), sb.shape()) : Tensor()};
  });
}

// ---- scalar variants -----------------------------------------------------------

Tensor add(const Tensor& a, double s) {
  Tensor out = unary_forward(UnaryOp::AddScalar, a, s, "add");
  return record_op(out, "AddScalarBackward", {&a},
                   [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor sub(const Tensor& a, double s) {
  return add(a, -s);
}

Tensor mul(const Tensor& a, double s) {
  Tensor out = unary_forward(UnaryOp::MulScalar, a, s, "mul");
  return record_op(out, "MulScalarBackward", {&a},
                   [s](const Tensor& g) { return std::vector<Tensor>{mul(g, s)}; });
}

Tensor div(const Tensor& a, double s) {
  Tensor out = unary_forward(UnaryOp::DivScalar, a, s, "div");
  return record_op(out, "DivScalarBackward", {&a},
                   [s](const Tensor& g) { return std::vector<Tensor>{div(g, s)}; });
}

Tensor rsub(double s, const Tensor& a) {
  Tensor out = unary_forward(UnaryOp::ScalarSub, a, s, "rsub");
  return record_op(out, "RsubBackward", {&a},
                   [](const Tensor& g) { return std::vector<Tensor>{neg(g)}; });
}

Tensor rdiv(double s, const Tensor& a) {
  Tensor out = unary_forward(UnaryOp::ScalarDiv, a, s, "rdiv");
  const Tensor sa = a.detach(), so = out.detach();
  return record_op(out, "RdivBackward", {&a}, [sa, so](const Tensor& g) {
    // d(s/a)/da = -(s/a)/a
    return std::vector<Tensor>{neg(div(mul(g, so), sa))};
  });
}

// ---- unary math ----------------------------------------------------------------

Tensor neg(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Neg, x, 0.0, "neg");
  return record_op(out, "NegBackward", {&x},
                   [](const Tensor& g) { return std::vector<Tensor>{neg(g)}; });
}

Tensor exp(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Exp, x, 0.0, "exp");
  const Tensor so = out.detach();
  return record_op(out, "ExpBackward", {&x},
                   [so](const Tensor& g) { return std::vector<Tensor>{mul(g, so)}; });
}

Tensor log(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Log, x, 0.0, "log");
  const Tensor sx = x.detach();
  return record_op(out, "LogBackward", {&x},
                   [sx](const Tensor& g) { return std::vector<Tensor>{div(g, sx)}; });
}

Tensor sqrt(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Sqrt, x, 0.0, "sqrt");
  const Tensor so = out.detach();
  return record_op(out, "SqrtBackward", {&x}, [so](const Tensor& g) {
    return std::vector<Tensor>{div(mul(g, 0.5), so)};  // 1 / (2 sqrt(x))
  });
}

Tensor rsqrt(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Rsqrt, x, 0.0, "rsqrt");
  const Tensor so = out.detach();
  return record_op(out, "RsqrtBackward", {&x}, [so](const Tensor& g) {
    return std::vector<Tensor>{mul(g, mul(pow(so, 3.0), -0.5))};  // -x^{-3/2} / 2
  });
}

Tensor pow(const Tensor& x, double exponent) {
  Tensor out = unary_forward(UnaryOp::Pow, x, exponent, "pow");
  const Tensor sx = x.detach();
  return record_op(out, "PowBackward", {&x}, [sx, exponent](const Tensor& g) {
    if (exponent == 0.0) return std::vector<Tensor>{mul(g, 0.0)};
    return std::vector<Tensor>{mul(g, mul(pow(sx, exponent - 1.0), exponent))};
  });
}

Tensor tanh(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Tanh, x, 0.0, "tanh");
  const Tensor so = out.detach();
  return record_op(out, "TanhBackward", {&x}, [so](const Tensor& g) {
    return std::vector<Tensor>{mul(g, rsub(1.0, mul(so, so)))};
  });
}

Tensor sigmoid(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Sigmoid, x, 0.0, "sigmoid");
  const Tensor so = out.detach();
  return record_op(out, "SigmoidBackward", {&x}, [so](const Tensor& g) {
    return std::vector<Tensor>{mul(g, mul(so, rsub(1.0, so)))};
  });
}

namespace {
Tensor activation(UnaryOp op, const Tensor& x, const char* name, const char* backward_name) {
  Tensor out = unary_forward(op, x, 0.0, name);
  const Tensor sx = x.detach();
  return record_op(out, backward_name, {&x}, [op, sx](const Tensor& g) {
    return std::vector<Tensor>{activation_backward(op, sx, g)};
  });
}
}  // namespace

Tensor relu(const Tensor& x) {
  return activation(UnaryOp::Relu, x, "relu", "ReluBackward");
}
Tensor silu(const Tensor& x) {
  return activation(UnaryOp::Silu, x, "silu", "SiluBackward");
}

Tensor gelu(const Tensor& x, GeluApproximation approximation) {
  return approximation == GeluApproximation::Tanh
             ? activation(UnaryOp::GeluTanh, x, "gelu", "GeluTanhBackward")
             : activation(UnaryOp::GeluErf, x, "gelu", "GeluErfBackward");
}

}  // namespace autotp::ops
