// CPU reference SwiGLU kernels: a row-major walk over strided operands writing contiguous
// outputs, with the scalar math shared with CUDA.
#include "kernels/cpu/swiglu.h"

#include <array>
#include <vector>

#include "kernels/elementwise_ops.h"

namespace autotp::kernels::cpu {

namespace {

// Calls fn(i, offsets) for every row-major index i of `shape`, where offsets[k] is the element
// offset of index i in operand k (strides[k]). The innermost dim runs as a plain loop.
template <size_t N, typename Fn>
void for_each_strided(const int64_t* shape, int ndim, const std::array<const int64_t*, N>& strides,
                      Fn&& fn) {
  int64_t total = 1;
  for (int d = 0; d < ndim; ++d)
    total *= shape[d];
  if (total == 0) return;
  std::array<int64_t, N> offsets{};
  if (ndim == 0) {
    fn(int64_t{0}, offsets);
    return;
  }
  std::vector<int64_t> index(ndim, 0);
  const int last = ndim - 1;
  const int64_t inner = shape[last];
  for (int64_t done = 0; done < total; done += inner) {
    std::array<int64_t, N> at = offsets;
    for (int64_t i = 0; i < inner; ++i) {
      fn(done + i, at);
      for (size_t k = 0; k < N; ++k)
        at[k] += strides[k][last];
    }
    for (int d = last - 1; d >= 0; --d) {
      for (size_t k = 0; k < N; ++k)
        offsets[k] += strides[k][d];
      if (++index[d] < shape[d]) break;
      for (size_t k = 0; k < N; ++k)
        offsets[k] -= strides[k][d] * shape[d];
      index[d] = 0;
    }
  }
}

}  // namespace

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
