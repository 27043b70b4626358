// Elementwise operation codes shared by the CPU and CUDA kernels, and their scalar math.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define AUTOTP_HD __host__ __device__
#else
#define AUTOTP_HD
#endif

namespace autotp::kernels {

#if !defined(__CUDA_ARCH__)
using std::erf;
using std::exp;
using std::log;
using std::pow;
using std::sqrt;
using std::tanh;
#endif

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };

// `scalar` is the op's parameter where it has one (AddScalar, MulScalar, DivScalar, Pow).
enum class UnaryOp : uint8_t {
  Neg,
  Exp,
  Log,
  Sqrt,
  Rsqrt,
  Tanh,
  Sigmoid,
  Silu,
  GeluTanh,
  GeluErf,
  Relu,
  AddScalar,
  MulScalar,
  DivScalar,
  Pow,
  ScalarSub,
  ScalarDiv  // ScalarSub: s - x, ScalarDiv: s / x
};

template <typename T>
AUTOTP_HD inline T apply_binary(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add:
      return a + b;
    case BinaryOp::Sub:
      return a - b;
    case BinaryOp::Mul:
      return a * b;
    case BinaryOp::Div:
      return a / b;
  }
  return T(0);
}

// sqrt(2/pi) and 0.044715 of the tanh GELU approximation (as in HF's "gelu_new").
constexpr double kGeluTanhScale = 0.7978845608028654;
constexpr double kGeluTanhCubic = 0.044715;

template <typename T>
AUTOTP_HD inline T apply_unary(UnaryOp op, T x, T s) {
  switch (op) {
    case UnaryOp::Neg:
      return -x;
    case UnaryOp::Exp:
      return exp(x);
    case UnaryOp::Log:
      return log(x);
    case UnaryOp::Sqrt:
      return sqrt(x);
    case UnaryOp::Rsqrt:
      return T(1) / sqrt(x);
    case UnaryOp::Tanh:
      return tanh(x);
    case UnaryOp::Sigmoid:
      return T(1) / (T(1) + exp(-x));
    case UnaryOp::Silu:
      return x / (T(1) + exp(-x));
    case UnaryOp::GeluTanh: {
      const T inner = T(kGeluTanhScale) * (x + T(kGeluTanhCubic) * x * x * x);
      return T(0.5) * x * (T(1) + tanh(inner));
    }
    case UnaryOp::GeluErf:
      return T(0.5) * x * (T(1) + erf(x * T(0.7071067811865476)));
    case UnaryOp::Relu:
      return x > T(0) ? x : T(0);
    case UnaryOp::AddScalar:
      return x + s;
    case UnaryOp::MulScalar:
      return x * s;
    case UnaryOp::DivScalar:
      return x / s;
    case UnaryOp::Pow:
      return pow(x, s);
    case UnaryOp::ScalarSub:
      return s - x;
    case UnaryOp::ScalarDiv:
      return s / x;
  }
  return T(0);
}

// d(op(x))/dx for the activations whose backward needs x itself (Silu, GeluTanh, GeluErf, Relu).
template <typename T>
AUTOTP_HD inline T activation_derivative(UnaryOp op, T x) {
  switch (op) {
    case UnaryOp::Silu: {
      const T sig = T(1) / (T(1) + exp(-x));
      return sig * (T(1) + x * (T(1) - sig));
    }
    case UnaryOp::GeluTanh: {
      const T x2 = x * x;
      const T inner = T(kGeluTanhScale) * (x + T(kGeluTanhCubic) * x2 * x);
      const T th = tanh(inner);
      const T dinner = T(kGeluTanhScale) * (T(1) + T(3 * kGeluTanhCubic) * x2);
      return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * dinner;
    }
    case UnaryOp::GeluErf: {
      const T cdf = T(0.5) * (T(1) + erf(x * T(0.7071067811865476)));
      const T pdf = exp(T(-0.5) * x * x) * T(0.3989422804014327);
      return cdf + x * pdf;
    }
    case UnaryOp::Relu:
      return x > T(0) ? T(1) : T(0);
    default:
      return T(0);
  }
}

// 1 / (1 + e^-x), the Sigmoid op's formula. Finite for every finite x: far below 0, e^-x
// overflows to inf and the quotient is 0; far above, it underflows and the quotient is 1; NaN
// stays NaN. Branch-free on purpose: the gate values of a warp have mixed signs, so a branch
// per sign (e^x / (1 + e^x) below 0) made every warp evaluate both exponentials and divisions,
// which left the SwiGLU kernels partly compute-bound.
template <typename T>
AUTOTP_HD inline T stable_sigmoid(T x) {
  return T(1) / (T(1) + exp(-x));
}

// SwiGLU: silu(g) * u = g * sigmoid(g) * u, from the gate's sigmoid `sig`.
template <typename T>
AUTOTP_HD inline T swiglu_value_from(T g, T u, T sig) {
  return g * sig * u;
}
template <typename T>
AUTOTP_HD inline T swiglu_value(T g, T u) {
  return swiglu_value_from(g, u, stable_sigmoid(g));
}

// Both gradients of silu(g) * u from the upstream gradient dy and the gate's sigmoid `sig`:
//   d_gate = dy * u * sig(g) * (1 + g * (1 - sig(g))),  d_up = dy * silu(g).
template <typename T>
AUTOTP_HD inline void swiglu_gradients_from(T dy, T g, T u, T sig, T& d_gate, T& d_up) {
  d_gate = dy * u * sig * (T(1) + g * (T(1) - sig));
  d_up = dy * g * sig;
}
template <typename T>
AUTOTP_HD inline void swiglu_gradients(T dy, T g, T u, T& d_gate, T& d_up) {
  swiglu_gradients_from(dy, g, u, stable_sigmoid(g), d_gate, d_up);
}

}  // namespace autotp::kernels
