// Norm kernels: forward and dx take a block per row (grid-stride over rows) with block
// reductions for the row sums; dweight/dbias are per-chunk column partials (a 32 x 8 block per
// 32 columns of a chunk of rows) summed over the chunks in order by a second kernel.
// RMSNorm over rows that are 16-byte aligned with a width that is a multiple of the vector
// width (at most 1024 vectors) takes vectorized kernels instead: the forward with 16-byte
// accesses (one warp per row, x kept in registers, up to 512 vectors), and one backward kernel per
// chunk of rows in which each thread owns V columns, writes their dx row by row and keeps their
// dweight partial sums in registers (x and dy are read once, against three times by the two-kernel
// path).
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/row_utils.cuh"
#include "kernels/cuda/vectorized.cuh"

#include <stdexcept>
#include <string>
#include <utility>

namespace autotp::kernels::cuda {

namespace {

// Rows per chunk (one block of the backward kernels each): few enough that a 4 x 2048-token
// batch gives ~1000 blocks. The fused RMSNorm backward walks its chunk's rows one after the
// other, two block barriers per row, so its speed comes from many blocks per SM.
constexpr int64_t kMinRowsPerChunk = 8;
constexpr int64_t kMaxChunks = 1024;
constexpr int kColumnTile = 32;  // columns per partial-sum block
constexpr int kRowLanes = 8;     // rows summed side by side per column
// Threads of the fused RMSNorm backward (a thread per 16-byte vector of the row): it takes rows
// of at most this many vectors and is compiled for blocks of this size.
constexpr int kFusedBackwardMaxThreads = 1024;

int64_t rows_per_chunk(int64_t rows) {
  return std::max(kMinRowsPerChunk, (rows + kMaxChunks - 1) / kMaxChunks);
}

int64_t chunk_count(int64_t rows) {
  return rows == 0 ? 0 : (rows + rows_per_chunk(rows) - 1) / rows_per_chunk(rows);
}

template <typename T>
__device__ __forceinline__ ComputeType<T> weight_at(const T* weight, int64_t j) {
  return weight ? widen(weight[j]) : ComputeType<T>(1);
}

template <typename T>
__global__ void rms_norm_forward_kernel(T* y, ComputeType<T>* rstd, const T* x, const T* weight,
                                        int64_t rows, int64_t dim, ComputeType<T> eps) {
  using C = ComputeType<T>;
  __shared__ C scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    C sum_sq = 0;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      const C v = widen(xr[j]);
      sum_sq += v * v;
    }
    const C rs = C(1) / math_sqrt(block_sum(sum_sq, scratch) / static_cast<C>(dim) + eps);
    if (threadIdx.x == 0) rstd[row] = rs;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      const C normalized = widen(xr[j]) * rs;
      if constexpr (kIs16BitFloat<T>) {
        const T rounded = convert<T>(normalized);  // HF: hidden_states.to(input_dtype)
        yr[j] = weight ? convert<T>(widen(weight[j]) * widen(rounded)) : rounded;
      } else {
        yr[j] = convert<T>(weight ? normalized * widen(weight[j]) : normalized);
      }
    }
  }
}

// The forward over 16-byte vectors of the row (dim a multiple of V).
template <typename T, int V>
__global__ void rms_norm_forward_vector_kernel(T* y, ComputeType<T>* rstd, const T* x,
                                               const T* weight, int64_t rows, int64_t dim,
                                               ComputeType<T> eps) {
  using C = ComputeType<T>;
  __shared__ C scratch[32];
  const int64_t vectors = dim / V;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    C sum_sq = 0;
    for (int64_t k = threadIdx.x; k < vectors; k += blockDim.x) {
      const Pack<T, V> in = load_pack<V>(xr + k * V);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const C v = widen(in.v[e]);
        sum_sq += v * v;
      }
    }
    const C rs = C(1) / math_sqrt(block_sum(sum_sq, scratch) / static_cast<C>(dim) + eps);
    if (threadIdx.x == 0) rstd[row] = rs;
    for (int64_t k = threadIdx.x; k < vectors; k += blockDim.x) {
      const Pack<T, V> in = load_pack<V>(xr + k * V);
      Pack<T, V> w;
      if (weight) w = load_pack<V>(weight + k * V);
      Pack<T, V> out;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const C normalized = widen(in.v[e]) * rs;
        if constexpr (kIs16BitFloat<T>) {
          const T rounded = convert<T>(normalized);  // HF: hidden_states.to(input_dtype)
          out.v[e] = weight ? convert<T>(widen(w.v[e]) * widen(rounded)) : rounded;
        } else {
          out.v[e] = convert<T>(weight ? normalized * widen(w.v[e]) : normalized);
        }
      }
      store_pack<V>(yr + k * V, out);
    }
  }
}

