// Device side of the tensor-core attention: the lane context over mma.sync, ldmatrix, cp.async
// and warp shuffles, one __global__ wrapper per block body, and the launches (dynamic shared
// memory opted in above 48 KiB where a head dim needs it).
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_core_attention.h"
#include "kernels/stored_score_pieces.h"
#include "kernels/tensor_core_attention.h"

#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

namespace autotp::kernels::cuda {

namespace {

namespace tc = ::autotp::tc_attention;

// The lane context of kernels/tensor_core_attention.h for 16-bit element type E (bf16 or f16).
template <typename E>
struct DeviceLanes {
  __device__ __forceinline__ int thread() const { return static_cast<int>(threadIdx.x); }
  __device__ __forceinline__ int warp() const { return static_cast<int>(threadIdx.x >> 5); }
  __device__ __forceinline__ int lane() const { return static_cast<int>(threadIdx.x & 31); }
  __device__ __forceinline__ void sync_block() const { __syncthreads(); }
  __device__ __forceinline__ float shfl_xor(float v, int mask) const {
    return __shfl_xor_sync(0xffffffffu, v, mask);
  }
  // One MUFU.EX2 (exp2f adds a denormal rescue around it: three more instructions per score in
  // loops that are issue-bound). Results below 2^-126 flush to zero, -inf gives +0.
  __device__ __forceinline__ float exp2(float x) const {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
  }
  __device__ __forceinline__ float log2(float x) const { return log2f(x); }
  __device__ __forceinline__ float fma(float a, float b, float c) const {
    return __fmaf_rn(a, b, c);
  }
  __device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* row) const {
    const auto address = static_cast<unsigned>(__cvta_generic_to_shared(row));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
  }
  __device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const uint16_t* row) const {
    const auto address = static_cast<unsigned>(__cvta_generic_to_shared(row));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
  }
  __device__ __forceinline__ uint32_t load_u32(const uint16_t* p) const {
    return *reinterpret_cast<const uint32_t*>(p);
  }
  __device__ __forceinline__ void store_u32(uint16_t* p, uint32_t v) const {
    *reinterpret_cast<uint32_t*>(p) = v;
  }
  __device__ __forceinline__ void copy16_async(uint16_t* dst, const uint16_t* src) const {
    const auto address = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(address), "l"(src));
  }
  __device__ __forceinline__ void copy4_async(float* dst, const float* src) const {
    const auto address = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(address), "l"(src));
  }
  __device__ __forceinline__ void wait_async() const {
    asm volatile("cp.async.wait_all;\n" ::: "memory");
  }
  __device__ __forceinline__ void zero16(uint16_t* dst) const {
    *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
  }
  __device__ __forceinline__ float to_float(uint16_t bits) const {
    if constexpr (std::is_same_v<E, bf16>) {
      return __uint_as_float(static_cast<uint32_t>(bits) << 16);
    } else {
      return __half2float(__ushort_as_half(bits));
    }
  }
  __device__ __forceinline__ uint32_t pack(float lo, float hi) const {
    if constexpr (std::is_same_v<E, bf16>) {
      return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
             (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
    } else {
      return static_cast<uint32_t>(__half_as_ushort(__float2half_rn(lo))) |
             (static_cast<uint32_t>(__half_as_ushort(__float2half_rn(hi))) << 16);
    }
  }
  __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4],
                                      const uint32_t (&b)[2]) const {
    if constexpr (std::is_same_v<E, bf16>) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
          "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
          "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
  }
};

// Blocks per SM the dk/dv kernel's register budget is fitted to (__launch_bounds__' second
// argument): at D <= 64 the compiler's own allocation (170 registers at D = 64) lands just
// above three blocks' worth (168 = 65536 / (3 x 128)), leaving two blocks (8 warps) per SM;
// asking for three costs one 8-byte spill outside the loops (ptxas -v). The dq (130) and
// forward (150) kernels already fit three; four would spill in their loops.
template <int D>
constexpr int kMinBlocksDkdv = D <= 64 ? 3 : 1;

template <int D, typename E, int M>
__global__ void __launch_bounds__(tc::kThreads)
    tc_attention_forward_kernel(uint16_t* out, float* lse, const uint16_t* q, const uint16_t* k,
                                const uint16_t* v, tc::Problem p) {
  extern __shared__ __align__(16) unsigned char shared[];
  DeviceLanes<E> ctx;
  tc::forward_block<D, M>(ctx, blockIdx.x, shared, out, lse, q, k, v, p);
}

