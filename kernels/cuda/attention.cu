// Attention kernels. Each block has 8 warps; a warp owns one row (a query row in the forward
// and dq kernels, a key row in the dk/dv kernel) with the row's elements spread over its lanes
// (lane l holds elements l, l + 32, ...), and the other operand's rows are staged in shared
// memory tile by tile (converted to the compute type). Dot products are lane partials plus a
// butterfly; the forward keeps a running max and sum (online softmax) per row.
#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/row_utils.cuh"
#include "kernels/cuda/tensor_core_attention.h"

#include <stdexcept>
#include <string>

namespace autotp::kernels::cuda {

namespace {

constexpr int kRowsPerBlock = 8;  // warps per block, one row each
constexpr int kBlockThreads = kRowsPerBlock * 32;
constexpr int kMaxDim = static_cast<int>(kAttentionMaxHeadDim);
constexpr int kPerLane = kMaxDim / 32;  // elements of a row per lane

// Rows per shared-memory tile: 16 for f32 compute, 8 for f64 (32 KiB for two tiles either way).
template <typename C>
constexpr int tile_rows() {
  return sizeof(C) == 8 ? 8 : 16;
}

// r[t] = row[lane + 32 t] (0 past dim, or everywhere when !active).
template <typename T>
__device__ __forceinline__ void load_row(ComputeType<T> (&r)[kPerLane], const T* row, int dim,
                                         int lane, bool active) {
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    r[t] = active && d < dim ? widen(row[d]) : ComputeType<T>(0);
  }
}

// The dot product of a lane-spread row with a row in shared memory; every lane gets it.
template <typename C>
__device__ __forceinline__ C warp_dot(const C (&r)[kPerLane], const C* shared_row, int dim,
                                      int lane) {
  C partial = 0;
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    if (d < dim) partial += r[t] * shared_row[d];
  }
  return warp_sum(partial);
}

// tile[r][d] = matrix[(first + r) * dim + d] for r < count (all threads of the block help).
template <typename T>
__device__ __forceinline__ void stage_rows(ComputeType<T> (*tile)[kMaxDim], const T* matrix,
                                           int64_t first, int count, int dim) {
  for (int e = threadIdx.x; e < count * dim; e += blockDim.x) {
    const int r = e / dim, d = e - r * dim;
    tile[r][d] = widen(matrix[(first + r) * dim + d]);
  }
}

// Block: (batch * hq) x query tiles, flattened; warp w owns query row first_query + w.
template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    attention_forward_kernel(T* out, ComputeType<T>* lse, const T* q, const T* k, const T* v,
                             int64_t hq, int64_t hkv, int64_t seq, int dim, ComputeType<T> scale,
                             bool causal, int64_t query_tiles) {
  using C = ComputeType<T>;
  constexpr int kTile = tile_rows<C>();
  __shared__ C k_tile[kTile][kMaxDim];
  __shared__ C v_tile[kTile][kMaxDim];
  const int64_t bh = blockIdx.x / query_tiles;  // b * hq + h
  const int64_t first_query = (blockIdx.x % query_tiles) * kRowsPerBlock;
  const int64_t b = bh / hq, h = bh % hq;
  const int64_t kv_head = b * hkv + h / (hq / hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t i = first_query + warp;
  const bool active = i < seq;
  const T* k_head = k + kv_head * seq * dim;
  const T* v_head = v + kv_head * seq * dim;

  C q_row[kPerLane], acc[kPerLane];
  load_row<T>(q_row, q + (bh * seq + i) * dim, dim, lane, active);
#pragma unroll
  for (int t = 0; t < kPerLane; ++t)
    acc[t] = 0;
  C running_max = negative_infinity<C>(), running_sum = 0;
  // Causal: no query of this block sees a key past its last row.
  const int64_t keys = causal ? std::min<int64_t>(seq, first_query + kRowsPerBlock) : seq;
  for (int64_t j0 = 0; j0 < keys; j0 += kTile) {
    const int count = static_cast<int>(std::min<int64_t>(kTile, keys - j0));
    __syncthreads();  // every warp is done with the previous tile
    stage_rows<T>(k_tile, k_head, j0, count, dim);
    stage_rows<T>(v_tile, v_head, j0, count, dim);
    __syncthreads();
    if (!active) continue;  // uniform over the warp
    for (int jj = 0; jj < count; ++jj) {
      if (causal && j0 + jj > i) break;
      const C s = warp_dot(q_row, k_tile[jj], dim, lane) * scale;
      const C new_max = math_max(running_max, s);
      const C correction = math_exp(running_max - new_max);  // 0 for the first key
      const C p = math_exp(s - new_max);
      running_sum = running_sum * correction + p;
#pragma unroll
      for (int t = 0; t < kPerLane; ++t) {
        const int d = lane + 32 * t;
        if (d < dim) acc[t] = acc[t] * correction + p * v_tile[jj][d];
      }
      running_max = new_max;
    }
  }
  if (!active) return;
  T* out_row = out + (bh * seq + i) * dim;
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    if (d < dim) out_row[d] = convert<T>(acc[t] / running_sum);
  }
  if (lane == 0) lse[bh * seq + i] = running_max + math_log(running_sum);
}