// The same forward with one warp per row for rows of at most 32 kPacks vectors: lane l holds
// vectors l, l + 32, ... of its row in registers from the sum of squares to the output, so x
// is read once and no block barrier is needed (the block-per-row kernel above spends its time
// in two barriers per 4 KB row at the Llama widths). The sum is the lanes' partial sums in
// vector order, then the warp's butterfly: fixed, so deterministic.
template <typename T, int V, int kPacks>
__global__ void rms_norm_forward_warp_kernel(T* y, ComputeType<T>* rstd, const T* x,
                                             const T* weight, int64_t rows, int64_t dim,
                                             ComputeType<T> eps) {
  using C = ComputeType<T>;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int64_t warps_per_block = blockDim.x / 32;
  const int64_t vectors = dim / V;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / 32;
       row < rows; row += static_cast<int64_t>(gridDim.x) * warps_per_block) {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    Pack<T, V> in[kPacks];
    C sum_sq = 0;
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const int64_t k = lane + 32 * p;
      if (k < vectors) {
        in[p] = load_pack<V>(xr + k * V);
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const C v = widen(in[p].v[e]);
          sum_sq += v * v;
        }
      }
    }
    const C rs = C(1) / math_sqrt(warp_sum(sum_sq) / static_cast<C>(dim) + eps);
    if (lane == 0) rstd[row] = rs;
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const int64_t k = lane + 32 * p;
      if (k < vectors) {
        Pack<T, V> w;
        if (weight) w = load_pack<V>(weight + k * V);
        Pack<T, V> out;
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const C normalized = widen(in[p].v[e]) * rs;
          if constexpr (kIs16BitFloat<T>) {
            const T rounded = convert<T>(normalized);  // HF: hidden_states.to(input_dtype)
            out.v[e] = weight ? convert<T>(widen(w.v[e]) * widen(rounded)) : rounded;
          } else {
            out.v[e] = convert<T>(weight ? normalized * widen(w.v[e]) : normalized);
          }
        }
        store_pack<V>(yr + k * V, out);
      }
    }
  }
}

constexpr int kNormWarpsPerBlock = 4;

template <typename T, int V, int kPacks>
void launch_rms_norm_forward_warp(int dtype, T* y, ComputeType<T>* rstd, const T* x,
                                  const T* weight, int64_t rows, int64_t dim, ComputeType<T> eps,
                                  cudaStream_t stream) {
  const int64_t blocks = (rows + kNormWarpsPerBlock - 1) / kNormWarpsPerBlock;
  rms_norm_forward_warp_kernel<T, V, kPacks>
      <<<static_cast<unsigned>(std::min<int64_t>(blocks, kMaxBlocks)), 32 * kNormWarpsPerBlock, 0,
         stream>>>(y, rstd, x, weight, rows, dim, eps);
  AUTOTP_CUDA_CHECK_LAUNCH("rms_norm_forward_warp_kernel", {"rows", rows}, {"dim", dim},
                           {"packs per lane", kPacks}, {"dtype", dtype});
}

