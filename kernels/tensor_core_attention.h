// Flash-style causal/non-causal attention with grouped-query heads on tensor cores (bf16/f16
// in, f32 accumulate): the per-block bodies of the forward, dq and dk/dv kernels, written
// against a lane context so the same code runs on the GPU and in a CPU emulation of a block.
//
// A context `Ctx` (kernels/cuda/tensor_core_attention.cu has the device one, the tests an
// emulated one) provides, for the calling lane of a 128-thread block:
//   int thread(), warp(), lane()           position in the block
//   void sync_block()                      __syncthreads
//   float shfl_xor(float, int mask)        within the warp (every lane calls it)
//   void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2])
//                                          c += A B, PTX mma.m16n8k16.row.col, f32 accumulate
//   float to_float(uint16_t), uint32_t pack(float lo, float hi)   the 16-bit element format
//   void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* row), ldmatrix_x4_trans(...)
//                                          PTX ldmatrix.m8n8.x4(.trans) from shared memory
//   uint32_t load_u32(const uint16_t*), void store_u32(uint16_t*, uint32_t)
//   void copy16_async(uint16_t* dst, const uint16_t* src)   8 elements global -> shared, async
//   void copy4_async(float* dst, const float* src)          one f32 global -> shared, async
//   void wait_async()                      this lane's async copies have landed (cp.async)
//   void zero16(uint16_t* dst)             8 zero elements into shared memory
//   float exp2(float), float log2(float)
//   float fma(float a, float b, float c)   a b + c rounded once (the exponents and delta sums are
//                                          written as explicit fmas so that every kernel, and the
//                                          emulation, rounds them alike whatever a compiler fuses)
//
// Fragments (PTX "row.col" m16n8k16), g = lane / 4, t = lane % 4, pairs are (low, high) halves:
//   A 16x16: a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..)
//   B 16x8 (k x n): b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8..2t+9, n g)
//   C 16x8: c[0], c[1] = (g, 2t), (g, 2t+1); c[2], c[3] = (g+8, 2t), (g+8, 2t+1)
// Two adjacent C tiles of a 16-row product are, once packed to 16 bits, the A fragment of the
// next product over those 16 columns: probabilities never leave registers.
//
// Operands as kernels/cuda/attention.h: q, out, dout, dq [batch, hq, seq, D]; k, v, dk, dv
// [batch, hkv, seq, D], each at the strides Problem::layout gives (kernels/attention_layout.h:
// D contiguous; every stride a multiple of 8 elements and every operand on a 16-byte boundary,
// for the 16-byte copies); lse, delta contiguous [batch, hq, seq] in f32; query head h reads kv
// head h / (hq / hkv). Scores are scale * q . k; lse is in natural-log units. Deterministic: every
// sum runs in a fixed order and nothing is accumulated with atomics.
//
// Two backwards with identical results: dq_block recomputes S and dP for dq (three products per
// tile, beside dk/dv's four), or dkdv_block<..., kStoreScores> writes the 16-bit dS tiles it
// computes and dq_from_scores_block multiplies them by K (one product; delta_block supplies
// delta first). The second trades two products for a write and a read of B Hq S^2 / 2 16-bit
// values (causal).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/attention_layout.h"

#if defined(__CUDACC__)
#define AUTOTP_LANE_FN __device__ __forceinline__
#define AUTOTP_UNROLL _Pragma("unroll")
#else
#define AUTOTP_LANE_FN inline
#define AUTOTP_UNROLL
#endif