// dq and delta: the forward's blocks; two passes over the keys (delta first, then dq).
template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    attention_dq_kernel(T* dq, ComputeType<T>* delta, const T* q, const T* k, const T* v,
                        const ComputeType<T>* lse, const T* dout, int64_t hq, int64_t hkv,
                        int64_t seq, int dim, ComputeType<T> scale, bool causal,
                        int64_t query_tiles) {
  using C = ComputeType<T>;
  constexpr int kTile = tile_rows<C>();
  __shared__ C k_tile[kTile][kMaxDim];
  __shared__ C v_tile[kTile][kMaxDim];
  const int64_t bh = blockIdx.x / query_tiles;
  const int64_t first_query = (blockIdx.x % query_tiles) * kRowsPerBlock;
  const int64_t b = bh / hq, h = bh % hq;
  const int64_t kv_head = b * hkv + h / (hq / hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t i = first_query + warp;
  const bool active = i < seq;
  const T* k_head = k + kv_head * seq * dim;
  const T* v_head = v + kv_head * seq * dim;

  C q_row[kPerLane], dout_row[kPerLane], acc[kPerLane];
  load_row<T>(q_row, q + (bh * seq + i) * dim, dim, lane, active);
  load_row<T>(dout_row, dout + (bh * seq + i) * dim, dim, lane, active);
#pragma unroll
  for (int t = 0; t < kPerLane; ++t)
    acc[t] = 0;
  const C row_lse = active ? lse[bh * seq + i] : C(0);
  C row_delta = 0;
  const int64_t keys = causal ? std::min<int64_t>(seq, first_query + kRowsPerBlock) : seq;
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t j0 = 0; j0 < keys; j0 += kTile) {
      const int count = static_cast<int>(std::min<int64_t>(kTile, keys - j0));
      __syncthreads();
      stage_rows<T>(k_tile, k_head, j0, count, dim);
      stage_rows<T>(v_tile, v_head, j0, count, dim);
      __syncthreads();
      if (!active) continue;
      for (int jj = 0; jj < count; ++jj) {
        if (causal && j0 + jj > i) break;
        const C p = math_exp(warp_dot(q_row, k_tile[jj], dim, lane) * scale - row_lse);
        const C dp = warp_dot(dout_row, v_tile[jj], dim, lane);
        if (pass == 0) {
          row_delta += p * dp;
        } else {
          const C ds = p * (dp - row_delta);
#pragma unroll
          for (int t = 0; t < kPerLane; ++t) {
            const int d = lane + 32 * t;
            if (d < dim) acc[t] += ds * k_tile[jj][d];
          }
        }
      }
    }
  }
  if (!active) return;
  T* dq_row = dq + (bh * seq + i) * dim;
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    if (d < dim) dq_row[d] = convert<T>(scale * acc[t]);
  }
  if (lane == 0) delta[bh * seq + i] = row_delta;
}