// The warp-per-row forward when a row is at most 512 vectors (4096 bf16/f16 values, 2048 f32,
// 1024 f64); false when it is wider.
template <typename T, int V>
bool rms_norm_forward_by_warps(int dtype, T* y, ComputeType<T>* rstd, const T* x, const T* weight,
                               int64_t rows, int64_t dim, ComputeType<T> eps, cudaStream_t stream) {
  const int64_t vectors = dim / V;
  if (vectors <= 32) {
    launch_rms_norm_forward_warp<T, V, 1>(dtype, y, rstd, x, weight, rows, dim, eps, stream);
  } else if (vectors <= 64) {
    launch_rms_norm_forward_warp<T, V, 2>(dtype, y, rstd, x, weight, rows, dim, eps, stream);
  } else if (vectors <= 128) {
    launch_rms_norm_forward_warp<T, V, 4>(dtype, y, rstd, x, weight, rows, dim, eps, stream);
  } else if (vectors <= 256) {
    launch_rms_norm_forward_warp<T, V, 8>(dtype, y, rstd, x, weight, rows, dim, eps, stream);
  } else if (vectors <= 512) {
    launch_rms_norm_forward_warp<T, V, 16>(dtype, y, rstd, x, weight, rows, dim, eps, stream);
  } else {
    return false;
  }
  return true;
}

// RMSNorm backward for one chunk of rows per block (blockIdx.x): thread t owns columns
// [t V, t V + V) (threads past dim / V only join the reductions). Per row: dx as
// norm_dx_kernel computes it; over the chunk's rows, in order: partial_w[chunk, j] =
// sum dy xhat (as norm_param_partials_kernel, summed in row order instead of 8 interleaved
// lanes). The next row's x and dy are loaded before this row's reduction. dx_addend (null,
// or [rows, dim], possibly dx itself) is added to dx before its rounding.
// Registers: launched with up to kFusedBackwardMaxThreads threads, so it is compiled for them
// (__launch_bounds__: at most 64 registers on sm_90; without it bf16 took 83 and a launch
// above 736 threads, dim > 5888, failed). The weight stays packed and xhat, g are recomputed
// after the reduction instead of held across it, which keeps every dtype at <= 64 registers
// without spills (sm_90 ptxas: bf16 64, f16 58, f32 55, f64 54).
template <typename T, int V>
__global__ void __launch_bounds__(kFusedBackwardMaxThreads)
    rms_norm_backward_vector_kernel(T* dx, ComputeType<T>* partial_w, const T* x, const T* weight,
                                    const ComputeType<T>* rstd, const T* dy, const T* dx_addend,
                                    int64_t rows, int64_t dim, int64_t chunk_rows) {
  using C = ComputeType<T>;
  __shared__ C scratch[32];
  const int64_t column = static_cast<int64_t>(threadIdx.x) * V;
  const bool owns = column < dim;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * chunk_rows;
  const int64_t last = std::min(rows, first + chunk_rows);
  C acc[V];
  Pack<T, V> w{}, next_x{}, next_dy{};
  if (owns) {
    if (weight) w = load_pack<V>(weight + column);
#pragma unroll
    for (int e = 0; e < V; ++e)
      acc[e] = C(0);
    if (first < last) {
      next_x = load_pack<V>(x + first * dim + column);
      next_dy = load_pack<V>(dy + first * dim + column);
    }
  }
  for (int64_t row = first; row < last; ++row) {
    const Pack<T, V> xp = next_x, dyp = next_dy;
    if (owns && row + 1 < last) {
      next_x = load_pack<V>(x + (row + 1) * dim + column);
      next_dy = load_pack<V>(dy + (row + 1) * dim + column);
    }
    const C rs = rstd[row];
    C sum_g_xhat = 0;
    if (owns) {
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const C xhat = widen(xp.v[e]) * rs;
        const C g = widen(dyp.v[e]) * (weight ? widen(w.v[e]) : C(1));
        sum_g_xhat += g * xhat;
        acc[e] += widen(dyp.v[e]) * xhat;
      }
    }
    const C mean_g_xhat = block_sum(sum_g_xhat, scratch) / static_cast<C>(dim);
    if (owns) {
      Pack<T, V> add{};
      if (dx_addend) add = load_pack<V>(dx_addend + row * dim + column);
      Pack<T, V> out;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const C xhat = widen(xp.v[e]) * rs;
        const C g = widen(dyp.v[e]) * (weight ? widen(w.v[e]) : C(1));
        const C value = rs * (g - xhat * mean_g_xhat);
        out.v[e] = convert<T>(dx_addend ? value + widen(add.v[e]) : value);
      }
      store_pack<V>(dx + row * dim + column, out);
    }
  }
  if (owns && partial_w) {
#pragma unroll
    for (int e = 0; e < V; ++e)
      partial_w[static_cast<int64_t>(blockIdx.x) * dim + column + e] = acc[e];
  }
}