template <int D, typename E, int M>
__global__ void __launch_bounds__(tc::kThreads)
    tc_attention_dq_kernel(uint16_t* dq, float* delta, const uint16_t* q, const uint16_t* k,
                           const uint16_t* v, const uint16_t* out, const uint16_t* dout,
                           const float* lse, tc::Problem p) {
  extern __shared__ __align__(16) unsigned char shared[];
  DeviceLanes<E> ctx;
  tc::dq_block<D, M>(ctx, blockIdx.x, shared, dq, delta, q, k, v, out, dout, lse, p);
}

// With the K/V fragments kept in registers (kKv) the kernel needs D / 2 more registers per
// lane: two blocks per SM, up to 255 registers. kStore: it also writes the dS tiles to `scores`.
template <int D, typename E, bool kKv, bool kStore>
__global__ void __launch_bounds__(tc::kThreads, kKv ? 2 : kMinBlocksDkdv<D>)
    tc_attention_dkdv_kernel(uint16_t* dk, uint16_t* dv, const uint16_t* q, const uint16_t* k,
                             const uint16_t* v, const uint16_t* dout, const float* lse,
                             const float* delta, tc::Problem p, uint16_t* scores) {
  extern __shared__ __align__(16) unsigned char shared[];
  DeviceLanes<E> ctx;
  tc::dkdv_block<D, kKv, kStore>(ctx, blockIdx.x, shared, dk, dv, q, k, v, dout, lse, delta, p,
                                 scores);
}

template <int D, typename E>
__global__ void __launch_bounds__(tc::kThreads)
    tc_attention_delta_kernel(float* delta, const uint16_t* out, const uint16_t* dout,
                              tc::Problem p) {
  DeviceLanes<E> ctx;
  tc::delta_block<D>(ctx, blockIdx.x, delta, out, dout, p);
}

template <int D, typename E>
__global__ void __launch_bounds__(tc::kThreads)
    tc_attention_dq_from_scores_kernel(uint16_t* dq, const uint16_t* k, const uint16_t* scores,
                                       tc::Problem p) {
  extern __shared__ __align__(16) unsigned char shared[];
  DeviceLanes<E> ctx;
  tc::dq_from_scores_block<D>(ctx, blockIdx.x, shared, dq, k, scores, p);
}

// Calls fn(std::integral_constant<int, D>{}, TypeTag<E>{}) for the head dim and 16-bit type.
template <typename Fn>
void dispatch_tc(int dtype, int64_t dim, const char* op, Fn&& fn) {
  auto with_dim = [&]<typename E>(TypeTag<E> tag) {
    switch (dim) {
      case 32:
        return fn(std::integral_constant<int, 32>{}, tag);
      case 64:
        return fn(std::integral_constant<int, 64>{}, tag);
      case 96:
        return fn(std::integral_constant<int, 96>{}, tag);
      case 128:
        return fn(std::integral_constant<int, 128>{}, tag);
      default:
        throw std::invalid_argument(std::string(op) + ": head dim " + std::to_string(dim) +
                                    " has no tensor-core kernel (32, 64, 96 or 128)");
    }
  };
  switch (static_cast<DTypeCode>(dtype)) {
    case DTypeCode::BF16:
      return with_dim(TypeTag<bf16>{});
    case DTypeCode::F16:
      return with_dim(TypeTag<f16>{});
    default:
      throw_unsupported_dtype(op, dtype, "bf16 or f16");
  }
}

// Launch size of a grid of `rows`-row tiles, checked against the grid's limit.
unsigned tc_blocks(const char* op, int64_t heads, int64_t seq, int64_t rows = tc::kBlockRows) {
  const int64_t blocks = heads * tc::row_tiles(seq, rows);
  if (blocks > INT32_MAX) {
    throw std::invalid_argument(std::string(op) + ": too many blocks (" + std::to_string(heads) +
                                " heads x " + std::to_string(tc::row_tiles(seq, rows)) +
                                " row tiles)");
  }
  return static_cast<unsigned>(blocks);
}

// Kernels above the default 48 KiB of dynamic shared memory must opt in (once per kernel).
template <typename Kernel>
void allow_shared_bytes(Kernel kernel, int bytes) {
  if (bytes > 48 * 1024) {
    AUTOTP_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  }
}

// The kernels move 16 bytes at a time (and 4 for fragments): every matrix must start on a
// 16-byte boundary, and with strides in multiples of 8 elements (below) so does every row.
void check_aligned(const char* op,
                   std::initializer_list<std::pair<const char*, const void*>> ptrs) {
  for (const auto& [name, ptr] : ptrs) {
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) {
      throw std::invalid_argument(std::string(op) + ": " + name +
                                  " does not start on a 16-byte boundary (the tensor-core "
                                  "kernels need aligned, contiguous matrices)");
    }
  }
}

