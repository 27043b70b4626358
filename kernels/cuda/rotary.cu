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

// kBackward applies the transpose of the forward rotation (see rotary.h). I is the index type:
// uint32_t when every index fits (its divisions are a few instructions; int64_t's are long
// software sequences, three per element here), else int64_t.
template <typename T, bool kBackward, typename I>
__global__ void rotary_kernel(T* out, const T* in, const T* cos, const T* sin, I rows, I dim,
                              I table_rows, I row_group) {
  using C = ComputeType<T>;
  const I half = dim / 2;
  const I total = rows * dim;
  for (I e = static_cast<I>(global_thread_index()); e < total;
       e += static_cast<I>(grid_thread_count())) {
    const I r = e / dim, j = e - r * dim;
    const I table = ((r / row_group) % table_rows) * dim;
    const I partner = j < half ? j + half : j - half;
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
template <typename T, bool kBackward, int V, typename I>
__global__ void rotary_vector_kernel(T* out, const T* in, const T* cos, const T* sin, I rows, I dim,
                                     I table_rows, I row_group) {
  using C = ComputeType<T>;
  const I half = dim / 2;
  const I per_row = half / V;
  const I total = rows * per_row;
  for (I i = static_cast<I>(global_thread_index()); i < total;
       i += static_cast<I>(grid_thread_count())) {
    const I r = i / per_row, j = (i - r * per_row) * V;
    const I lo = r * dim + j, hi = lo + half;
    const I table = ((r / row_group) % table_rows) * dim + j;
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
  // 32-bit indices when every element index (and the grid-stride step past the last) fits.
  const bool index32 = rows * dim + int64_t{kMaxBlocks} * kThreadsPerBlock < (int64_t{1} << 32);
  dispatch_float_code(dtype, name, [&]<typename T>(TypeTag<T>) {
    auto launch = [&]<typename I>() {
      constexpr int V = kVectorElems<T>;
      if ((dim / 2) % V == 0 && is_aligned(out, 16) && is_aligned(in, 16) && is_aligned(cos, 16) &&
          is_aligned(sin, 16)) {
        rotary_vector_kernel<T, kBackward, V, I>
            <<<blocks_for(rows * (dim / 2 / V)), kThreadsPerBlock, 0, stream>>>(
                static_cast<T*>(out), static_cast<const T*>(in), static_cast<const T*>(cos),
                static_cast<const T*>(sin), static_cast<I>(rows), static_cast<I>(dim),
                static_cast<I>(table_rows), static_cast<I>(row_group));
        AUTOTP_CUDA_CHECK_LAUNCH(
            kBackward ? "rotary_vector_kernel (backward)" : "rotary_vector_kernel (forward)",
            {"rows", rows}, {"dim", dim}, {"table_rows", table_rows}, {"dtype", dtype});
        return;
      }
      rotary_kernel<T, kBackward, I><<<blocks_for(rows * dim), kThreadsPerBlock, 0, stream>>>(
          static_cast<T*>(out), static_cast<const T*>(in), static_cast<const T*>(cos),
          static_cast<const T*>(sin), static_cast<I>(rows), static_cast<I>(dim),
          static_cast<I>(table_rows), static_cast<I>(row_group));
      AUTOTP_CUDA_CHECK_LAUNCH(kBackward ? "rotary_kernel (backward)" : "rotary_kernel (forward)",
                               {"rows", rows}, {"dim", dim}, {"table_rows", table_rows},
                               {"dtype", dtype});
    };
    if (index32) {
      launch.template operator()<uint32_t>();
    } else {
      launch.template operator()<int64_t>();
    }
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