template <typename T>
__global__ void layer_norm_forward_kernel(T* y, ComputeType<T>* mean, ComputeType<T>* rstd,
                                          const T* x, const T* weight, const T* bias, int64_t rows,
                                          int64_t dim, ComputeType<T> eps) {
  using C = ComputeType<T>;
  __shared__ C scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    C sum = 0;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
      sum += widen(xr[j]);
    const C mu = block_sum(sum, scratch) / static_cast<C>(dim);
    C sum_sq = 0;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      const C centered = widen(xr[j]) - mu;
      sum_sq += centered * centered;
    }
    const C rs = C(1) / math_sqrt(block_sum(sum_sq, scratch) / static_cast<C>(dim) + eps);
    if (threadIdx.x == 0) {
      mean[row] = mu;
      rstd[row] = rs;
    }
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      const C xhat = (widen(xr[j]) - mu) * rs;
      yr[j] = convert<T>(xhat * weight_at(weight, j) + (bias ? widen(bias[j]) : C(0)));
    }
  }
}

// dx for both norms; kLayer subtracts the mean (mean is null for RMSNorm). dx_addend as in
// rms_norm_backward_vector_kernel.
template <typename T, bool kLayer>
__global__ void norm_dx_kernel(T* dx, const T* x, const T* weight, const ComputeType<T>* mean,
                               const ComputeType<T>* rstd, const T* dy, const T* dx_addend,
                               int64_t rows, int64_t dim) {
  using C = ComputeType<T>;
  __shared__ C scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * dim;
    const T* dyr = dy + row * dim;
    T* dxr = dx + row * dim;
    const T* addr = dx_addend ? dx_addend + row * dim : nullptr;
    const C mu = kLayer ? mean[row] : C(0);
    const C rs = rstd[row];
    C sum_g = 0, sum_g_xhat = 0;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      const C xhat = (widen(xr[j]) - mu) * rs;
      const C g = widen(dyr[j]) * weight_at(weight, j);
      sum_g += g;
      sum_g_xhat += g * xhat;
    }
    const C n = static_cast<C>(dim);
    const C mean_g_xhat = block_sum(sum_g_xhat, scratch) / n;
    const C mean_g = kLayer ? block_sum(sum_g, scratch) / n : C(0);
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      const C xhat = (widen(xr[j]) - mu) * rs;
      const C g = widen(dyr[j]) * weight_at(weight, j);
      const C value = rs * (g - mean_g - xhat * mean_g_xhat);
      dxr[j] = convert<T>(addr ? value + widen(addr[j]) : value);
    }
  }
}