namespace autotp::tc_attention {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
// Query rows (forward, dq) or key rows (dk/dv) a block owns, 16 per warp.
constexpr int kBlockRows = 16 * kWarps;
constexpr int kForwardKeys = 64;  // keys per shared-memory tile in the forward
constexpr int kDqKeys = 32;       // keys per tile in the dq kernel (fewer live registers)
constexpr int kDkdvQueries = 32;  // queries per tile in the dk/dv kernel
constexpr int kPad = 8;  // elements added to each shared row: fragment loads hit distinct banks
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Head dims the tensor-core kernels are instantiated for (multiples of 32: the products take
// two 16-wide k-steps per shared-memory load).
inline constexpr bool supports_head_dim(int64_t dim) {
  return dim == 32 || dim == 64 || dim == 96 || dim == 128;
}

template <int D>
constexpr int row_stride() {
  return D + kPad;
}

// Row tiles of `rows` (kBlockRows unless given) per (batch, head): blocks are heads x tiles,
// flattened.
inline constexpr int64_t row_tiles(int64_t seq, int64_t rows = kBlockRows) {
  return (seq + rows - 1) / rows;
}

// Query rows of a forward block whose warps each own M row tiles of 16: with M = 2 every K/V
// fragment loaded from shared memory feeds two products instead of one (FlashAttention-2's
// 128-row blocks), at the price of twice the accumulator registers.
template <int M>
constexpr int forward_block_rows() {
  return 16 * kWarps * M;
}

// Tiles streamed over a loop are double-buffered: the next one loads (cp.async) while the
// warps compute on the current one.
template <int D>
constexpr int forward_shared_bytes() {
  return 2 * (2 * kForwardKeys * row_stride<D>()) * 2;  // two buffers of a k and a v tile
}
template <int D>
constexpr int dq_shared_bytes() {
  return 2 * (2 * kDqKeys * row_stride<D>()) * 2;
}
// dk/dv: the block's k and v rows, then two buffers of (a q and a dout tile, their lse and
// delta as f32).
template <int D>
constexpr int dkdv_query_tile_bytes() {
  return 2 * kDkdvQueries * row_stride<D>() * 2 + 2 * kDkdvQueries * 4;
}
template <int D>
constexpr int dkdv_shared_bytes() {
  return 2 * kBlockRows * row_stride<D>() * 2 + 2 * dkdv_query_tile_bytes<D>();
}

// Stored scores (the backward that reads dS back instead of recomputing it for dq): the dk/dv
// kernel writes every dS tile it computes, kBlockRows keys x kBlockRows queries stored key-major
// ([key][query], 16-bit values: the rounding dq's product applies anyway), and the dq kernel
// reads them back: no second pass of S = Q K^T and dP = dO V^T. One tile per (batch, query head,
// query tile i, key tile j) that the mask leaves visible: j <= i under a causal mask (tile
// i (i + 1) / 2 + j of the head), every pair otherwise (i T + j).
constexpr int kScoreTileElements = kBlockRows * kBlockRows;
inline constexpr int64_t score_tiles_per_head(int64_t seq, bool causal) {
  const int64_t tiles = row_tiles(seq);
  return causal ? tiles * (tiles + 1) / 2 : tiles * tiles;
}
AUTOTP_LANE_FN int64_t score_tile_index(int64_t i, int64_t j, int64_t tiles, bool causal) {
  return causal ? i * (i + 1) / 2 + j : i * tiles + j;
}
// 16-bit elements of the stored scores of a problem: batch x hq x score_tiles_per_head tiles.
inline constexpr int64_t stored_score_elements(int64_t batch, int64_t hq, int64_t seq,
                                               bool causal) {
  return batch * hq * score_tiles_per_head(seq, causal) * kScoreTileElements;
}
// dq from stored scores: two buffers of (a k tile, a score tile).
template <int D>
constexpr int dq_from_scores_shared_bytes() {
  return 2 * (kBlockRows * row_stride<D>() + kBlockRows * row_stride<kBlockRows>()) * 2;
}

struct Problem {
  int64_t batch, hq, hkv, seq;
  float scale;
  bool causal;
  kernels::AttentionLayouts layout;
  // Block order of the grids (see grid_cell): longest blocks first across all heads (tile-major),
  // or each head's tiles together. Identical results; only the schedule differs.
  bool longest_first = true;
};

// A problem whose operands are contiguous [batch, heads, seq, D] tensors.
inline Problem contiguous_problem(int64_t batch, int64_t hq, int64_t hkv, int64_t seq, int64_t dim,
                                  float scale, bool causal) {
  return {
      batch, hq, hkv, seq, scale, causal, kernels::contiguous_attention_layouts(hq, hkv, seq, dim)};
}

namespace detail {

// The (head, tile) a block of a heads x tiles grid computes. Blocks start in index order, and
// under a causal mask a block's work grows with its row tile's distance from the end (forward,
// dq: tile `tiles - 1 - tile` has the most keys) or from the start (dk/dv: key tile 0 sees the
// most queries), so tile index 0 is the longest. Longest first (tile-major: every head's tile 0,
// then every head's tile 1, ...) leaves the shortest blocks for the last wave; by head (each
// head's tiles together, longest first within the head) leaves the last heads' longest blocks
// running on a few SMs at the end. A scheduling model of the Llama-3.2-1B dk/dv grid (1024
// blocks, 3 per SM on 132 SMs, a lone block running at 55 % of an SM) puts the by-head
// makespan 31 % above the ideal and the longest-first one 13 % (dq: 7 % and 1 %).
// In 32 bits (the launchers check that the grid fits): a 64-bit division is a long software
// sequence whose registers the dk/dv kernel does not have to spare.
struct GridCell {
  int64_t head, tile;
};
AUTOTP_LANE_FN GridCell grid_cell(int64_t block, int64_t heads, int64_t tiles, bool longest_first) {
  const auto b = static_cast<uint32_t>(block);
  const auto n = static_cast<uint32_t>(longest_first ? heads : tiles);
  const uint32_t major = b / n, minor = b - major * n;
  if (longest_first) return {minor, major};
  return {major, minor};
}

// fmaxf: one FMNMX on the GPU (a compare-and-select is two instructions). A NaN score is
// skipped by the maximum but still reaches the output through its own exponent.
AUTOTP_LANE_FN float max_of(float a, float b) {
  return fmaxf(a, b);
}

// Starts loading rows [first, first + kRows) of a [seq, D] matrix (rows `matrix_stride` elements
// apart) into a shared tile (zeros past seq); visible to the block after wait_async() and
// sync_block(). Copy e (16 bytes) is row e / (D / 8), piece e % (D / 8), and thread x makes
// copies x, x + kThreads, ...: where kThreads is a multiple of D / 8 those are one column piece
// of every (kThreads / (D / 8))-th row, so each is one constant step from the previous one (the
// loops that stage a tile per iteration are issue-bound: no 64-bit multiply per copy).
template <int D, int kRows, class Ctx>
AUTOTP_LANE_FN void stage_rows(Ctx& ctx, uint16_t* tile, const uint16_t* matrix,
                               int64_t matrix_stride, int64_t first, int64_t seq) {
  constexpr int kChunks = D / 8;
  if constexpr (kThreads % kChunks == 0) {
    constexpr int kRowStep = kThreads / kChunks;
    static_assert(kRows % kRowStep == 0, "a tile's rows split evenly over the passes");
    const int r0 = ctx.thread() / kChunks, c = ctx.thread() - r0 * kChunks;
    uint16_t* const dst = tile + r0 * row_stride<D>() + 8 * c;
    if (first + kRows <= seq) {  // uniform over the block: every row is in
      const uint16_t* src = matrix + (first + r0) * matrix_stride + 8 * c;
      const int64_t src_step = kRowStep * matrix_stride;
      AUTOTP_UNROLL
      for (int j = 0; j < kRows / kRowStep; ++j, src += src_step)
        ctx.copy16_async(dst + j * kRowStep * row_stride<D>(), src);
    } else {
      AUTOTP_UNROLL
      for (int j = 0; j < kRows / kRowStep; ++j) {
        const int64_t row = first + r0 + j * kRowStep;
        if (row < seq) {
          ctx.copy16_async(dst + j * kRowStep * row_stride<D>(),
                           matrix + row * matrix_stride + 8 * c);
        } else {
          ctx.zero16(dst + j * kRowStep * row_stride<D>());
        }
      }
    }
  } else {
    for (int e = ctx.thread(); e < kRows * kChunks; e += kThreads) {
      const int r = e / kChunks, c = e - r * kChunks;
      uint16_t* dst = tile + r * row_stride<D>() + c * 8;
      if (first + r < seq) {
        ctx.copy16_async(dst, matrix + (first + r) * matrix_stride + c * 8);
      } else {
        ctx.zero16(dst);
      }
    }
  }
}

// Shared-memory fragments come from ldmatrix.x4: lane l names row l % 8 of 8x8 matrix l / 8
// and receives (row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1) of each matrix (transposed:
// (rows 2 (l % 4) and 2 (l % 4) + 1, column l / 4)). With rows of 16-byte multiples every row
// address is 16-byte aligned, and the padded stride puts the 8 rows in distinct banks.

// A = M[row0 .. row0+16) x [col0 .. col0+16) of a row-major shared tile with `stride`.
template <class Ctx>
AUTOTP_LANE_FN void load_a(Ctx& ctx, uint32_t (&a)[4], const uint16_t* m, int stride, int row0,
                           int col0) {
  const int i = ctx.lane() >> 3, r = ctx.lane() & 7;  // matrices: rows +0/+8, then cols +8
  ctx.ldmatrix_x4(a, m + (row0 + r + 8 * (i & 1)) * stride + col0 + 8 * (i >> 1));
}

// A = the transpose of M[col0 .. col0+16) x [row0 .. row0+16) of a row-major shared tile: A's
// rows are M's columns (dS from a key-major stored tile: A rows are queries, columns keys).
template <class Ctx>
AUTOTP_LANE_FN void load_a_transposed(Ctx& ctx, uint32_t (&a)[4], const uint16_t* m, int stride,
                                      int row0, int col0) {
  const int i = ctx.lane() >> 3, r = ctx.lane() & 7;  // matrices: A rows +0/+8, then A cols +8
  ctx.ldmatrix_x4_trans(a, m + (col0 + r + 8 * (i >> 1)) * stride + row0 + 8 * (i & 1));
}

// The same from a [seq, D] matrix in global memory (rows `matrix_stride` elements apart); rows at
// or past seq read as zeros.
template <class Ctx>
AUTOTP_LANE_FN void load_a_rows(Ctx& ctx, uint32_t (&a)[4], const uint16_t* m,
                                int64_t matrix_stride, int64_t seq, int64_t row0, int col0) {
  const int g = ctx.lane() >> 2, t = ctx.lane() & 3;
  const int64_t r0 = row0 + g, r1 = r0 + 8;
  const int64_t col = col0 + 2 * t;
  a[0] = r0 < seq ? ctx.load_u32(m + r0 * matrix_stride + col) : 0u;
  a[1] = r1 < seq ? ctx.load_u32(m + r1 * matrix_stride + col) : 0u;
  a[2] = r0 < seq ? ctx.load_u32(m + r0 * matrix_stride + col + 8) : 0u;
  a[3] = r1 < seq ? ctx.load_u32(m + r1 * matrix_stride + col + 8) : 0u;
}

// B[k][n] = M[n0 + n][k0 + k] (the transpose of rows of a row-major shared tile, as k in
// q k^T) for two k-steps: `first` over k0 .. k0+16, `second` over k0+16 .. k0+32.
template <class Ctx>
AUTOTP_LANE_FN void load_b_transposed_pair(Ctx& ctx, uint32_t (&first)[2], uint32_t (&second)[2],
                                           const uint16_t* m, int stride, int n0, int k0) {
  const int i = ctx.lane() >> 3, r = ctx.lane() & 7;  // matrices: columns k0 + 8 i
  uint32_t x[4];
  ctx.ldmatrix_x4(x, m + (n0 + r) * stride + k0 + 8 * i);
  first[0] = x[0];
  first[1] = x[1];
  second[0] = x[2];
  second[1] = x[3];
}

// B[k][n] = M[k0 + k][n0 + n] (rows of a row-major shared tile as they are, as v in p v) for
// two n-tiles: `first` over n0 .. n0+8, `second` over n0+8 .. n0+16.
template <class Ctx>
AUTOTP_LANE_FN void load_b_pair(Ctx& ctx, uint32_t (&first)[2], uint32_t (&second)[2],
                                const uint16_t* m, int stride, int k0, int n0) {
  const int i = ctx.lane() >> 3, r = ctx.lane() & 7;  // matrices: rows +0/+8, then cols +8
  uint32_t x[4];
  ctx.ldmatrix_x4_trans(x, m + (k0 + r + 8 * (i & 1)) * stride + n0 + 8 * (i >> 1));
  first[0] = x[0];
  first[1] = x[1];
  second[0] = x[2];
  second[1] = x[3];
}

// C tiles `first` and `first + 1` (16 x 16 together) packed as an A fragment.
template <class Ctx, int N>
AUTOTP_LANE_FN void pack_a(Ctx& ctx, uint32_t (&a)[4], const float (&c)[N][4], int first) {
  a[0] = ctx.pack(c[first][0], c[first][1]);
  a[1] = ctx.pack(c[first][2], c[first][3]);
  a[2] = ctx.pack(c[first + 1][0], c[first + 1][1]);
  a[3] = ctx.pack(c[first + 1][2], c[first + 1][3]);
}

// Sum over the four lanes that share a fragment row.
template <class Ctx>
AUTOTP_LANE_FN float row_sum(Ctx& ctx, float v) {
  v += ctx.shfl_xor(v, 1);
  return v + ctx.shfl_xor(v, 2);
}

template <class Ctx>
AUTOTP_LANE_FN float row_max(Ctx& ctx, float v) {
  v = max_of(v, ctx.shfl_xor(v, 1));
  return max_of(v, ctx.shfl_xor(v, 2));
}

// Stores rows of a 16 x D accumulator (scaled per row) as 16-bit values into a [seq, D] matrix
// (rows `matrix_stride` elements apart); rows past seq skipped.
template <int D, class Ctx>
AUTOTP_LANE_FN void store_rows(Ctx& ctx, uint16_t* m, int64_t matrix_stride, int64_t seq,
                               int64_t row0, const float (&acc)[D / 8][4], float scale_a,
                               float scale_b) {
  const int g = ctx.lane() >> 2, t = ctx.lane() & 3;
  const int64_t r0 = row0 + g, r1 = r0 + 8;
  AUTOTP_UNROLL
  for (int nd = 0; nd < D / 8; ++nd) {
    const int col = nd * 8 + 2 * t;
    if (r0 < seq)
      ctx.store_u32(m + r0 * matrix_stride + col,
                    ctx.pack(acc[nd][0] * scale_a, acc[nd][1] * scale_a));
    if (r1 < seq)
      ctx.store_u32(m + r1 * matrix_stride + col,
                    ctx.pack(acc[nd][2] * scale_b, acc[nd][3] * scale_b));
  }
}

template <int N>
AUTOTP_LANE_FN void zero(float (&c)[N][4]) {
  AUTOTP_UNROLL
  for (int n = 0; n < N; ++n)
    c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
}

// Replaces by `value` the entries of M row tiles of C fragments (16 x 8 N each) whose column
// lies outside its row's visible range [first[mt][r], end[mt][r]) (r = 0 for the lane's row g,
// 1 for g + 8); this lane's columns are col0 + 8 n + (i & 1), col0 = the tile's first column
// + 2 t. Called only for the tiles a mask reaches (the loops are issue-bound: the other tiles
// skip the compares altogether), in 32 bits.
template <int N>
AUTOTP_LANE_FN void mask_outside(float (&c)[N][4], int col0, const int (&first)[2],
                                 const int (&end)[2], float value) {
  AUTOTP_UNROLL
  for (int n = 0; n < N; ++n) {
    AUTOTP_UNROLL
    for (int i = 0; i < 4; ++i) {
      const int col = col0 + 8 * n + (i & 1);
      if (col < first[i >> 1] || col >= end[i >> 1]) c[n][i] = value;
    }
  }
}
template <int M, int N>
AUTOTP_LANE_FN void mask_outside(float (&c)[M][N][4], int col0, const int (&first)[M][2],
                                 const int (&end)[M][2], float value) {
  AUTOTP_UNROLL
  for (int mt = 0; mt < M; ++mt)
    mask_outside(c[mt], col0, first[mt], end[mt], value);
}

// acc (16 x D) += A (16 x 16) times rows k0 .. k0 + 16 of a shared tile: p v, dS k and the like.
template <int D, class Ctx>
AUTOTP_LANE_FN void accumulate_product(Ctx& ctx, float (&acc)[D / 8][4], const uint32_t (&a)[4],
                                       const uint16_t* tile, int k0) {
  AUTOTP_UNROLL
  for (int nd = 0; nd < D / 8; nd += 2) {
    uint32_t b0[2], b1[2];
    load_b_pair(ctx, b0, b1, tile, row_stride<D>(), k0, 8 * nd);
    ctx.mma(acc[nd], a, b0);
    ctx.mma(acc[nd + 1], a, b1);
  }
}

// c[mt][n] += A[mt] (16 x D, as D / 16 fragments) times rows 8 n .. 8 n + 8 of a shared tile,
// transposed (the products with keys, q k^T, or values, dout v^T), for M row tiles at once:
// every B fragment is loaded once and feeds all M products.
template <int D, int M, int N, class Ctx>
AUTOTP_LANE_FN void multiply_tiles_by_rows(Ctx& ctx, float (&c)[M][N][4],
                                           const uint32_t (&a)[M][D / 16][4],
                                           const uint16_t* tile) {
  AUTOTP_UNROLL
  for (int n = 0; n < N; ++n) {
    AUTOTP_UNROLL
    for (int ks = 0; ks < D / 16; ks += 2) {
      uint32_t b0[2], b1[2];
      load_b_transposed_pair(ctx, b0, b1, tile, row_stride<D>(), 8 * n, 16 * ks);
      AUTOTP_UNROLL
      for (int mt = 0; mt < M; ++mt) {
        ctx.mma(c[mt][n], a[mt][ks], b0);
        ctx.mma(c[mt][n], a[mt][ks + 1], b1);
      }
    }
  }
}

// accumulate_product for M row tiles at once, every B fragment loaded once.
template <int D, int M, class Ctx>
AUTOTP_LANE_FN void accumulate_tiles_product(Ctx& ctx, float (&acc)[M][D / 8][4],
                                             const uint32_t (&a)[M][4], const uint16_t* tile,
                                             int k0) {
  AUTOTP_UNROLL
  for (int nd = 0; nd < D / 8; nd += 2) {
    uint32_t b0[2], b1[2];
    load_b_pair(ctx, b0, b1, tile, row_stride<D>(), k0, 8 * nd);
    AUTOTP_UNROLL
    for (int mt = 0; mt < M; ++mt) {
      ctx.mma(acc[mt][nd], a[mt], b0);
      ctx.mma(acc[mt][nd + 1], a[mt], b1);
    }
  }
}

// acc[mt] += C[mt] (16 x N columns of scores, C tiles of 8) times rows 0 .. N of a tile: the
// score tiles packed to 16 bits as A fragments, two C tiles per 16 keys (P V, dS K).
template <int D, int M, int N, class Ctx>
AUTOTP_LANE_FN void accumulate_scores_times_rows(Ctx& ctx, float (&acc)[M][D / 8][4],
                                                 const float (&c)[M][N][4], const uint16_t* tile) {
  AUTOTP_UNROLL
  for (int kk = 0; kk < N / 2; ++kk) {
    uint32_t a[M][4];
    AUTOTP_UNROLL
    for (int mt = 0; mt < M; ++mt)
      pack_a(ctx, a[mt], c[mt], 2 * kk);
    accumulate_tiles_product<D>(ctx, acc, a, tile, 16 * kk);
  }
}

// row_delta += the row sums of dout * out over one 16-column k-step of a 16-row tile (A
// fragments; registers 0, 2 hold row g, 1, 3 row g + 8), each pair of columns one fma.
template <class Ctx>
AUTOTP_LANE_FN void add_row_delta(Ctx& ctx, float (&row_delta)[2], const uint32_t (&da)[4],
                                  const uint32_t (&oa)[4]) {
  AUTOTP_UNROLL
  for (int reg = 0; reg < 4; ++reg) {
    const float lo =
        ctx.to_float(static_cast<uint16_t>(da[reg])) * ctx.to_float(static_cast<uint16_t>(oa[reg]));
    row_delta[reg & 1] += ctx.fma(ctx.to_float(static_cast<uint16_t>(da[reg] >> 16)),
                                  ctx.to_float(static_cast<uint16_t>(oa[reg] >> 16)), lo);
  }
}

// The keys a query tile of `rows` rows starting at q0 sees: [0, visible_keys).
AUTOTP_LANE_FN int64_t visible_keys(const Problem& p, int64_t q0, int64_t rows = kBlockRows) {
  return p.causal && q0 + rows < p.seq ? q0 + rows : p.seq;
}

// Streams k and v rows [0, key_end) of one kv head through two shared buffers of kKeys-row
// tiles (each: the k tile, then the v tile): while body(k0, k_tile, v_tile) runs on one, the
// next loads into the other.
template <int D, int kKeys, class Ctx, class Body>
AUTOTP_LANE_FN void for_each_kv_tile(Ctx& ctx, uint16_t* buffers, const uint16_t* k_head,
                                     const uint16_t* v_head, const Problem& p, int64_t key_end,
                                     Body&& body) {
  constexpr int kTile = kKeys * row_stride<D>();
  auto stage = [&](int64_t buffer, int64_t first_key) {
    uint16_t* tile = buffers + buffer * 2 * kTile;
    stage_rows<D, kKeys>(ctx, tile, k_head, p.layout.k.row, first_key, p.seq);
    stage_rows<D, kKeys>(ctx, tile + kTile, v_head, p.layout.v.row, first_key, p.seq);
  };
  if (key_end > 0) stage(0, 0);
  for (int64_t k0 = 0, it = 0; k0 < key_end; k0 += kKeys, ++it) {
    ctx.wait_async();
    ctx.sync_block();  // this tile is in; every warp is done with the other buffer
    if (k0 + kKeys < key_end) stage((it + 1) & 1, k0 + kKeys);
    const uint16_t* k_tile = buffers + (it & 1) * 2 * kTile;
    body(k0, k_tile, k_tile + kTile);
  }
}

}  // namespace detail

// One block of the forward: query rows [R i, R i + R) of one (batch, query head), R =
// forward_block_rows<M>(), each warp owning M tiles of 16 rows. K and V tiles of 64 keys stream
// through shared memory (double-buffered); S = Q K^T and O += P V run on tensor cores with an
// online softmax (running max and sum per row, in base-2 units). Every row's arithmetic is the
// same for every M (a causal block of more rows only adds fully masked key tiles for its first
// rows, which change nothing), so M = 1 and M = 2 give identical results.
// Shared memory: forward_shared_bytes<D>().
template <int D, int M = 1, class Ctx>
AUTOTP_LANE_FN void forward_block(Ctx& ctx, int64_t block, unsigned char* shared, uint16_t* out,
                                  float* lse, const uint16_t* q, const uint16_t* k,
                                  const uint16_t* v, const Problem& p) {
  using namespace detail;
  constexpr int kSteps = D / 16;    // k-steps over the head dim
  constexpr int kDimTiles = D / 8;  // n-tiles over the head dim
  constexpr int kKeyTiles = kForwardKeys / 8;
  constexpr int kRows = forward_block_rows<M>();
  uint16_t* const buffers = reinterpret_cast<uint16_t*>(shared);  // [2][k tile, v tile]
  const int64_t tiles = row_tiles(p.seq, kRows);
  const GridCell cell = grid_cell(block, p.batch * p.hq, tiles, p.longest_first);
  const int64_t bh = cell.head;                  // b * hq + h
  const int64_t q_tile = tiles - 1 - cell.tile;  // causal: the longest rows first
  const int64_t b = bh / p.hq;
  const int h = static_cast<int>(bh - b * p.hq), kv = h / static_cast<int>(p.hq / p.hkv);
  const int warp = ctx.warp(), g = ctx.lane() >> 2, t = ctx.lane() & 3;
  // Positions in 32 bits (the launcher checks seq fits): fewer registers per index.
  const int q0 = static_cast<int>(q_tile) * kRows, warp_row0 = q0 + 16 * M * warp;
  const int seq = static_cast<int>(p.seq);
  // The keys each of this lane's rows sees: [0, key_end) (row + 1 under a causal mask, at most
  // seq; a row past seq sees every key and is never stored).
  int key_first[M][2], key_end[M][2];
  AUTOTP_UNROLL
  for (int mt = 0; mt < M; ++mt) {
    AUTOTP_UNROLL
    for (int r = 0; r < 2; ++r) {
      const int row = warp_row0 + 16 * mt + g + 8 * r;
      key_first[mt][r] = 0;
      key_end[mt][r] = p.causal && row + 1 < seq ? row + 1 : seq;
    }
  }
  const uint16_t* k_head = k + kernels::head_start(p.layout.k, b, kv);
  const uint16_t* v_head = v + kernels::head_start(p.layout.v, b, kv);
  const uint16_t* q_head = q + kernels::head_start(p.layout.q, b, h);

  uint32_t qa[M][kSteps][4];
  AUTOTP_UNROLL
  for (int mt = 0; mt < M; ++mt) {
    AUTOTP_UNROLL
    for (int ks = 0; ks < kSteps; ++ks)
      load_a_rows(ctx, qa[mt][ks], q_head, p.layout.q.row, p.seq, warp_row0 + 16 * mt, 16 * ks);
  }
  float o[M][kDimTiles][4];
  float m[M][2], l[M][2];  // l: this lane's share of the row sum
  AUTOTP_UNROLL
  for (int mt = 0; mt < M; ++mt) {
    zero(o[mt]);
    m[mt][0] = m[mt][1] = kNegInf;
    l[mt][0] = l[mt][1] = 0.0f;
  }
  const float scale2 = p.scale * kLog2e;

  for_each_kv_tile<D, kForwardKeys>(
      ctx, buffers, k_head, v_head, p, visible_keys(p, q0, kRows),
      [&](int64_t k0, const uint16_t* k_tile, const uint16_t* v_tile) {
        float s[M][kKeyTiles][4];
        AUTOTP_UNROLL
        for (int mt = 0; mt < M; ++mt)
          zero(s[mt]);
        multiply_tiles_by_rows<D>(ctx, s, qa, k_tile);
        // Keys past seq, and causally hidden keys, only occur in the last tiles.
        if (k0 + kForwardKeys > seq || (p.causal && k0 + kForwardKeys > q0))
          mask_outside(s, static_cast<int>(k0) + 2 * t, key_first, key_end, kNegInf);
        AUTOTP_UNROLL
        for (int mt = 0; mt < M; ++mt) {
          // Raw scores here; the scale enters with the exponent's fma below (scale > 0, so the
          // rounded scaled maximum is the scaled raw maximum).
          float tile_max[2] = {kNegInf, kNegInf};
          AUTOTP_UNROLL
          for (int nk = 0; nk < kKeyTiles; ++nk) {
            AUTOTP_UNROLL
            for (int i = 0; i < 4; ++i)
              tile_max[i >> 1] = max_of(tile_max[i >> 1], s[mt][nk][i]);
          }
          float base[2], correction[2];
          AUTOTP_UNROLL
          for (int r = 0; r < 2; ++r) {
            const float new_max = max_of(m[mt][r], row_max(ctx, tile_max[r]) * scale2);
            base[r] = new_max == kNegInf ? 0.0f : new_max;  // a row with no visible key yet
            correction[r] = ctx.exp2(m[mt][r] - base[r]);   // 0 while m is -inf
            m[mt][r] = new_max;
            l[mt][r] *= correction[r];
          }
          AUTOTP_UNROLL
          for (int nk = 0; nk < kKeyTiles; ++nk) {
            AUTOTP_UNROLL
            for (int i = 0; i < 4; ++i) {
              s[mt][nk][i] = ctx.exp2(ctx.fma(s[mt][nk][i], scale2, -base[i >> 1]));
              l[mt][i >> 1] += s[mt][nk][i];
            }
          }
          AUTOTP_UNROLL
          for (int nd = 0; nd < kDimTiles; ++nd) {
            o[mt][nd][0] *= correction[0];
            o[mt][nd][1] *= correction[0];
            o[mt][nd][2] *= correction[1];
            o[mt][nd][3] *= correction[1];
          }
        }
        accumulate_scores_times_rows<D>(ctx, o, s, v_tile);  // O += P V
      });

  AUTOTP_UNROLL
  for (int mt = 0; mt < M; ++mt) {
    float inverse[2];
    AUTOTP_UNROLL
    for (int r = 0; r < 2; ++r) {
      l[mt][r] = row_sum(ctx, l[mt][r]);
      inverse[r] = l[mt][r] > 0.0f ? 1.0f / l[mt][r] : 0.0f;
    }
    store_rows<D>(ctx, out + kernels::head_start(p.layout.out, b, h), p.layout.out.row, p.seq,
                  warp_row0 + 16 * mt, o[mt], inverse[0], inverse[1]);
    if (t == 0) {
      AUTOTP_UNROLL
      for (int r = 0; r < 2; ++r) {
        const int row = warp_row0 + 16 * mt + g + 8 * r;
        if (row < seq) lse[bh * p.seq + row] = (m[mt][r] + ctx.log2(l[mt][r])) * kLn2;
      }
    }
  }
}

// One block of dq (and delta): query rows [R i, R i + R) of one (batch, query head), R =
// forward_block_rows<M>() as in the forward (each warp owns M tiles of 16 rows).
// delta[i] = dout[i] . out[i]; then over key tiles of 32: S = Q K^T, P = exp(S - lse),
// dP = dO V^T, dS = P (dP - delta), dQ += dS K, and dq = scale * dQ. Every row's arithmetic is
// the same for every M (fully masked key tiles add exact zeros), so M = 1 and M = 2 give
// identical results. Shared memory: dq_shared_bytes<D>().
template <int D, int M = 1, class Ctx>
AUTOTP_LANE_FN void dq_block(Ctx& ctx, int64_t block, unsigned char* shared, uint16_t* dq,
                             float* delta, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                             const uint16_t* out, const uint16_t* dout, const float* lse,
                             const Problem& p) {
  using namespace detail;
  constexpr int kSteps = D / 16;
  constexpr int kDimTiles = D / 8;
  constexpr int kKeyTiles = kDqKeys / 8;
  constexpr int kRows = forward_block_rows<M>();
  uint16_t* const buffers = reinterpret_cast<uint16_t*>(shared);  // [2][k tile, v tile]
  const int64_t tiles = row_tiles(p.seq, kRows);
  const GridCell cell = grid_cell(block, p.batch * p.hq, tiles, p.longest_first);
  const int64_t bh = cell.head;
  const int64_t q_tile = tiles - 1 - cell.tile;  // causal: the longest rows first
  const int64_t b = bh / p.hq;
  const int h = static_cast<int>(bh - b * p.hq), kv = h / static_cast<int>(p.hq / p.hkv);
  const int warp = ctx.warp(), g = ctx.lane() >> 2, t = ctx.lane() & 3;
  // Positions in 32 bits (the launcher checks seq fits): fewer registers per index.
  const int q0 = static_cast<int>(q_tile) * kRows, warp_row0 = q0 + 16 * M * warp;
  const int seq = static_cast<int>(p.seq);
  int rows[M][2];                      // this lane's two rows of each row tile
  int key_first[M][2], key_end[M][2];  // the keys each row sees, as in the forward
  AUTOTP_UNROLL
  for (int mt = 0; mt < M; ++mt) {
    AUTOTP_UNROLL
    for (int r = 0; r < 2; ++r) {
      rows[mt][r] = warp_row0 + 16 * mt + g + 8 * r;
      key_first[mt][r] = 0;
      key_end[mt][r] = p.causal && rows[mt][r] + 1 < seq ? rows[mt][r] + 1 : seq;
    }
  }
  const uint16_t* k_head = k + kernels::head_start(p.layout.k, b, kv);
  const uint16_t* v_head = v + kernels::head_start(p.layout.v, b, kv);
  const uint16_t* q_head = q + kernels::head_start(p.layout.q, b, h);
  const uint16_t* dout_head = dout + kernels::head_start(p.layout.dout, b, h);
  const uint16_t* out_head = out + kernels::head_start(p.layout.out, b, h);

  uint32_t qa[M][kSteps][4], da[M][kSteps][4];
  float row_delta[M][2], lse2[M][2];
  AUTOTP_UNROLL
  for (int mt = 0; mt < M; ++mt) {
    const int tile_row0 = warp_row0 + 16 * mt;
    row_delta[mt][0] = row_delta[mt][1] = 0.0f;
    AUTOTP_UNROLL
    for (int ks = 0; ks < kSteps; ++ks) {
      load_a_rows(ctx, qa[mt][ks], q_head, p.layout.q.row, p.seq, tile_row0, 16 * ks);
      load_a_rows(ctx, da[mt][ks], dout_head, p.layout.dout.row, p.seq, tile_row0, 16 * ks);
      uint32_t oa[4];
      load_a_rows(ctx, oa, out_head, p.layout.out.row, p.seq, tile_row0, 16 * ks);
      add_row_delta(ctx, row_delta[mt], da[mt][ks], oa);
    }
    AUTOTP_UNROLL
    for (int r = 0; r < 2; ++r) {
      row_delta[mt][r] = row_sum(ctx, row_delta[mt][r]);
      lse2[mt][r] = rows[mt][r] < p.seq ? lse[bh * p.seq + rows[mt][r]] * kLog2e : 0.0f;
      if (t == 0 && rows[mt][r] < p.seq) delta[bh * p.seq + rows[mt][r]] = row_delta[mt][r];
    }
  }
  float acc[M][kDimTiles][4];
  AUTOTP_UNROLL
  for (int mt = 0; mt < M; ++mt)
    zero(acc[mt]);
  const float scale2 = p.scale * kLog2e;

  for_each_kv_tile<D, kDqKeys>(
      ctx, buffers, k_head, v_head, p, visible_keys(p, q0, kRows),
      [&](int64_t k0, const uint16_t* k_tile, const uint16_t* v_tile) {
        float s[M][kKeyTiles][4], dp[M][kKeyTiles][4];
        AUTOTP_UNROLL
        for (int mt = 0; mt < M; ++mt) {
          zero(s[mt]);
          zero(dp[mt]);
        }
        multiply_tiles_by_rows<D>(ctx, s, qa, k_tile);
        multiply_tiles_by_rows<D>(ctx, dp, da, v_tile);
        AUTOTP_UNROLL
        for (int mt = 0; mt < M; ++mt) {
          AUTOTP_UNROLL
          for (int nk = 0; nk < kKeyTiles; ++nk) {
            AUTOTP_UNROLL
            for (int i = 0; i < 4; ++i)
              s[mt][nk][i] = ctx.exp2(ctx.fma(s[mt][nk][i], scale2, -lse2[mt][i >> 1]));  // P
          }
        }
        if (k0 + kDqKeys > seq || (p.causal && k0 + kDqKeys > q0))
          mask_outside(s, static_cast<int>(k0) + 2 * t, key_first, key_end, 0.0f);
        AUTOTP_UNROLL
        for (int mt = 0; mt < M; ++mt) {
          AUTOTP_UNROLL
          for (int nk = 0; nk < kKeyTiles; ++nk) {
            AUTOTP_UNROLL
            for (int i = 0; i < 4; ++i)
              s[mt][nk][i] *= dp[mt][nk][i] - row_delta[mt][i >> 1];  // dS
          }
        }
        accumulate_scores_times_rows<D>(ctx, acc, s, k_tile);  // dQ += dS K
      });
  AUTOTP_UNROLL
  for (int mt = 0; mt < M; ++mt)
    store_rows<D>(ctx, dq + kernels::head_start(p.layout.dq, b, h), p.layout.dq.row, p.seq,
                  warp_row0 + 16 * mt, acc[mt], p.scale, p.scale);
}

// One block of dk and dv: key rows [64 j, 64 j + 64) of one (batch, kv head), a warp per 16
// keys; the query heads sharing the kv head in order, each over query tiles of 32 in order:
// S^T = K Q^T, P^T = exp(S^T - lse), dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - delta),
// dK += dS^T Q; dk = scale * dK. Needs the delta the dq kernel wrote.
// kKvInRegisters: each warp loads the A fragments of its 16 K and V rows from shared memory
// once and keeps them (D / 2 more registers per lane) instead of reloading them for every
// query tile: a fifth less shared-memory traffic per tile, the same products in the same order
// (identical results).
// kStoreScores: also writes each dS tile (rounded to 16 bits) into `scores` (the stored-score
// layout above) for dq_from_scores_block; dS of keys past seq is stored as the zero dq_block
// gives them, so the dq it yields is dq_block's.
// Shared memory: dkdv_shared_bytes<D>().
template <int D, bool kKvInRegisters = false, bool kStoreScores = false, class Ctx>
AUTOTP_LANE_FN void dkdv_block(Ctx& ctx, int64_t block, unsigned char* shared, uint16_t* dk,
                               uint16_t* dv, const uint16_t* q, const uint16_t* k,
                               const uint16_t* v, const uint16_t* dout, const float* lse,
                               const float* delta, const Problem& p, uint16_t* scores = nullptr) {
  using namespace detail;
  constexpr int kStride = row_stride<D>();
  constexpr int kSteps = D / 16;
  constexpr int kDimTiles = D / 8;
  constexpr int kQueryTiles = kDkdvQueries / 8;
  uint16_t* k_tile = reinterpret_cast<uint16_t*>(shared);
  uint16_t* v_tile = k_tile + kBlockRows * kStride;
  unsigned char* const query_buffers = shared + 2 * kBlockRows * kStride * 2;
  const int64_t tiles = row_tiles(p.seq);
  const GridCell cell = grid_cell(block, p.batch * p.hkv, tiles, p.longest_first);
  const int64_t bkv = cell.head;       // b * hkv + kv head
  const int64_t key_tile = cell.tile;  // causal: the first keys see the most queries
  const int group = static_cast<int>(p.hq / p.hkv);
  const int64_t b = bkv / p.hkv;
  const int kv = static_cast<int>(bkv - b * p.hkv);
  const int warp = ctx.warp(), g = ctx.lane() >> 2, t = ctx.lane() & 3;
  // Positions in 32 bits (the launcher checks seq fits): fewer registers per index.
  const int k0 = static_cast<int>(key_tile) * kBlockRows, warp_key0 = k0 + 16 * warp;
  const int keys[2] = {warp_key0 + g, warp_key0 + g + 8};

  stage_rows<D, kBlockRows>(ctx, k_tile, k + kernels::head_start(p.layout.k, b, kv), p.layout.k.row,
                            k0, p.seq);
  stage_rows<D, kBlockRows>(ctx, v_tile, v + kernels::head_start(p.layout.v, b, kv), p.layout.v.row,
                            k0, p.seq);
  float dk_acc[kDimTiles][4], dv_acc[kDimTiles][4];
  zero(dk_acc);
  zero(dv_acc);
  const float scale2 = p.scale * kLog2e;
  const int first_query = p.causal ? k0 : 0;  // earlier queries see none of these keys

  // Query tiles in order: the group's query heads, each over its rows from first_query.
  // 32-bit step arithmetic (the launcher checks that the counts fit): the per-step divisions
  // stay cheap in registers, which this kernel has few of to spare.
  const int seq = static_cast<int>(p.seq);
  const int tiles_per_head = (seq - first_query + kDkdvQueries - 1) / kDkdvQueries;
  const int steps = first_query < seq ? group * tiles_per_head : 0;
  auto tile_buffer = [&](int step) {
    return query_buffers + (step & 1) * dkdv_query_tile_bytes<D>();
  };
  // Step `step` is query head kv * group + head_step, rows [i0, i0 + kDkdvQueries).
  auto stage = [&](int step, int head_step, int i0) {
    const int h = kv * group + head_step;
    const int64_t bh = b * p.hq + h;
    uint16_t* q_dst = reinterpret_cast<uint16_t*>(tile_buffer(step));
    uint16_t* dout_dst = q_dst + kDkdvQueries * kStride;
    float* stats_dst = reinterpret_cast<float*>(dout_dst + kDkdvQueries * kStride);
    stage_rows<D, kDkdvQueries>(ctx, q_dst, q + kernels::head_start(p.layout.q, b, h),
                                p.layout.q.row, i0, p.seq);
    stage_rows<D, kDkdvQueries>(ctx, dout_dst, dout + kernels::head_start(p.layout.dout, b, h),
                                p.layout.dout.row, i0, p.seq);
    // lse and delta copied as they are, asynchronously like the tiles: a plain load here would
    // hold its warp until the value arrives, and the block's next barrier with it.
    // Threads [0, kDkdvQueries) copy lse, the next kDkdvQueries delta (two warps share it).
    static_assert(2 * kDkdvQueries <= kThreads, "one stats value per thread");
    if (ctx.thread() < 2 * kDkdvQueries) {
      const bool is_delta = ctx.thread() >= kDkdvQueries;
      const int e = ctx.thread() - (is_delta ? kDkdvQueries : 0);
      if (i0 + e < seq) {
        ctx.copy4_async(stats_dst + ctx.thread(), (is_delta ? delta : lse) + bh * p.seq + i0 + e);
      } else {
        stats_dst[ctx.thread()] = 0.0f;
      }
    }
  };
  // The query range each of this lane's keys sees: [query_first, query_end) (from the key under
  // a causal mask; none for a key past seq when its dS is stored).
  int query_first[2], query_end[2];
  AUTOTP_UNROLL
  for (int r = 0; r < 2; ++r) {
    query_first[r] = p.causal ? keys[r] : 0;
    query_end[r] = kStoreScores && keys[r] >= seq ? 0 : seq;
  }
  if (steps > 0) stage(0, 0, first_query);
  [[maybe_unused]] uint32_t kept_ka[kKvInRegisters ? kSteps : 1][4],
      kept_va[kKvInRegisters ? kSteps : 1][4];
  // The step's query head (kv * group + head_step) and first row, advanced step by step (a
  // division by tiles_per_head per step costs tens of instructions in an issue-bound loop).
  int head_step = 0, i0 = first_query;
  for (int step = 0; step < steps; ++step) {
    ctx.wait_async();
    ctx.sync_block();  // this tile (and the k/v rows) are in; the other buffer is consumed
    if constexpr (kKvInRegisters) {
      if (step == 0) {
        AUTOTP_UNROLL
        for (int ks = 0; ks < kSteps; ++ks) {
          load_a(ctx, kept_ka[ks], k_tile, kStride, 16 * warp, 16 * ks);
          load_a(ctx, kept_va[ks], v_tile, kStride, 16 * warp, 16 * ks);
        }
      }
    }
    const bool last_of_head = i0 + kDkdvQueries >= seq;
    if (step + 1 < steps)
      stage(step + 1, last_of_head ? head_step + 1 : head_step,
            last_of_head ? first_query : i0 + kDkdvQueries);
    const uint16_t* q_tile = reinterpret_cast<const uint16_t*>(tile_buffer(step));
    const uint16_t* dout_tile = q_tile + kDkdvQueries * kStride;
    const float* lse_tile = reinterpret_cast<const float*>(dout_tile + kDkdvQueries * kStride);
    const float* delta_tile = lse_tile + kDkdvQueries;

    float s[kQueryTiles][4], dp[kQueryTiles][4];
    zero(s);
    zero(dp);
    AUTOTP_UNROLL
    for (int ks = 0; ks < kSteps; ks += 2) {  // two k-steps per B load
      uint32_t ka[2][4], va[2][4];
      AUTOTP_UNROLL
      for (int half = 0; half < 2; ++half) {
        if constexpr (kKvInRegisters) {
          AUTOTP_UNROLL
          for (int r = 0; r < 4; ++r) {
            ka[half][r] = kept_ka[ks + half][r];
            va[half][r] = kept_va[ks + half][r];
          }
        } else {
          load_a(ctx, ka[half], k_tile, kStride, 16 * warp, 16 * (ks + half));
          load_a(ctx, va[half], v_tile, kStride, 16 * warp, 16 * (ks + half));
        }
      }
      AUTOTP_UNROLL
      for (int nq = 0; nq < kQueryTiles; ++nq) {
        uint32_t b0[2], b1[2];
        load_b_transposed_pair(ctx, b0, b1, q_tile, kStride, 8 * nq, 16 * ks);
        ctx.mma(s[nq], ka[0], b0);
        ctx.mma(s[nq], ka[1], b1);
        load_b_transposed_pair(ctx, b0, b1, dout_tile, kStride, 8 * nq, 16 * ks);
        ctx.mma(dp[nq], va[0], b0);
        ctx.mma(dp[nq], va[1], b1);
      }
    }
    AUTOTP_UNROLL
    for (int nq = 0; nq < kQueryTiles; ++nq) {
      AUTOTP_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int e = 8 * nq + 2 * t + (i & 1);  // query i0 + e
        // lse in base-2 units as dq_block scales it (the same product, the same fma).
        s[nq][i] = ctx.exp2(ctx.fma(s[nq][i], scale2, -(lse_tile[e] * kLog2e)));  // P^T
      }
    }
    // Masked: queries past seq and, under a causal mask, queries before the key; with stored
    // scores also keys past seq (their dk/dv rows are not stored, but their dS would be).
    if (i0 + kDkdvQueries > seq || (kStoreScores && k0 + kBlockRows > seq) ||
        (p.causal && i0 < k0 + kBlockRows))
      mask_outside(s, i0 + 2 * t, query_first, query_end, 0.0f);
    AUTOTP_UNROLL
    for (int nq = 0; nq < kQueryTiles; ++nq) {
      AUTOTP_UNROLL
      for (int i = 0; i < 4; ++i)
        dp[nq][i] = s[nq][i] * (dp[nq][i] - delta_tile[8 * nq + 2 * t + (i & 1)]);  // dS^T
    }
    if constexpr (kStoreScores) {
      // This warp's 16 keys x 32 queries of tile (query tile i0 / R, key tile), R = kBlockRows;
      // tile offsets in 32 bits (the launcher checks a group's tiles fit).
      const int query_tile = i0 / kBlockRows;
      const int64_t head_tiles = score_tiles_per_head(p.seq, p.causal);
      uint16_t* const group_scores =
          scores + (b * p.hq + kv * group) * head_tiles * kScoreTileElements;
      const int tile = head_step * static_cast<int>(head_tiles) +
                       static_cast<int>(score_tile_index(query_tile, key_tile, tiles, p.causal));
      uint16_t* row0 = group_scores + static_cast<int64_t>(tile) * kScoreTileElements +
                       (16 * warp + g) * kBlockRows + (i0 - query_tile * kBlockRows) + 2 * t;
      AUTOTP_UNROLL
      for (int nq = 0; nq < kQueryTiles; ++nq) {
        ctx.store_u32(row0 + 8 * nq, ctx.pack(dp[nq][0], dp[nq][1]));
        ctx.store_u32(row0 + 8 * kBlockRows + 8 * nq, ctx.pack(dp[nq][2], dp[nq][3]));
      }
    }
    AUTOTP_UNROLL
    for (int kk = 0; kk < kQueryTiles / 2; ++kk) {
      uint32_t pa[4], dsa[4];
      pack_a(ctx, pa, s, 2 * kk);
      pack_a(ctx, dsa, dp, 2 * kk);
      accumulate_product<D>(ctx, dv_acc, pa, dout_tile, 16 * kk);
      accumulate_product<D>(ctx, dk_acc, dsa, q_tile, 16 * kk);
    }
    if (last_of_head) {
      ++head_step;
      i0 = first_query;
    } else {
      i0 += kDkdvQueries;
    }
  }
  ctx.wait_async();  // no copy outlives the block (with no query tile, the k/v rows')
  store_rows<D>(ctx, dk + kernels::head_start(p.layout.dk, b, kv), p.layout.dk.row, p.seq,
                warp_key0, dk_acc, p.scale, p.scale);
  store_rows<D>(ctx, dv + kernels::head_start(p.layout.dv, b, kv), p.layout.dv.row, p.seq,
                warp_key0, dv_acc, 1.0f, 1.0f);
}

// One block of delta alone (the stored-score backward, whose dq kernel takes no dout): rows
// [64 i, 64 i + 64) of one (batch, query head), delta[i] = dout[i] . out[i] summed exactly as
// dq_block sums it (the same values).
template <int D, class Ctx>
AUTOTP_LANE_FN void delta_block(Ctx& ctx, int64_t block, float* delta, const uint16_t* out,
                                const uint16_t* dout, const Problem& p) {
  using namespace detail;
  const int64_t tiles = row_tiles(p.seq);
  const GridCell cell = grid_cell(block, p.batch * p.hq, tiles, false);
  const int64_t bh = cell.head, b = bh / p.hq, h = bh - b * p.hq;
  const int g = ctx.lane() >> 2, t = ctx.lane() & 3;
  const int64_t row0 = cell.tile * kBlockRows + 16 * ctx.warp();
  const uint16_t* dout_head = dout + kernels::head_start(p.layout.dout, b, h);
  const uint16_t* out_head = out + kernels::head_start(p.layout.out, b, h);
  float row_delta[2] = {0.0f, 0.0f};
  AUTOTP_UNROLL
  for (int ks = 0; ks < D / 16; ++ks) {
    uint32_t da[4], oa[4];
    load_a_rows(ctx, da, dout_head, p.layout.dout.row, p.seq, row0, 16 * ks);
    load_a_rows(ctx, oa, out_head, p.layout.out.row, p.seq, row0, 16 * ks);
    add_row_delta(ctx, row_delta, da, oa);
  }
  AUTOTP_UNROLL
  for (int r = 0; r < 2; ++r) {
    const float sum = row_sum(ctx, row_delta[r]);
    const int64_t row = row0 + g + 8 * r;
    if (t == 0 && row < p.seq) delta[bh * p.seq + row] = sum;
  }
}

// One block of dq from stored scores (dkdv_block's kStoreScores): query rows [64 i, 64 i + 64)
// of one (batch, query head), a warp per 16 rows; over the visible key tiles in order (every
// 64-key tile stages its k rows and its score tile, double-buffered), dQ += dS K; dq = scale dQ.
// The 16-key products run in dq_block's order on the values it computes, so dq is dq_block's.
// Shared memory: dq_from_scores_shared_bytes<D>().
template <int D, class Ctx>
AUTOTP_LANE_FN void dq_from_scores_block(Ctx& ctx, int64_t block, unsigned char* shared,
                                         uint16_t* dq, const uint16_t* k, const uint16_t* scores,
                                         const Problem& p) {
  using namespace detail;
  constexpr int kKeyTile = kBlockRows * row_stride<D>();
  constexpr int kScoreTile = kBlockRows * row_stride<kBlockRows>();
  uint16_t* const buffers = reinterpret_cast<uint16_t*>(shared);  // [2][k tile, score tile]
  const int64_t tiles = row_tiles(p.seq);
  const GridCell cell = grid_cell(block, p.batch * p.hq, tiles, p.longest_first);
  const int64_t bh = cell.head;
  const int64_t q_tile = tiles - 1 - cell.tile;  // causal: the longest rows first
  const int64_t b = bh / p.hq;
  const int h = static_cast<int>(bh - b * p.hq), kv = h / static_cast<int>(p.hq / p.hkv);
  const int warp = ctx.warp();
  const uint16_t* k_head = k + kernels::head_start(p.layout.k, b, kv);
  const uint16_t* head_scores =
      scores + bh * score_tiles_per_head(p.seq, p.causal) * kScoreTileElements;
  const int64_t key_tiles = p.causal ? q_tile + 1 : tiles;
  auto stage = [&](int64_t buffer, int64_t key_tile) {
    uint16_t* tile = buffers + buffer * (kKeyTile + kScoreTile);
    stage_rows<D, kBlockRows>(ctx, tile, k_head, p.layout.k.row, key_tile * kBlockRows, p.seq);
    stage_rows<kBlockRows, kBlockRows>(
        ctx, tile + kKeyTile,
        head_scores + score_tile_index(q_tile, key_tile, tiles, p.causal) * kScoreTileElements,
        kBlockRows, 0, kBlockRows);
  };
  float acc[D / 8][4];
  zero(acc);
  stage(0, 0);
  for (int64_t j = 0; j < key_tiles; ++j) {
    ctx.wait_async();
    ctx.sync_block();  // this tile is in; every warp is done with the other buffer
    if (j + 1 < key_tiles) stage((j + 1) & 1, j + 1);
    const uint16_t* k_tile = buffers + (j & 1) * (kKeyTile + kScoreTile);
    const uint16_t* score_tile = k_tile + kKeyTile;
    AUTOTP_UNROLL
    for (int kk = 0; kk < kBlockRows / 16; ++kk) {
      uint32_t a[4];
      load_a_transposed(ctx, a, score_tile, row_stride<kBlockRows>(), 16 * warp, 16 * kk);
      accumulate_product<D>(ctx, acc, a, k_tile, 16 * kk);
    }
  }
  store_rows<D>(ctx, dq + kernels::head_start(p.layout.dq, b, h), p.layout.dq.row, p.seq,
                q_tile * kBlockRows + 16 * warp, acc, p.scale, p.scale);
}

}  // namespace autotp::tc_attention
