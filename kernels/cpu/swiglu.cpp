// CPU reference SwiGLU kernels: a row-major walk over strided operands writing contiguous
// outputs, with the scalar math shared with CUDA.
#include "kernels/cpu/swiglu.h"

#include <array>

#include "kernels/cpu/strided_walk.h"
#include "kernels/elementwise_ops.h"

namespace autotp::kernels::cpu {

template <typename T>
void swiglu(T* out, const T* gate, const int64_t* gate_strides, const T* up,
            const int64_t* up_strides, const int64_t* shape, int ndim) {
  for_each_strided<2>(shape, ndim, {gate_strides, up_strides},
                      [&](int64_t i, const std::array<int64_t, 2>& at) {
                        out[i] = swiglu_value(gate[at[0]], up[at[1]]);
                      });
}

template <typename T>
void swiglu_backward(T* d_gate, T* d_up, const T* grad_out, const int64_t* grad_out_strides,
                     const T* gate, const int64_t* gate_strides, const T* up,
                     const int64_t* up_strides, const int64_t* shape, int ndim) {
  for_each_strided<3>(shape, ndim, {grad_out_strides, gate_strides, up_strides},
                      [&](int64_t i, const std::array<int64_t, 3>& at) {
                        swiglu_gradients(grad_out[at[0]], gate[at[1]], up[at[2]], d_gate[i],
                                         d_up[i]);
                      });
}

#define AUTOTP_INSTANTIATE(T)                                                                     \
  template void swiglu<T>(T*, const T*, const int64_t*, const T*, const int64_t*, const int64_t*, \
                          int);                                                                   \
  template void swiglu_backward<T>(T*, T*, const T*, const int64_t*, const T*, const int64_t*,    \
                                   const T*, const int64_t*, const int64_t*, int);
AUTOTP_INSTANTIATE(float)
AUTOTP_INSTANTIATE(double)
#undef AUTOTP_INSTANTIATE

}  // namespace autotp::kernels::cpu