// Stage 1 of dweight/dbias: partial_w[c, j] = sum over rows r of chunk c of dy[r, j] *
// xhat[r, j], partial_b[c, j] = sum of dy[r, j] (partial_b may be null). Block (32, 8) covers
// 32 columns of one chunk (blockIdx.y); each column's 8 lanes are added in lane order.
template <typename T>
__global__ void norm_param_partials_kernel(ComputeType<T>* partial_w, ComputeType<T>* partial_b,
                                           const T* x, const ComputeType<T>* mean,
                                           const ComputeType<T>* rstd, const T* dy, int64_t rows,
                                           int64_t dim, int64_t chunk_rows) {
  using C = ComputeType<T>;
  __shared__ C lanes_w[kRowLanes][kColumnTile];
  __shared__ C lanes_b[kRowLanes][kColumnTile];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColumnTile + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t first = chunk * chunk_rows;
  const int64_t last = std::min(rows, first + chunk_rows);
  C acc_w = 0, acc_b = 0;
  if (j < dim) {
    for (int64_t r = first + threadIdx.y; r < last; r += kRowLanes) {
      const C mu = mean ? mean[r] : C(0);
      const C g = widen(dy[r * dim + j]);
      acc_w += g * ((widen(x[r * dim + j]) - mu) * rstd[r]);
      acc_b += g;
    }
  }
  lanes_w[threadIdx.y][threadIdx.x] = acc_w;
  lanes_b[threadIdx.y][threadIdx.x] = acc_b;
  __syncthreads();
  if (threadIdx.y == 0 && j < dim) {
    C total_w = lanes_w[0][threadIdx.x], total_b = lanes_b[0][threadIdx.x];
    for (int lane = 1; lane < kRowLanes; ++lane) {
      total_w += lanes_w[lane][threadIdx.x];
      total_b += lanes_b[lane][threadIdx.x];
    }
    partial_w[chunk * dim + j] = total_w;
    if (partial_b) partial_b[chunk * dim + j] = total_b;
  }
}

// Stage 2: out[j] = sum over chunks c of partial[c, j]. A block owns kSumColumns columns with
// kSumLanes lanes each: lane l adds chunks l, l + kSumLanes, ... in order, then the lanes' sums
// are added in lane order (deterministic; a thread per column alone left most of the GPU idle).
// Its 1024-thread blocks need <= 64 registers, hence __launch_bounds__ (sm_90: 32).
constexpr int kSumColumns = 32;
constexpr int kSumLanes = 32;

template <typename T>
__global__ void __launch_bounds__(kSumColumns* kSumLanes)
    sum_chunks_kernel(T* out, const ComputeType<T>* partial, int64_t chunks, int64_t dim) {
  using C = ComputeType<T>;
  __shared__ C lane_sums[kSumLanes][kSumColumns + 1];  // +1: no bank conflicts down a column
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kSumColumns + threadIdx.x;
  C acc = 0;
  if (j < dim) {
    for (int64_t c = threadIdx.y; c < chunks; c += kSumLanes)
      acc += partial[c * dim + j];
  }
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < dim) {
    C total = 0;
    for (int lane = 0; lane < kSumLanes; ++lane)
      total += lane_sums[lane][threadIdx.x];
    out[j] = convert<T>(total);
  }
}

template <typename T>
void launch_sum_chunks(const char* op, int dtype, T* out, const ComputeType<T>* partial,
                       int64_t chunks, int64_t dim, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((dim + kSumColumns - 1) / kSumColumns);
  sum_chunks_kernel<T>
      <<<blocks, dim3(kSumColumns, kSumLanes), 0, stream>>>(out, partial, chunks, dim);
  AUTOTP_CUDA_CHECK_LAUNCH(op, {"dim", dim}, {"chunks", chunks}, {"dtype", dtype});
}

// dweight (and dbias) through the two stages; mean is null for RMSNorm.
template <typename T>
void launch_param_grads(const char* op, int dtype, T* dweight, T* dbias, const T* x,
                        const ComputeType<T>* mean, const ComputeType<T>* rstd, const T* dy,
                        int64_t rows, int64_t dim, void* workspace, cudaStream_t stream) {
  using C = ComputeType<T>;
  if (!dweight && !dbias) return;
  const int64_t chunks = chunk_count(rows);
  C* partial_w = static_cast<C*>(workspace);
  C* partial_b = partial_w + chunks * dim;
  if (chunks > 0) {
    const dim3 grid(static_cast<unsigned>((dim + kColumnTile - 1) / kColumnTile),
                    static_cast<unsigned>(chunks));
    norm_param_partials_kernel<T><<<grid, dim3(kColumnTile, kRowLanes), 0, stream>>>(
        partial_w, dbias ? partial_b : nullptr, x, mean, rstd, dy, rows, dim, rows_per_chunk(rows));
    AUTOTP_CUDA_CHECK_LAUNCH(op, {"rows", rows}, {"dim", dim}, {"chunks", chunks},
                             {"dtype", dtype});
  }
  for (auto [out, partial] : {std::pair{dweight, partial_w}, std::pair{dbias, partial_b}}) {
    if (!out) continue;
    launch_sum_chunks<T>("norm sum_chunks_kernel", dtype, out, partial, chunks, dim, stream);
  }
}

