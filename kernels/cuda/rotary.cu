// Rotary kernels: one thread per output element (grid-stride, 64-bit indices), reading the
// element and its rotate-half partner.
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/rotary.h"

#include <stdexcept>
#include <string>

namespace autotp::kernels::cuda {

namespace {

// kBackward applies the transpose of the forward rotation (see rotary.h).
template <typename T, bool kBackward>
__global__ void rotary_kernel(T* out, const T* in, const T* cos, const T* sin, int64_t rows,
                              int64_t dim, int64_t table_rows) {
  using C = ComputeType<T>;
  const int64_t half = dim / 2;
  const int64_t total = rows * dim;
  for (int64_t e = global_thread_index(); e < total; e += grid_thread_count()) {
    const int64_t r = e / dim, j = e - r * dim;
    const int64_t table = (r % table_rows) * dim;
    const int64_t partner = j < half ? j + half : j - half;
    const C value = widen(in[e]) * widen(cos[table + j]);
    // Forward reads sin at j, backward at the partner's column.
    const C rotated = widen(in[r * dim + partner]) * widen(sin[table + (kBackward ? partner : j)]);
    // Forward: - for the first half; backward: - for the second half.
    const bool subtract = kBackward ? j >= half : j < half;
    out[e] = convert<T>(subtract ? value - rotated : value + rotated);
  }
}

template <bool kBackward>
void launch_rotary(const char* name, int dtype, void* out, const void* in, const void* cos,
                   const void* sin, int64_t rows, int64_t dim, int64_t table_rows,
                   cudaStream_t stream) {
  if (rows == 0 || dim == 0) return;
  if (dim % 2 != 0 || table_rows < 1) {
    throw std::invalid_argument(std::string(name) + ": dim " + std::to_string(dim) +
                                " must be even and table_rows " + std::to_string(table_rows) +
                                " positive");
  }
  dispatch_float_code(dtype, name, [&]<typename T>(TypeTag<T>) {
    rotary_kernel<T, kBackward><<<blocks_for(rows * dim), kThreadsPerBlock, 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(in), static_cast<const T*>(cos),
        static_cast<const T*>(sin), rows, dim, table_rows);
    AUTOTP_CUDA_CHECK_LAUNCH(kBackward ? "rotary_kernel (backward)" : "rotary_kernel (forward)",
                             {"rows", rows}, {"dim", dim}, {"table_rows", table_rows},
                             {"dtype", dtype});
  });
}

}  // namespace

void rotary_forward(int dtype, void* out, const void* x, const void* cos, const void* sin,
                    int64_t rows, int64_t dim, int64_t table_rows, cudaStream_t stream) {
  launch_rotary<false>("rotary_forward", dtype, out, x, cos, sin, rows, dim, table_rows, stream);
}

void rotary_backward(int dtype, void* dx, const void* cos, const void* sin, const void* dy,
                     int64_t rows, int64_t dim, int64_t table_rows, cudaStream_t stream) {
  launch_rotary<true>("rotary_backward", dtype, dx, dy, cos, sin, rows, dim, table_rows, stream);
}

}  // namespace autotp::kernels::cuda