void check_strides(const char* op,
                   std::initializer_list<std::pair<const char*, HeadStrides>> operands) {
  for (const auto& [name, s] : operands) {
    if (s.batch % 8 != 0 || s.head % 8 != 0 || s.row % 8 != 0 || s.row <= 0) {
      throw std::invalid_argument(
          std::string(op) + ": " + name + " has strides (batch " + std::to_string(s.batch) +
          ", head " + std::to_string(s.head) + ", row " + std::to_string(s.row) +
          "); the tensor-core kernels need positive row strides and every stride a multiple of "
          "8 elements (16 bytes)");
    }
  }
}

// The block bodies keep row positions and the dk/dv kernel's step count in 32 bits.
void check_fits_32_bits(const char* op, int64_t seq, int64_t hq, int64_t hkv) {
  const int64_t steps = (hq / hkv) * tc::row_tiles(seq, tc::kDkdvQueries);
  if (seq > (int64_t{1} << 30) || steps > INT32_MAX) {
    throw std::invalid_argument(std::string(op) + ": sequence length " + std::to_string(seq) +
                                " with " + std::to_string(hq / hkv) +
                                " query heads per kv head is beyond the tensor-core kernels' "
                                "32-bit positions");
  }
}

// Two 16-row tiles per warp are built for head dims up to 64 (their accumulators spill above,
// ptxas -v; at 64 the forward does not, the dq kernel does, 20 bytes at 255 registers); one
// tile for every head dim.
void check_row_tiles_per_warp(const char* op, int tiles, int64_t dim) {
  if (tiles == 1 || (tiles == 2 && dim <= 64)) return;
  throw std::invalid_argument(std::string(op) + ": " + std::to_string(tiles) +
                              " row tiles per warp are not built for head dim " +
                              std::to_string(dim) + " (1 always, 2 up to head dim 64)");
}

}  // namespace

bool tensor_core_attention_applies(int dtype, int64_t dim) {
  const auto code = static_cast<DTypeCode>(dtype);
  return (code == DTypeCode::BF16 || code == DTypeCode::F16) && tc::supports_head_dim(dim);
}

void tensor_core_attention_forward(int dtype, void* out, void* lse, const void* q, const void* k,
                                   const void* v, int64_t batch, int64_t hq, int64_t hkv,
                                   int64_t seq, int64_t dim, double scale, bool causal,
                                   const AttentionLayouts& layouts, cudaStream_t stream,
                                   int row_tiles_per_warp, bool longest_first) {
  check_row_tiles_per_warp("attention_forward", row_tiles_per_warp, dim);
  if (!(scale > 0.0)) {  // the forward scales the running maximum: its order must be kept
    throw std::invalid_argument(
        "attention_forward: the tensor-core kernels need a positive "
        "scale, got " +
        std::to_string(scale));
  }
  if (batch * hq * seq == 0) return;
  check_fits_32_bits("attention_forward", seq, hq, hkv);
  tc::Problem p{batch, hq, hkv, seq, static_cast<float>(scale), causal, layouts};
  p.longest_first = longest_first;
  check_aligned("attention_forward", {{"out", out}, {"q", q}, {"k", k}, {"v", v}});
  check_strides("attention_forward",
                {{"out", layouts.out}, {"q", layouts.q}, {"k", layouts.k}, {"v", layouts.v}});
  dispatch_tc(dtype, dim, "attention_forward",
              [&]<int D, typename E>(std::integral_constant<int, D>, TypeTag<E>) {
                const auto launch = [&]<int M>() {
                  constexpr int bytes = tc::forward_shared_bytes<D>();
                  const unsigned blocks =
                      tc_blocks("attention_forward", batch * hq, seq, tc::forward_block_rows<M>());
                  allow_shared_bytes(tc_attention_forward_kernel<D, E, M>, bytes);
                  tc_attention_forward_kernel<D, E, M><<<blocks, tc::kThreads, bytes, stream>>>(
                      static_cast<uint16_t*>(out), static_cast<float*>(lse),
                      static_cast<const uint16_t*>(q), static_cast<const uint16_t*>(k),
                      static_cast<const uint16_t*>(v), p);
                  AUTOTP_CUDA_CHECK_LAUNCH("tc_attention_forward_kernel", {"batch", batch},
                                           {"hq", hq}, {"hkv", hkv}, {"seq", seq}, {"dim", dim},
                                           {"dtype", dtype}, {"row_tiles_per_warp", M});
                };
                if (row_tiles_per_warp == 1) {
                  launch.template operator()<1>();
                } else if constexpr (D <= 64) {
                  launch.template operator()<2>();
                }
              });
}