void check_dim(const char* op, int64_t dim) {
  if (dim < 1) throw std::invalid_argument(std::string(op) + ": the normalized dim is empty");
}

}  // namespace

int64_t norm_backward_workspace_elems(int64_t rows, int64_t dim) {
  return 2 * chunk_count(rows) * dim;
}

void rms_norm_forward(int dtype, void* y, void* rstd, const void* x, const void* weight,
                      int64_t rows, int64_t dim, double eps, cudaStream_t stream) {
  check_dim("rms_norm_forward", dim);
  if (rows == 0) return;
  dispatch_float_code(dtype, "rms_norm_forward", [&]<typename T>(TypeTag<T>) {
    using C = ComputeType<T>;
    constexpr int V = kVectorElems<T>;
    if (dim % V == 0 && is_aligned(y, 16) && is_aligned(x, 16) &&
        (!weight || is_aligned(weight, 16))) {
      if (rms_norm_forward_by_warps<T, V>(dtype, static_cast<T*>(y), static_cast<C*>(rstd),
                                          static_cast<const T*>(x), static_cast<const T*>(weight),
                                          rows, dim, static_cast<C>(eps), stream)) {
        return;
      }
      rms_norm_forward_vector_kernel<T, V>
          <<<blocks_for_rows(rows), threads_for_row(dim / V), 0, stream>>>(
              static_cast<T*>(y), static_cast<C*>(rstd), static_cast<const T*>(x),
              static_cast<const T*>(weight), rows, dim, static_cast<C>(eps));
      AUTOTP_CUDA_CHECK_LAUNCH("rms_norm_forward_vector_kernel", {"rows", rows}, {"dim", dim},
                               {"dtype", dtype});
      return;
    }
    rms_norm_forward_kernel<T><<<blocks_for_rows(rows), threads_for_row(dim), 0, stream>>>(
        static_cast<T*>(y), static_cast<C*>(rstd), static_cast<const T*>(x),
        static_cast<const T*>(weight), rows, dim, static_cast<C>(eps));
    AUTOTP_CUDA_CHECK_LAUNCH("rms_norm_forward_kernel", {"rows", rows}, {"dim", dim},
                             {"dtype", dtype});
  });
}

