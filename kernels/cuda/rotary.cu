// Rotary kernels: one thread per output element (grid-stride, 64-bit indices), reading the
// element and its rotate-half partner; where half the head dim is a multiple of the vector
// width and every pointer is 16-byte aligned, one thread per V elements of the first half and
// their V partners (16-byte accesses, one index computation per 2 V outputs).
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/rotary.h"
#include "kernels/cuda/vectorized.cuh"

#include <stdexcept>
#include <string>

namespace autotp::kernels::cuda {

namespace {

// kBackward applies the transpose of the forward rotation (see rotary.h).
template <typename T, bool kBackward>
__global__ void rotary_kernel(T* out, const T* in, const T* cos, const T* sin, int64_t rows,
                              int64_t dim, int64_t table_rows, int64_t row_group) {
  using C = ComputeType<T>;
  const int64_t half = dim / 2;
  const int64_t total = rows * dim;
  for (int64_t e = global_thread_index(); e < total; e += grid_thread_count()) {
    const int64_t r = e / dim, j = e - r * dim;
    const int64_t table = ((r / row_group) % table_rows) * dim;
    const int64_t partner = j < half ? j + half : j - half;
    const C value = widen(in[e]) * widen(cos[table + j]);
    // Forward reads sin at j, backward at the partner's column.
    const C rotated = widen(in[r * dim + partner]) * widen(sin[table + (kBackward ? partner : j)]);
    // Forward: - for the first half; backward: - for the second half.
    const bool subtract = kBackward ? j >= half : j < half;
    out[e] = convert<T>(subtract ? value - rotated : value + rotated);
  }
}

// The vectorized form: index i covers columns [j, j + V) of the first half of row r and their
// partners [j + half, j + half + V), with the scalar kernel's arithmetic per element.
template <typename T, bool kBackward, int V>
__global__ void rotary_vector_kernel(T* out, const T* in, const T* cos, const T* sin, int64_t rows,
                                     int64_t dim, int64_t table_rows, int64_t row_group) {
  using C = ComputeType<T>;
  const int64_t half = dim / 2;
  const int64_t per_row = half / V;
  const int64_t total = rows * per_row;
  for (int64_t i = global_thread_index(); i < total; i += grid_thread_count()) {
    const int64_t r = i / per_row, j = (i - r * per_row) * V;
    const int64_t lo = r * dim + j, hi = lo + half;
    const int64_t table = ((r / row_group) % table_rows) * dim + j;
    const Pack<T, V> x_lo = load_pack<V>(in + lo), x_hi = load_pack<V>(in + hi);
    const Pack<T, V> c_lo = load_pack<V>(cos + table), c_hi = load_pack<V>(cos + table + half);
    const Pack<T, V> s_lo = load_pack<V>(sin + table), s_hi = load_pack<V>(sin + table + half);
    Pack<T, V> y_lo, y_hi;
#pragma unroll
    for (int e = 0; e < V; ++e) {
      const C a = widen(x_lo.v[e]), b = widen(x_hi.v[e]);
      // Forward: lo = a c - b s_lo, hi = b c + a s_hi; backward (the transpose): lo = a c +
      // b s_hi, hi = b c - a s_lo.
      const C lo_value = a * widen(c_lo.v[e]), hi_value = b * widen(c_hi.v[e]);
      const C lo_rotated = b * widen(kBackward ? s_hi.v[e] : s_lo.v[e]);
      const C hi_rotated = a * widen(kBackward ? s_lo.v[e] : s_hi.v[e]);
      y_lo.v[e] = convert<T>(kBackward ? lo_value + lo_rotated : lo_value - lo_rotated);
      y_hi.v[e] = convert<T>(kBackward ? hi_value - hi_rotated : hi_value + hi_rotated);
    }
    store_pack<V>(out + lo, y_lo);
    store_pack<V>(out + hi, y_hi);
  }
}

template <bool kBackward>
void launch_rotary(const char* name, int dtype, void* out, const void* in, const void* cos,
                   const void* sin, int64_t rows, int64_t dim, int64_t table_rows,
                   int64_t row_group, cudaStream_t stream) {
  if (rows == 0 || dim == 0) return;
  if (dim % 2 != 0 || table_rows < 1 || row_group < 1) {
    throw std::invalid_argument(std::string(name) + ": dim " + std::to_string(dim) +
                                " must be even, table_rows " + std::to_string(table_rows) +
                                " and row_group " + std::to_string(row_group) + " positive");
  }
  dispatch_float_code(dtype, name, [&]<typename T>(TypeTag<T>) {
    constexpr int V = kVectorElems<T>;
    if ((dim / 2) % V == 0 && is_aligned(out, 16) && is_aligned(in, 16) && is_aligned(cos, 16) &&
        is_aligned(sin, 16)) {
      rotary_vector_kernel<T, kBackward, V>
          <<<blocks_for(rows * (dim / 2 / V)), kThreadsPerBlock, 0, stream>>>(
              static_cast<T*>(out), static_cast<const T*>(in), static_cast<const T*>(cos),
              static_cast<const T*>(sin), rows, dim, table_rows, row_group);
      AUTOTP_CUDA_CHECK_LAUNCH(
          kBackward ? "rotary_vector_kernel (backward)" : "rotary_vector_kernel (forward)",
          {"rows", rows}, {"dim", dim}, {"table_rows", table_rows}, {"dtype", dtype});
      return;
    }
    rotary_kernel<T, kBackward><<<blocks_for(rows * dim), kThreadsPerBlock, 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(in), static_cast<const T*>(cos),
        static_cast<const T*>(sin), rows, dim, table_rows, row_group);
    AUTOTP_CUDA_CHECK_LAUNCH(kBackward ? "rotary_kernel (backward)" : "rotary_kernel (forward)",
                             {"rows", rows}, {"dim", dim}, {"table_rows", table_rows},
                             {"dtype", dtype});
  });
}

}  // namespace

void rotary_forward(int dtype, void* out, const void* x, const void* cos, const void* sin,
                    int64_t rows, int64_t dim, int64_t table_rows, int64_t row_group,
                    cudaStream_t stream) {
  launch_rotary<false>("rotary_forward", dtype, out, x, cos, sin, rows, dim, table_rows, row_group,
                       stream);
}

void rotary_backward(int dtype, void* dx, const void* cos, const void* sin, const void* dy,
                     int64_t rows, int64_t dim, int64_t table_rows, int64_t row_group,
                     cudaStream_t stream) {
  launch_rotary<true>("rotary_backward", dtype, dx, dy, cos, sin, rows, dim, table_rows, row_group,
                      stream);
}

}  // namespace autotp::kernels::cuda