// dk and dv. Block: (batch * hkv) x key tiles, flattened; warp w owns key row first_key + w
// and sums over the query heads of its group (in order) and their query rows (in order).
template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    attention_dkdv_kernel(T* dk, T* dv, const T* q, const T* k, const T* v,
                          const ComputeType<T>* lse, const ComputeType<T>* delta, const T* dout,
                          int64_t hq, int64_t hkv, int64_t seq, int dim, ComputeType<T> scale,
                          bool causal, int64_t key_tiles) {
  using C = ComputeType<T>;
  constexpr int kTile = tile_rows<C>();
  __shared__ C q_tile[kTile][kMaxDim];
  __shared__ C dout_tile[kTile][kMaxDim];
  __shared__ C lse_tile[kTile];
  __shared__ C delta_tile[kTile];
  const int64_t bkv = blockIdx.x / key_tiles;  // b * hkv + kv head
  const int64_t first_key = (blockIdx.x % key_tiles) * kRowsPerBlock;
  const int64_t b = bkv / hkv, kv = bkv % hkv;
  const int64_t group = hq / hkv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t j = first_key + warp;
  const bool active = j < seq;

  C k_row[kPerLane], v_row[kPerLane], dk_acc[kPerLane], dv_acc[kPerLane];
  load_row<T>(k_row, k + (bkv * seq + j) * dim, dim, lane, active);
  load_row<T>(v_row, v + (bkv * seq + j) * dim, dim, lane, active);
#pragma unroll
  for (int t = 0; t < kPerLane; ++t)
    dk_acc[t] = dv_acc[t] = 0;
  // Causal: queries before the block's first key see none of its keys.
  const int64_t first_query = causal ? first_key : 0;
  for (int64_t g = 0; g < group; ++g) {
    const int64_t bh = b * hq + kv * group + g;
    const T* q_head = q + bh * seq * dim;
    const T* dout_head = dout + bh * seq * dim;
    for (int64_t i0 = first_query; i0 < seq; i0 += kTile) {
      const int count = static_cast<int>(std::min<int64_t>(kTile, seq - i0));
      __syncthreads();
      stage_rows<T>(q_tile, q_head, i0, count, dim);
      stage_rows<T>(dout_tile, dout_head, i0, count, dim);
      for (int e = threadIdx.x; e < count; e += blockDim.x) {
        lse_tile[e] = lse[bh * seq + i0 + e];
        delta_tile[e] = delta[bh * seq + i0 + e];
      }
      __syncthreads();
      if (!active) continue;
      for (int ii = 0; ii < count; ++ii) {
        if (causal && i0 + ii < j) continue;
        const C p = math_exp(warp_dot(k_row, q_tile[ii], dim, lane) * scale - lse_tile[ii]);
        const C dp = warp_dot(v_row, dout_tile[ii], dim, lane);
        const C ds = p * (dp - delta_tile[ii]);
#pragma unroll
        for (int t = 0; t < kPerLane; ++t) {
          const int d = lane + 32 * t;
          if (d < dim) {
            dv_acc[t] += p * dout_tile[ii][d];
            dk_acc[t] += ds * q_tile[ii][d];
          }
        }
      }
    }
  }
  if (!active) return;
  T* dk_row = dk + (bkv * seq + j) * dim;
  T* dv_row = dv + (bkv * seq + j) * dim;
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    if (d < dim) {
      dk_row[d] = convert<T>(scale * dk_acc[t]);
      dv_row[d] = convert<T>(dv_acc[t]);
    }
  }
}

// Validates the sizes; returns the number of row tiles per (batch, head) and checks the
// flattened grid fits.
int64_t row_tiles(const char* op, int64_t batch, int64_t heads, int64_t hq, int64_t hkv,
                  int64_t seq, int64_t dim) {
  if (dim < 1 || dim > kAttentionMaxHeadDim || hkv < 1 || hq % hkv != 0 || batch < 0 || seq < 0) {
    throw std::invalid_argument(
        std::string(op) + ": unsupported sizes (batch " + std::to_string(batch) + ", hq " +
        std::to_string(hq) + ", hkv " + std::to_string(hkv) + ", seq " + std::to_string(seq) +
        ", head dim " + std::to_string(dim) +
        "; the head dim must be in "
        "[1, " +
        std::to_string(kAttentionMaxHeadDim) + "] and hq a multiple of hkv)");
  }
  const int64_t tiles = (seq + kRowsPerBlock - 1) / kRowsPerBlock;
  if (batch * heads * tiles > INT32_MAX) {
    throw std::invalid_argument(std::string(op) + ": too many blocks (batch " +
                                std::to_string(batch) + " x heads " + std::to_string(heads) +
                                " x row tiles " + std::to_string(tiles) + ")");
  }
  return tiles;
}

}  // namespace

