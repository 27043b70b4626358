// Differentiable elementwise ops: broadcasting binary arithmetic, scalar variants, unary math,
// activations and the fused SwiGLU. Kernels in kernels/{cpu,cuda}/elementwise.h and swiglu.h.
#pragma once

#include "core/tensor.h"

namespace autotp::ops {

// Broadcasting binary ops (NumPy rules); both operands share dtype and device.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);

// Scalar variants.
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor rdiv(double s, const Tensor& a);  // s / a

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor silu(const Tensor& x);
enum class GeluApproximation { Erf, Tanh };
Tensor gelu(const Tensor& x, GeluApproximation approximation = GeluApproximation::Erf);

// Fused SwiGLU: silu(gate) * up in one kernel, both gradients in one backward kernel (saves
// gate and up only). gate and up [...] must have equal shapes (no broadcasting), dtype and
// device; either may be a strided view. The sigmoid is evaluated stably for large |gate|.
// Implemented in swiglu.cpp.
Tensor swiglu(const Tensor& gate, const Tensor& up);

}  // namespace autotp::ops

namespace autotp {
inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return ops::add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return ops::sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return ops::mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return ops::div(a, b);
}
inline Tensor operator+(const Tensor& a, double s) {
  return ops::add(a, s);
}
inline Tensor operator-(const Tensor& a, double s) {
  return ops::sub(a, s);
}
inline Tensor operator*(const Tensor& a, double s) {
  return ops::mul(a, s);
}
inline Tensor operator/(const Tensor& a, double s) {
  return ops::div(a, s);
}
inline Tensor operator+(double s, const Tensor& a) {
  return ops::add(a, s);
}
inline Tensor operator-(double s, const Tensor& a) {
  return ops::rsub(s, a);
}
inline Tensor operator*(double s, const Tensor& a) {
  return ops::mul(a, s);
}
inline Tensor operator/(double s, const Tensor& a) {
  return ops::rdiv(s, a);
}
inline Tensor operator-(const Tensor& a) {
  return ops::neg(a);
}
}  // namespace autotp