void tensor_core_attention_backward(int dtype, void* dq, void* dk, void* dv, const void* q,
                                    const void* k, const void* v, const void* out, const void* lse,
                                    const void* dout, void* delta, int64_t batch, int64_t hq,
                                    int64_t hkv, int64_t seq, int64_t dim, double scale,
                                    bool causal, const AttentionLayouts& layouts,
                                    cudaStream_t stream, const TensorCoreBackwardOptions& options) {
  check_row_tiles_per_warp("attention_backward", options.dq_row_tiles_per_warp, dim);
  if (options.dkdv_kv_in_registers && dim > 64) {
    throw std::invalid_argument(
        "attention_backward: the dk/dv kernel keeps K/V fragments in registers only up to head "
        "dim 64 (above, they would not fit), got " +
        std::to_string(dim));
  }
  const bool stored = options.stored_scores != nullptr;
  if (stored && options.dkdv_kv_in_registers) {
    throw std::invalid_argument(
        "attention_backward: the stored-score backward has no dk/dv kernel with K/V fragments "
        "in registers (choose one of the two)");
  }
  if (batch * hq * seq == 0) return;
  check_fits_32_bits("attention_backward", seq, hq, hkv);
  // The dk/dv kernel offsets its stored tiles within a kv head's group in 32 bits.
  if (stored && (hq / hkv) * tc::score_tiles_per_head(seq, causal) > INT32_MAX) {
    throw std::invalid_argument(
        "attention_backward: sequence length " + std::to_string(seq) + " with " +
        std::to_string(hq / hkv) +
        " query heads per kv head has too many stored score tiles for the stored-score backward");
  }
  tc::Problem p{batch, hq, hkv, seq, static_cast<float>(scale), causal, layouts};
  p.longest_first = options.longest_first;
  const unsigned key_blocks = tc_blocks("attention_backward", batch * hkv, seq);
  check_aligned("attention_backward", {{"dq", dq},
                                       {"dk", dk},
                                       {"dv", dv},
                                       {"q", q},
                                       {"k", k},
                                       {"v", v},
                                       {"out", out},
                                       {"dout", dout},
                                       {"stored scores", options.stored_scores}});
  check_strides("attention_backward", {{"dq", layouts.dq},
                                       {"dk", layouts.dk},
                                       {"dv", layouts.dv},
                                       {"q", layouts.q},
                                       {"k", layouts.k},
                                       {"v", layouts.v},
                                       {"out", layouts.out},
                                       {"dout", layouts.dout}});
  if (stored) {
    // A buffer smaller than the whole problem's dS: the problem runs in pieces that fit it.
    const std::vector<StoredScorePiece> pieces =
        stored_score_pieces(batch, hq, hkv, seq, causal, options.stored_scores_elements);
    const int64_t needed = stored_score_buffer_elements(pieces, hq, hkv, seq, causal);
    if (needed > options.stored_scores_elements) {
      throw std::invalid_argument("attention_backward: the stored-score buffer holds " +
                                  std::to_string(options.stored_scores_elements) +
                                  " elements; one kv head's dS needs " + std::to_string(needed) +
                                  " (sequence " + std::to_string(seq) + ", " +
                                  std::to_string(hq / hkv) + " query heads per kv head)");
    }
    if (pieces.size() > 1) {
      const int64_t group = hq / hkv;
      for (const StoredScorePiece& piece : pieces) {
        const int64_t query_head = piece.first_kv_head * group, kv_head = piece.first_kv_head;
        const auto at = [&](const void* base, const HeadStrides& s, int64_t head) {
          return const_cast<uint16_t*>(static_cast<const uint16_t*>(base)) +
                 piece.first_batch * s.batch + head * s.head;
        };
        const int64_t stats = (piece.first_batch * hq + query_head) * seq;  // [batch, hq, seq]
        tensor_core_attention_backward(
            dtype, at(dq, layouts.dq, query_head), at(dk, layouts.dk, kv_head),
            at(dv, layouts.dv, kv_head), at(q, layouts.q, query_head), at(k, layouts.k, kv_head),
            at(v, layouts.v, kv_head), at(out, layouts.out, query_head),
            static_cast<const float*>(lse) + stats, at(dout, layouts.dout, query_head),
            static_cast<float*>(delta) + stats, piece.batches, piece.kv_heads * group,
            piece.kv_heads, seq, dim, scale, causal, layouts, stream, options);
      }
      return;
    }
  }
  const auto* q16 = static_cast<const uint16_t*>(q);
  const auto* k16 = static_cast<const uint16_t*>(k);
  const auto* v16 = static_cast<const uint16_t*>(v);
  const auto* out16 = static_cast<const uint16_t*>(out);
  const auto* dout16 = static_cast<const uint16_t*>(dout);
  auto* scores16 = static_cast<uint16_t*>(options.stored_scores);
  dispatch_tc(
      dtype, dim, "attention_backward",
      [&]<int D, typename E>(std::integral_constant<int, D>, TypeTag<E>) {
        const auto launch_dkdv = [&]<bool kKv, bool kStore>() {
          constexpr int dkdv_bytes = tc::dkdv_shared_bytes<D>();
          allow_shared_bytes(tc_attention_dkdv_kernel<D, E, kKv, kStore>, dkdv_bytes);
          tc_attention_dkdv_kernel<D, E, kKv, kStore>
              <<<key_blocks, tc::kThreads, dkdv_bytes, stream>>>(
                  static_cast<uint16_t*>(dk), static_cast<uint16_t*>(dv), q16, k16, v16, dout16,
                  static_cast<const float*>(lse), static_cast<const float*>(delta), p, scores16);
          AUTOTP_CUDA_CHECK_LAUNCH("tc_attention_dkdv_kernel", {"batch", batch}, {"hq", hq},
                                   {"hkv", hkv}, {"seq", seq}, {"dim", dim}, {"dtype", dtype},
                                   {"kv_in_registers", kKv}, {"stores_scores", kStore});
        };
        if (stored) {
          // delta, then dk/dv writing dS, then dq reading it back.
          const unsigned query_blocks = tc_blocks("attention_backward", batch * hq, seq);
          tc_attention_delta_kernel<D, E><<<query_blocks, tc::kThreads, 0, stream>>>(
              static_cast<float*>(delta), out16, dout16, p);
          AUTOTP_CUDA_CHECK_LAUNCH("tc_attention_delta_kernel", {"batch", batch}, {"hq", hq},
                                   {"seq", seq}, {"dim", dim}, {"dtype", dtype});
          launch_dkdv.template operator()<false, true>();
          constexpr int dq_bytes = tc::dq_from_scores_shared_bytes<D>();
          allow_shared_bytes(tc_attention_dq_from_scores_kernel<D, E>, dq_bytes);
          tc_attention_dq_from_scores_kernel<D, E>
              <<<query_blocks, tc::kThreads, dq_bytes, stream>>>(static_cast<uint16_t*>(dq), k16,
                                                                 scores16, p);
          AUTOTP_CUDA_CHECK_LAUNCH("tc_attention_dq_from_scores_kernel", {"batch", batch},
                                   {"hq", hq}, {"hkv", hkv}, {"seq", seq}, {"dim", dim},
                                   {"dtype", dtype});
          return;
        }
        const auto launch_dq = [&]<int M>() {
          constexpr int dq_bytes = tc::dq_shared_bytes<D>();
          const unsigned query_blocks =
              tc_blocks("attention_backward", batch * hq, seq, tc::forward_block_rows<M>());
          allow_shared_bytes(tc_attention_dq_kernel<D, E, M>, dq_bytes);
          tc_attention_dq_kernel<D, E, M><<<query_blocks, tc::kThreads, dq_bytes, stream>>>(
              static_cast<uint16_t*>(dq), static_cast<float*>(delta), q16, k16, v16, out16, dout16,
              static_cast<const float*>(lse), p);
          AUTOTP_CUDA_CHECK_LAUNCH("tc_attention_dq_kernel", {"batch", batch}, {"hq", hq},
                                   {"hkv", hkv}, {"seq", seq}, {"dim", dim}, {"dtype", dtype},
                                   {"row_tiles_per_warp", M});
        };
        if (options.dq_row_tiles_per_warp == 1) {
          launch_dq.template operator()<1>();
        } else if constexpr (D <= 64) {
          launch_dq.template operator()<2>();
        }
        if (!options.dkdv_kv_in_registers) {
          launch_dkdv.template operator()<false, false>();
        } else if constexpr (D <= 64) {
          launch_dkdv.template operator()<true, false>();
        }
      });
}

}  // namespace autotp::kernels::cuda