void attention_forward(int dtype, void* out, void* lse, const void* q, const void* k, const void* v,
                       int64_t batch, int64_t hq, int64_t hkv, int64_t seq, int64_t dim,
                       double scale, bool causal, cudaStream_t stream) {
  const int64_t tiles = row_tiles("attention_forward", batch, hq, hq, hkv, seq, dim);
  if (batch * hq * seq == 0) return;
  if (tensor_core_attention_applies(dtype, dim)) {
    tensor_core_attention_forward(dtype, out, lse, q, k, v, batch, hq, hkv, seq, dim, scale, causal,
                                  contiguous_attention_layouts(hq, hkv, seq, dim), stream);
    return;
  }
  dispatch_float_code(dtype, "attention_forward", [&]<typename T>(TypeTag<T>) {
    using C = ComputeType<T>;
    const auto blocks = static_cast<unsigned>(batch * hq * tiles);
    attention_forward_kernel<T><<<blocks, kBlockThreads, 0, stream>>>(
        static_cast<T*>(out), static_cast<C*>(lse), static_cast<const T*>(q),
        static_cast<const T*>(k), static_cast<const T*>(v), hq, hkv, seq, static_cast<int>(dim),
        static_cast<C>(scale), causal, tiles);
    AUTOTP_CUDA_CHECK_LAUNCH("attention_forward_kernel", {"batch", batch}, {"hq", hq}, {"hkv", hkv},
                             {"seq", seq}, {"dim", dim}, {"dtype", dtype});
  });
}

void attention_backward(int dtype, void* dq, void* dk, void* dv, const void* q, const void* k,
                        const void* v, const void* out, const void* lse, const void* dout,
                        void* delta, int64_t batch, int64_t hq, int64_t hkv, int64_t seq,
                        int64_t dim, double scale, bool causal, cudaStream_t stream) {
  const int64_t query_tiles = row_tiles("attention_backward", batch, hq, hq, hkv, seq, dim);
  const int64_t key_tiles = row_tiles("attention_backward", batch, hkv, hq, hkv, seq, dim);
  if (batch * hq * seq == 0) return;
  if (tensor_core_attention_applies(dtype, dim)) {
    tensor_core_attention_backward(dtype, dq, dk, dv, q, k, v, out, lse, dout, delta, batch, hq,
                                   hkv, seq, dim, scale, causal,
                                   contiguous_attention_layouts(hq, hkv, seq, dim), stream);
    return;
  }
  dispatch_float_code(dtype, "attention_backward", [&]<typename T>(TypeTag<T>) {
    using C = ComputeType<T>;
    attention_dq_kernel<T>
        <<<static_cast<unsigned>(batch * hq * query_tiles), kBlockThreads, 0, stream>>>(
            static_cast<T*>(dq), static_cast<C*>(delta), static_cast<const T*>(q),
            static_cast<const T*>(k), static_cast<const T*>(v), static_cast<const C*>(lse),
            static_cast<const T*>(dout), hq, hkv, seq, static_cast<int>(dim), static_cast<C>(scale),
            causal, query_tiles);
    AUTOTP_CUDA_CHECK_LAUNCH("attention_dq_kernel", {"batch", batch}, {"hq", hq}, {"hkv", hkv},
                             {"seq", seq}, {"dim", dim}, {"dtype", dtype});
    attention_dkdv_kernel<T>
        <<<static_cast<unsigned>(batch * hkv * key_tiles), kBlockThreads, 0, stream>>>(
            static_cast<T*>(dk), static_cast<T*>(dv), static_cast<const T*>(q),
            static_cast<const T*>(k), static_cast<const T*>(v), static_cast<const C*>(lse),
            static_cast<const C*>(delta), static_cast<const T*>(dout), hq, hkv, seq,
            static_cast<int>(dim), static_cast<C>(scale), causal, key_tiles);
    AUTOTP_CUDA_CHECK_LAUNCH("attention_dkdv_kernel", {"batch", batch}, {"hq", hq}, {"hkv", hkv},
                             {"seq", seq}, {"dim", dim}, {"dtype", dtype});
  });
}

}  // namespace autotp::kernels::cuda