void rms_norm_backward(int dtype, void* dx, void* dweight, const void* x, const void* weight,
                       const void* rstd, const void* dy, const void* dx_addend, int64_t rows,
                       int64_t dim, void* workspace, cudaStream_t stream) {
  check_dim("rms_norm_backward", dim);
  dispatch_float_code(dtype, "rms_norm_backward", [&]<typename T>(TypeTag<T>) {
    using C = ComputeType<T>;
    constexpr int V = kVectorElems<T>;
    const int64_t vectors = dim / V;
    if (rows > 0 && dim % V == 0 && vectors <= kFusedBackwardMaxThreads && is_aligned(dx, 16) &&
        is_aligned(x, 16) && is_aligned(dy, 16) && (!weight || is_aligned(weight, 16)) &&
        (!dx_addend || is_aligned(dx_addend, 16))) {
      const int64_t chunks = chunk_count(rows);
      C* partial_w = dweight ? static_cast<C*>(workspace) : nullptr;
      const int threads = static_cast<int>((vectors + 31) / 32 * 32);
      rms_norm_backward_vector_kernel<T, V><<<static_cast<unsigned>(chunks), threads, 0, stream>>>(
          static_cast<T*>(dx), partial_w, static_cast<const T*>(x), static_cast<const T*>(weight),
          static_cast<const C*>(rstd), static_cast<const T*>(dy), static_cast<const T*>(dx_addend),
          rows, dim, rows_per_chunk(rows));
      AUTOTP_CUDA_CHECK_LAUNCH("rms_norm_backward_vector_kernel", {"rows", rows}, {"dim", dim},
                               {"chunks", chunks}, {"dtype", dtype});
      if (dweight) {
        launch_sum_chunks<T>("rms_norm sum_chunks_kernel", dtype, static_cast<T*>(dweight),
                             partial_w, chunks, dim, stream);
      }
      return;
    }
    if (rows > 0) {
      norm_dx_kernel<T, false><<<blocks_for_rows(rows), threads_for_row(dim), 0, stream>>>(
          static_cast<T*>(dx), static_cast<const T*>(x), static_cast<const T*>(weight), nullptr,
          static_cast<const C*>(rstd), static_cast<const T*>(dy), static_cast<const T*>(dx_addend),
          rows, dim);
      AUTOTP_CUDA_CHECK_LAUNCH("rms_norm dx norm_dx_kernel", {"rows", rows}, {"dim", dim},
                               {"dtype", dtype});
    }
    launch_param_grads<T>("rms_norm dweight norm_param_partials_kernel", dtype,
                          static_cast<T*>(dweight), nullptr, static_cast<const T*>(x), nullptr,
                          static_cast<const C*>(rstd), static_cast<const T*>(dy), rows, dim,
                          workspace, stream);
  });
}

void layer_norm_forward(int dtype, void* y, void* mean, void* rstd, const void* x,
                        const void* weight, const void* bias, int64_t rows, int64_t dim, double eps,
                        cudaStream_t stream) {
  check_dim("layer_norm_forward", dim);
  if (rows == 0) return;
  dispatch_float_code(dtype, "layer_norm_forward", [&]<typename T>(TypeTag<T>) {
    using C = ComputeType<T>;
    layer_norm_forward_kernel<T><<<blocks_for_rows(rows), threads_for_row(dim), 0, stream>>>(
        static_cast<T*>(y), static_cast<C*>(mean), static_cast<C*>(rstd), static_cast<const T*>(x),
        static_cast<const T*>(weight), static_cast<const T*>(bias), rows, dim, static_cast<C>(eps));
    AUTOTP_CUDA_CHECK_LAUNCH("layer_norm_forward_kernel", {"rows", rows}, {"dim", dim},
                             {"dtype", dtype});
  });
}

void layer_norm_backward(int dtype, void* dx, void* dweight, void* dbias, const void* x,
                         const void* weight, const void* mean, const void* rstd, const void* dy,
                         int64_t rows, int64_t dim, void* workspace, cudaStream_t stream) {
  check_dim("layer_norm_backward", dim);
  dispatch_float_code(dtype, "layer_norm_backward", [&]<typename T>(TypeTag<T>) {
    using C = ComputeType<T>;
    if (rows > 0) {
      norm_dx_kernel<T, true><<<blocks_for_rows(rows), threads_for_row(dim), 0, stream>>>(
          static_cast<T*>(dx), static_cast<const T*>(x), static_cast<const T*>(weight),
          static_cast<const C*>(mean), static_cast<const C*>(rstd), static_cast<const T*>(dy),
          nullptr, rows, dim);
      AUTOTP_CUDA_CHECK_LAUNCH("layer_norm dx norm_dx_kernel", {"rows", rows}, {"dim", dim},
                               {"dtype", dtype});
    }
    launch_param_grads<T>(
        "layer_norm dweight/dbias norm_param_partials_kernel", dtype, static_cast<T*>(dweight),
        static_cast<T*>(dbias), static_cast<const T*>(x), static_cast<const C*>(mean),
        static_cast<const C*>(rstd), static_cast<const T*>(dy), rows, dim, workspace, stream);
  });
}

}  // namespace autotp::kernels::cuda
