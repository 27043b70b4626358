// The tensor-core attention block bodies (kernels/tensor_core_attention.h) run on the CPU in an
// emulation of a CUDA block: 128 threads, __syncthreads as a block barrier, warp shuffles and
// the mma.sync m16n8k16 and ldmatrix fragment exchanges as per-warp barriers, the fragment
// layouts written out from the PTX ISA tables. Compared against the double-precision CPU reference
// (kernels/cpu/attention.h) on the same 16-bit inputs, with bounds from a rounding model.
// This checks indexing, masking, tiling, the online softmax and the fragment bookkeeping
// without a GPU; the GPU runs the same bodies (tests/core/test_cuda_nn_ops.cpp compares them).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/numeric_types.h"
#include "kernels/tensor_core_attention.h"

namespace autotp {
namespace {

namespace tc = tc_attention;

// State one emulated block shares between its threads.
struct EmulatedBlockState {
  struct Warp {
    std::barrier<> barrier{32};
    float values[32];
    uint32_t a[32][4];
    uint32_t b[32][2];
    const uint16_t* rows[32];
  };
  std::barrier<> block_barrier{tc::kThreads};
  Warp warps[tc::kWarps];
  std::atomic<int> misaligned{0};  // 32-bit or 16-byte accesses off their alignment
};

// The lane context of kernels/tensor_core_attention.h for the emulated block; Half is
// BFloat16 or Float16 (their round-to-nearest-even conversions are the GPU's _rn ones).
template <typename Half>
class EmulatedLanes {
 public:
  EmulatedLanes(EmulatedBlockState& block, int thread) : block_(block), thread_(thread) {}

  int thread() const { return thread_; }
  int warp() const { return thread_ / 32; }
  int lane() const { return thread_ % 32; }
  void sync_block() { block_.block_barrier.arrive_and_wait(); }

  float shfl_xor(float v, int mask) {
    EmulatedBlockState::Warp& w = block_.warps[warp()];
    w.values[lane()] = v;
    w.barrier.arrive_and_wait();
    const float result = w.values[lane() ^ mask];
    w.barrier.arrive_and_wait();
    return result;
  }

  // c += A B for the warp's 16x16 A and 16x8 B assembled from every lane's fragments.
  void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    EmulatedBlockState::Warp& w = block_.warps[warp()];
    std::memcpy(w.a[lane()], a, sizeof a);
    std::memcpy(w.b[lane()], b, sizeof b);
    w.barrier.arrive_and_wait();
    const int g = lane() / 4, t = lane() % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
      double sum = 0.0;
      for (int kk = 0; kk < 16; ++kk) {
        const int a_lane = (row % 8) * 4 + (kk % 8) / 2;
        const int a_reg = (row >= 8 ? 1 : 0) + (kk >= 8 ? 2 : 0);
        const int b_lane = col * 4 + (kk % 8) / 2, b_reg = kk >= 8 ? 1 : 0;
        sum += static_cast<double>(half_of(w.a[a_lane][a_reg], kk & 1)) *
               static_cast<double>(half_of(w.b[b_lane][b_reg], kk & 1));
      }
      c[i] = static_cast<float>(c[i] + sum);
    }
    w.barrier.arrive_and_wait();
  }

  // ldmatrix.m8n8.x4: lane l names row l % 8 of matrix l / 8; each lane receives (row l / 4,
  // columns 2 (l % 4) and 2 (l % 4) + 1) of every matrix, transposed: (rows 2 (l % 4) and
  // 2 (l % 4) + 1, column l / 4).
  void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* row) { ldmatrix(r, row, false); }
  void ldmatrix_x4_trans(uint32_t (&r)[4], const uint16_t* row) { ldmatrix(r, row, true); }

  float to_float(uint16_t bits) const { return Half::to_float(bits); }
  uint32_t pack(float lo, float hi) const {
    return static_cast<uint32_t>(Half::from_float(lo)) |
           (static_cast<uint32_t>(Half::from_float(hi)) << 16);
  }
  uint32_t load_u32(const uint16_t* p) {
    check_alignment(p, 4);
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
  void store_u32(uint16_t* p, uint32_t v) {
    check_alignment(p, 4);
    std::memcpy(p, &v, 4);
  }
  // cp.async: the copy lands only when this lane waits, so a tile read before its wait and
  // barrier still holds the previous tile (or the NaN fill).
  void copy16_async(uint16_t* dst, const uint16_t* src) {
    check_alignment(dst, 16);
    check_alignment(src, 16);
    defer_copy(dst, src, 16);
  }
  void copy4_async(float* dst, const float* src) {
    check_alignment(dst, 4);
    check_alignment(src, 4);
    defer_copy(dst, src, 4);
  }
  void wait_async() {
    for (const PendingCopy& copy : pending_)
      std::memcpy(copy.dst, copy.bytes, copy.size);
    pending_.clear();
  }
  void zero16(uint16_t* dst) {
    check_alignment(dst, 16);
    std::memset(dst, 0, 16);
  }
  float exp2(float x) const { return std::exp2(x); }
  float log2(float x) const { return std::log2(x); }
  float fma(float a, float b, float c) const { return std::fma(a, b, c); }

 private:
  void ldmatrix(uint32_t (&r)[4], const uint16_t* row, bool transposed) {
    check_alignment(row, 16);
    EmulatedBlockState::Warp& w = block_.warps[warp()];
    w.rows[lane()] = row;
    w.barrier.arrive_and_wait();
    const int g = lane() / 4, t = lane() % 4;
    for (int i = 0; i < 4; ++i) {
      uint16_t lo, hi;
      if (transposed) {
        lo = w.rows[8 * i + 2 * t][g];
        hi = w.rows[8 * i + 2 * t + 1][g];
      } else {
        lo = w.rows[8 * i + g][2 * t];
        hi = w.rows[8 * i + g][2 * t + 1];
      }
      r[i] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
    }
    w.barrier.arrive_and_wait();
  }
  float half_of(uint32_t word, int high) const {
    return Half::to_float(static_cast<uint16_t>(high ? word >> 16 : word));
  }
  void check_alignment(const void* p, uintptr_t bytes) {
    if (reinterpret_cast<uintptr_t>(p) % bytes != 0) block_.misaligned.fetch_add(1);
  }

  struct PendingCopy {
    void* dst;
    size_t size;
    unsigned char bytes[16];
  };
  void defer_copy(void* dst, const void* src, size_t size) {
    PendingCopy copy{dst, size, {}};
    std::memcpy(copy.bytes, src, size);
    pending_.push_back(copy);
  }

  EmulatedBlockState& block_;
  int thread_;
  std::vector<PendingCopy> pending_;
};

// Runs `body(ctx, block, shared)` for every block of the grid, 128 threads per block. Shared
// memory starts as all-ones bytes (NaN in both 16-bit formats) so a read of an unstaged
// element poisons the result. Returns the number of misaligned accesses.
template <typename Half, typename Body>
int run_grid(int64_t blocks, int shared_bytes, Body body) {
  EXPECT_EQ(shared_bytes % 16, 0);
  int misaligned = 0;
  for (int64_t block = 0; block < blocks; ++block) {
    auto state = std::make_unique<EmulatedBlockState>();
    // 16-byte aligned, exactly shared_bytes long (AddressSanitizer sees overruns).
    struct alignas(16) Chunk {
      unsigned char bytes[16];
    };
    std::vector<Chunk> chunks(static_cast<size_t>(shared_bytes) / sizeof(Chunk));
    unsigned char* shared = chunks.front().bytes;
    std::memset(shared, 0xff, static_cast<size_t>(shared_bytes));
    std::vector<std::thread> threads;
    for (int thread = 0; thread < tc::kThreads; ++thread) {
      threads.emplace_back([&, thread] {
        EmulatedLanes<Half> ctx(*state, thread);
        body(ctx, block, shared);
        ctx.wait_async();  // copies still in flight at exit (none, in a correct body)
      });
    }
    for (std::thread& t : threads)
      t.join();
    misaligned += state->misaligned.load();
  }
  return misaligned;
}

struct Case {
  int64_t batch, hq, hkv, seq, dim;
  bool causal;
  double scale = 0.0;  // 0: 1 / sqrt(dim)
  // Also run every kernel with half of the operands sequence-major (see SequenceMajor) and
  // require the same bits.
  bool strided = false;
};

// A [batch, heads, seq, d] operand stored sequence-major as [batch, seq, heads + gaps, d]:
// the layout of a q/k/v projection's output read in place, with `gaps` unused head slots per
// row (as a fused projection's other columns; a different count per operand, so no two
// operands share strides) holding NaN bits (0xffff in both 16-bit formats): a kernel that
// reads a gap poisons its result, and one that writes a gap is caught.
struct SequenceMajor {
  int64_t batch, heads, seq, d, gaps;
  std::vector<uint16_t> data;

  SequenceMajor(int64_t b, int64_t h, int64_t s, int64_t dim, int64_t unused_heads)
      : batch(b),
        heads(h),
        seq(s),
        d(dim),
        gaps(unused_heads),
        data(static_cast<size_t>(b * s * (h + unused_heads) * dim), 0xffff) {}
  int64_t slots() const { return heads + gaps; }
  kernels::HeadStrides strides() const { return {seq * slots() * d, d, slots() * d}; }
  size_t at(int64_t b, int64_t h, int64_t i, int64_t x) const {
    return static_cast<size_t>(((b * seq + i) * slots() + h) * d + x);
  }
  // From / to the contiguous [batch, heads, seq, d] values.
  static SequenceMajor from(const std::vector<uint16_t>& contiguous, int64_t b, int64_t h,
                            int64_t s, int64_t dim, int64_t unused_heads) {
    SequenceMajor m(b, h, s, dim, unused_heads);
    for (int64_t bb = 0; bb < b; ++bb)
      for (int64_t hh = 0; hh < h; ++hh)
        for (int64_t i = 0; i < s; ++i)
          for (int64_t x = 0; x < dim; ++x)
            m.data[m.at(bb, hh, i, x)] =
                contiguous[static_cast<size_t>(((bb * h + hh) * s + i) * dim + x)];
    return m;
  }
  std::vector<uint16_t> contiguous() const {
    std::vector<uint16_t> out(static_cast<size_t>(batch * heads * seq * d));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < seq; ++i)
          for (int64_t x = 0; x < d; ++x)
            out[static_cast<size_t>(((b * heads + h) * seq + i) * d + x)] = data[at(b, h, i, x)];
    return out;
  }
  // Elements of the unused head slots that no longer hold the NaN bits.
  int64_t gaps_written() const {
    int64_t written = 0;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = heads; h < slots(); ++h)
        for (int64_t i = 0; i < seq; ++i)
          for (int64_t x = 0; x < d; ++x)
            written += data[at(b, h, i, x)] != 0xffff;
    return written;
  }
};

std::string name_of(const Case& c, const char* dtype) {
  return std::string(dtype) + " B=" + std::to_string(c.batch) + " Hq=" + std::to_string(c.hq) +
         " Hkv=" + std::to_string(c.hkv) + " S=" + std::to_string(c.seq) +
         " D=" + std::to_string(c.dim) + (c.causal ? " causal" : "") +
         (c.scale > 0.0 ? " scale " + std::to_string(c.scale) : "");
}

// 16-bit values uniform in [-1, 1], and the same values as doubles.
template <typename Half>
void random_tensor(std::vector<uint16_t>& bits, std::vector<double>& values, size_t n,
                   uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  bits.resize(n);
  values.resize(n);
  for (size_t i = 0; i < n; ++i) {
    bits[i] = Half::from_float(uniform(gen));
    values[i] = Half::to_float(bits[i]);
  }
}

// Worst excess of |actual - expected| over `bound` (per element); <= 0 passes.
template <typename Half>
double worst_excess(const std::vector<uint16_t>& actual, const std::vector<double>& expected,
                    const std::vector<double>& bound, const std::string& what, std::string* where) {
  double worst = -1.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(Half::to_float(actual[i])) - expected[i]);
    const double excess = std::isnan(diff) ? 1e30 : diff - bound[i];
    if (excess > worst) {
      worst = excess;
      *where = what + " index " + std::to_string(i) + ": got " +
               std::to_string(Half::to_float(actual[i])) + ", reference " +
               std::to_string(expected[i]) + ", bound " + std::to_string(bound[i]);
    }
  }
  return worst;
}

// Forward and backward of one case through the emulated kernels against the reference.
//
// Rounding model (u = the format's unit roundoff: 2^-8 bf16, 2^-11 f16): the kernels round
// each probability (forward, dk/dv) and each dS (dq, dk) to 16 bits before its second product,
// take delta from the rounded output, and round every result once. A result sum_x w_x y_x then
// errs by at most u (sum_x |w_x y_x|) for the rounded weights, u |result| for the output and,
// for dq and dk, u scale sum_x p_x Delta |y_x| through delta (Delta = sum_d |dout o| bounds the
// delta error over u); f32 accumulation adds far less. The bound is twice that, plus 1e-6.
template <typename Half>
void expect_matches_reference(const Case& c, const char* dtype, uint32_t seed) {
  SCOPED_TRACE(name_of(c, dtype));
  const double u = std::is_same_v<Half, BFloat16> ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
  const int64_t d = c.dim, s = c.seq, group = c.hq / c.hkv;
  const size_t q_size = static_cast<size_t>(c.batch * c.hq * s * d);
  const size_t kv_size = static_cast<size_t>(c.batch * c.hkv * s * d);
  const double scale = c.scale > 0.0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<uint16_t> q, k, v, dout;
  std::vector<double> qd, kd, vd, doutd;
  random_tensor<Half>(q, qd, q_size, seed);
  random_tensor<Half>(k, kd, kv_size, seed + 1);
  random_tensor<Half>(v, vd, kv_size, seed + 2);
  random_tensor<Half>(dout, doutd, q_size, seed + 3);

  // Reference in double.
  std::vector<double> out_ref(q_size), lse_ref(q_size / d), dq_ref(q_size), dk_ref(kv_size),
      dv_ref(kv_size);
  kernels::cpu::attention_forward<double>(out_ref.data(), lse_ref.data(), qd.data(), kd.data(),
                                          vd.data(), c.batch, c.hq, c.hkv, s, d, scale, c.causal);
  kernels::cpu::attention_backward<double>(dq_ref.data(), dk_ref.data(), dv_ref.data(), qd.data(),
                                           kd.data(), vd.data(), lse_ref.data(), doutd.data(),
                                           c.batch, c.hq, c.hkv, s, d, scale, c.causal);

  // The emulated kernels.
  const tc::Problem p =
      tc::contiguous_problem(c.batch, c.hq, c.hkv, s, d, static_cast<float>(scale), c.causal);
  std::vector<uint16_t> out(q_size), dq(q_size), dk(kv_size), dv(kv_size);
  std::vector<float> lse(q_size / d), delta(q_size / d);
  const int64_t query_blocks = c.batch * c.hq * tc::row_tiles(s);
  const int64_t key_blocks = c.batch * c.hkv * tc::row_tiles(s);
  int misaligned = 0;
  // The forward and dq with two 16-row tiles per warp (128-row blocks), where they are built
  // (D <= 64): every row's arithmetic is the M = 1 kernels', so out, lse, dq and delta must be
  // identical (dq from the M = 1 forward's out and lse, like the M = 1 dq).
  std::vector<uint16_t> out_m2(q_size), dq_m2(q_size);
  std::vector<float> lse_m2(q_size / d), delta_m2(q_size / d);
  bool ran_m2 = false;
  // The dk/dv kernel with each warp's K and V fragments kept in registers (D <= 64): the same
  // products in the same order, so identical dk and dv.
  std::vector<uint16_t> dk_kept(kv_size), dv_kept(kv_size);
  auto run = [&]<int D>() {
    if constexpr (D <= 64) {
      constexpr int kRowsM2 = tc::forward_block_rows<2>();
      misaligned +=
          run_grid<Half>(c.batch * c.hq * tc::row_tiles(s, kRowsM2), tc::forward_shared_bytes<D>(),
                         [&](auto& ctx, int64_t block, auto* shared) {
                           tc::forward_block<D, 2>(ctx, block, shared, out_m2.data(), lse_m2.data(),
                                                   q.data(), k.data(), v.data(), p);
                         });
      ran_m2 = true;
    }
    misaligned += run_grid<Half>(query_blocks, tc::forward_shared_bytes<D>(),
                                 [&](auto& ctx, int64_t block, auto* shared) {
                                   tc::forward_block<D>(ctx, block, shared, out.data(), lse.data(),
                                                        q.data(), k.data(), v.data(), p);
                                 });
    misaligned += run_grid<Half>(
        query_blocks, tc::dq_shared_bytes<D>(), [&](auto& ctx, int64_t block, auto* shared) {
          tc::dq_block<D>(ctx, block, shared, dq.data(), delta.data(), q.data(), k.data(), v.data(),
                          out.data(), dout.data(), lse.data(), p);
        });
    misaligned += run_grid<Half>(
        key_blocks, tc::dkdv_shared_bytes<D>(), [&](auto& ctx, int64_t block, auto* shared) {
          tc::dkdv_block<D>(ctx, block, shared, dk.data(), dv.data(), q.data(), k.data(), v.data(),
                            dout.data(), lse.data(), delta.data(), p);
        });
    if constexpr (D <= 64) {
      misaligned += run_grid<Half>(
          key_blocks, tc::dkdv_shared_bytes<D>(), [&](auto& ctx, int64_t block, auto* shared) {
            tc::dkdv_block<D, true>(ctx, block, shared, dk_kept.data(), dv_kept.data(), q.data(),
                                    k.data(), v.data(), dout.data(), lse.data(), delta.data(), p);
          });
      misaligned += run_grid<Half>(
          c.batch * c.hq * tc::row_tiles(s, tc::forward_block_rows<2>()), tc::dq_shared_bytes<D>(),
          [&](auto& ctx, int64_t block, auto* shared) {
            tc::dq_block<D, 2>(ctx, block, shared, dq_m2.data(), delta_m2.data(), q.data(),
                               k.data(), v.data(), out.data(), dout.data(), lse.data(), p);
          });
    }
    // The stored-score backward: delta alone, dk/dv also storing each dS tile, dq from the
    // stored tiles. The score buffer starts as NaN bits: a tile dq reads that dk/dv did not
    // write poisons dq. Every result must be the recomputing kernels' bits.
    {
      std::vector<uint16_t> scores(
          static_cast<size_t>(tc::stored_score_elements(c.batch, c.hq, s, c.causal)), 0xffff);
      std::vector<uint16_t> dq_st(q_size), dk_st(kv_size), dv_st(kv_size);
      std::vector<float> delta_st(q_size / d);
      misaligned += run_grid<Half>(query_blocks, 16, [&](auto& ctx, int64_t block, auto*) {
        tc::delta_block<D>(ctx, block, delta_st.data(), out.data(), dout.data(), p);
      });
      misaligned += run_grid<Half>(
          key_blocks, tc::dkdv_shared_bytes<D>(), [&](auto& ctx, int64_t block, auto* shared) {
            tc::dkdv_block<D, false, true>(ctx, block, shared, dk_st.data(), dv_st.data(), q.data(),
                                           k.data(), v.data(), dout.data(), lse.data(),
                                           delta_st.data(), p, scores.data());
          });
      misaligned += run_grid<Half>(query_blocks, tc::dq_from_scores_shared_bytes<D>(),
                                   [&](auto& ctx, int64_t block, auto* shared) {
                                     tc::dq_from_scores_block<D>(ctx, block, shared, dq_st.data(),
                                                                 k.data(), scores.data(), p);
                                   });
      EXPECT_EQ(delta_st, delta) << "delta computed alone differs from the dq kernel's";
      EXPECT_EQ(dk_st, dk) << "dk of the dk/dv kernel that stores dS differs";
      EXPECT_EQ(dv_st, dv) << "dv of the dk/dv kernel that stores dS differs";
      EXPECT_EQ(dq_st, dq) << "dq from the stored dS differs from the recomputing dq kernel's";
    }
    if (c.strided) {
      // q, v, dout, dq and dk sequence-major with gaps; k, out and dv contiguous (a layout mixed
      // up between two operands reads the wrong elements). The grids run their blocks by head
      // here (each head's tiles together) instead of longest first: a block's (head, tile) must
      // not depend on the order, so the results stay identical.
      SequenceMajor q_s = SequenceMajor::from(q, c.batch, c.hq, s, d, 1);
      SequenceMajor v_s = SequenceMajor::from(v, c.batch, c.hkv, s, d, 1);
      SequenceMajor dout_s = SequenceMajor::from(dout, c.batch, c.hq, s, d, 2);
      SequenceMajor dq_s(c.batch, c.hq, s, d, 3), dk_s(c.batch, c.hkv, s, d, 2);
      tc::Problem ps = p;
      ps.longest_first = !p.longest_first;
      ps.layout.q = q_s.strides();
      ps.layout.v = v_s.strides();
      ps.layout.dout = dout_s.strides();
      ps.layout.dq = dq_s.strides();
      ps.layout.dk = dk_s.strides();
      std::vector<uint16_t> out_c(q_size), dv_c(kv_size);
      std::vector<float> lse_c(q_size / d), delta_c(q_size / d);
      misaligned += run_grid<Half>(
          query_blocks, tc::forward_shared_bytes<D>(), [&](auto& ctx, int64_t block, auto* shared) {
            tc::forward_block<D>(ctx, block, shared, out_c.data(), lse_c.data(), q_s.data.data(),
                                 k.data(), v_s.data.data(), ps);
          });
      misaligned += run_grid<Half>(
          query_blocks, tc::dq_shared_bytes<D>(), [&](auto& ctx, int64_t block, auto* shared) {
            tc::dq_block<D>(ctx, block, shared, dq_s.data.data(), delta_c.data(), q_s.data.data(),
                            k.data(), v_s.data.data(), out_c.data(), dout_s.data.data(),
                            lse_c.data(), ps);
          });
      misaligned += run_grid<Half>(
          key_blocks, tc::dkdv_shared_bytes<D>(), [&](auto& ctx, int64_t block, auto* shared) {
            tc::dkdv_block<D>(ctx, block, shared, dk_s.data.data(), dv_c.data(), q_s.data.data(),
                              k.data(), v_s.data.data(), dout_s.data.data(), lse_c.data(),
                              delta_c.data(), ps);
          });
      // The stored-score backward over the same strided operands, blocks by head.
      std::vector<uint16_t> scores(
          static_cast<size_t>(tc::stored_score_elements(c.batch, c.hq, s, c.causal)), 0xffff);
      SequenceMajor dq_st(c.batch, c.hq, s, d, 1);
      std::vector<uint16_t> dk_st(kv_size), dv_st(kv_size);
      std::vector<float> delta_st(q_size / d);
      misaligned += run_grid<Half>(query_blocks, 16, [&](auto& ctx, int64_t block, auto*) {
        tc::delta_block<D>(ctx, block, delta_st.data(), out_c.data(), dout_s.data.data(), ps);
      });
      tc::Problem pk = ps;  // dk contiguous here: dk_s above checks the strided store
      pk.layout.dk = tc::contiguous_problem(c.batch, c.hq, c.hkv, s, d, 1.0f, c.causal).layout.dk;
      pk.layout.dq = dq_st.strides();
      misaligned += run_grid<Half>(
          key_blocks, tc::dkdv_shared_bytes<D>(), [&](auto& ctx, int64_t block, auto* shared) {
            tc::dkdv_block<D, false, true>(ctx, block, shared, dk_st.data(), dv_st.data(),
                                           q_s.data.data(), k.data(), v_s.data.data(),
                                           dout_s.data.data(), lse_c.data(), delta_st.data(), pk,
                                           scores.data());
          });
      misaligned +=
          run_grid<Half>(query_blocks, tc::dq_from_scores_shared_bytes<D>(),
                         [&](auto& ctx, int64_t block, auto* shared) {
                           tc::dq_from_scores_block<D>(ctx, block, shared, dq_st.data.data(),
                                                       k.data(), scores.data(), pk);
                         });
      EXPECT_EQ(delta_st, delta) << "delta alone over strided operands";
      EXPECT_EQ(dk_st, dk) << "dk storing dS over strided operands";
      EXPECT_EQ(dv_st, dv) << "dv storing dS over strided operands";
      EXPECT_EQ(dq_st.contiguous(), dq) << "dq from stored dS over strided operands";
      EXPECT_EQ(dq_st.gaps_written(), 0) << "dq from stored dS written into the gaps";
      EXPECT_EQ(out_c, out) << "forward over strided operands, blocks by head";
      EXPECT_EQ(lse_c, lse) << "lse over strided operands, blocks by head";
      EXPECT_EQ(dq_s.contiguous(), dq) << "dq over strided operands, blocks by head";
      EXPECT_EQ(delta_c, delta) << "delta over strided operands, blocks by head";
      EXPECT_EQ(dk_s.contiguous(), dk) << "dk over strided operands, blocks by head";
      EXPECT_EQ(dv_c, dv) << "dv over strided operands, blocks by head";
      EXPECT_EQ(dq_s.gaps_written(), 0) << "dq written into the gaps between rows";
      EXPECT_EQ(dk_s.gaps_written(), 0) << "dk written into the gaps between rows";
    }
  };
  switch (d) {
    case 32:
      run.template operator()<32>();
      break;
    case 64:
      run.template operator()<64>();
      break;
    case 96:
      run.template operator()<96>();
      break;
    case 128:
      run.template operator()<128>();
      break;
    default:
      FAIL() << "no tensor-core instantiation for D=" << d;
  }
  EXPECT_EQ(misaligned, 0) << "32-bit or 16-byte accesses off their alignment";
  if (ran_m2) {
    EXPECT_EQ(out_m2, out) << "the forward with two row tiles per warp differs from one";
    EXPECT_EQ(lse_m2, lse) << "lse with two row tiles per warp differs from one";
    EXPECT_EQ(dq_m2, dq) << "dq with two row tiles per warp differs from one";
    EXPECT_EQ(delta_m2, delta) << "delta with two row tiles per warp differs from one";
    EXPECT_EQ(dk_kept, dk) << "dk with the K/V fragments kept in registers differs";
    EXPECT_EQ(dv_kept, dv) << "dv with the K/V fragments kept in registers differs";
  }

  // Bounds from the rounding model, with p and ds recomputed from the reference's lse.
  std::vector<double> out_terms(q_size, 0.0), dq_terms(q_size, 0.0), dk_terms(kv_size, 0.0),
      dv_terms(kv_size, 0.0);
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t h = 0; h < c.hq; ++h) {
      const int64_t bh = b * c.hq + h, bkv = b * c.hkv + h / group;
      for (int64_t i = 0; i < s; ++i) {
        const double* qi = &qd[static_cast<size_t>((bh * s + i) * d)];
        const double* gi = &doutd[static_cast<size_t>((bh * s + i) * d)];
        const double* oi = &out_ref[static_cast<size_t>((bh * s + i) * d)];
        double delta_i = 0.0, delta_abs = 0.0;
        for (int64_t x = 0; x < d; ++x) {
          delta_i += gi[x] * oi[x];
          delta_abs += std::fabs(gi[x] * oi[x]);
        }
        for (int64_t j = 0; j < (c.causal ? i + 1 : s); ++j) {
          const double* kj = &kd[static_cast<size_t>((bkv * s + j) * d)];
          const double* vj = &vd[static_cast<size_t>((bkv * s + j) * d)];
          double score = 0.0, dp = 0.0;
          for (int64_t x = 0; x < d; ++x) {
            score += qi[x] * kj[x];
            dp += gi[x] * vj[x];
          }
          const double prob = std::exp(scale * score - lse_ref[static_cast<size_t>(bh * s + i)]);
          const double ds = prob * (dp - delta_i);
          for (int64_t x = 0; x < d; ++x) {
            const size_t row_i = static_cast<size_t>((bh * s + i) * d + x);
            const size_t row_j = static_cast<size_t>((bkv * s + j) * d + x);
            out_terms[row_i] += prob * std::fabs(vj[x]);
            dq_terms[row_i] += scale * (std::fabs(ds) + prob * delta_abs) * std::fabs(kj[x]);
            dk_terms[row_j] += scale * (std::fabs(ds) + prob * delta_abs) * std::fabs(qi[x]);
            dv_terms[row_j] += prob * std::fabs(gi[x]);
          }
        }
      }
    }
  }
  auto bound_of = [&](const std::vector<double>& terms, const std::vector<double>& ref) {
    std::vector<double> bound(ref.size());
    for (size_t i = 0; i < ref.size(); ++i)
      bound[i] = 2.0 * u * (terms[i] + std::fabs(ref[i])) + 1e-6;
    return bound;
  };
  std::string where;
  EXPECT_LE(worst_excess<Half>(out, out_ref, bound_of(out_terms, out_ref), "out", &where), 0.0)
      << where;
  EXPECT_LE(worst_excess<Half>(dq, dq_ref, bound_of(dq_terms, dq_ref), "dq", &where), 0.0) << where;
  EXPECT_LE(worst_excess<Half>(dk, dk_ref, bound_of(dk_terms, dk_ref), "dk", &where), 0.0) << where;
  EXPECT_LE(worst_excess<Half>(dv, dv_ref, bound_of(dv_terms, dv_ref), "dv", &where), 0.0) << where;
  // lse and delta are f32 results of exact 16-bit products: relative 1e-5 (f32 sums of at most
  // a few hundred terms), delta against the rounded output it is taken from.
  for (size_t r = 0; r < lse.size(); ++r) {
    ASSERT_NEAR(lse[r], lse_ref[r], 1e-5 * (1.0 + std::fabs(lse_ref[r]))) << "lse row " << r;
    double expected_delta = 0.0, delta_abs = 0.0;
    for (int64_t x = 0; x < d; ++x) {
      const size_t e = r * static_cast<size_t>(d) + static_cast<size_t>(x);
      expected_delta += doutd[e] * Half::to_float(out[e]);
      delta_abs += std::fabs(doutd[e] * Half::to_float(out[e]));
    }
    ASSERT_NEAR(delta[r], expected_delta, 1e-6 * (1.0 + delta_abs)) << "delta row " << r;
  }
}

TEST(TensorCoreAttentionEmulated, Bf16GroupedHeadsOverPartialTilesMatchTheReference) {
  // seq 70: a full 64-row tile and a partial one; two query heads per kv head.
  expect_matches_reference<BFloat16>({1, 4, 2, 70, 64, true}, "bf16", 100);
  expect_matches_reference<BFloat16>({1, 4, 2, 70, 64, false}, "bf16", 200);
}

TEST(TensorCoreAttentionEmulated, Bf16LlamaShapedGroupsOfFourMatchTheReference) {
  // Llama-3.2-1B's 4 query heads per kv head at D = 64, seq 100: two query tiles (the last of
  // 36 rows), dk/dv query tiles running across the group's head bounds.
  expect_matches_reference<BFloat16>({1, 4, 1, 100, 64, true, 0.0, /*strided=*/true}, "bf16", 800);
}

TEST(TensorCoreAttentionEmulated, Bf16HeadDims32And128AndOddLengthsMatchTheReference) {
  expect_matches_reference<BFloat16>({2, 2, 1, 33, 32, true, 0.0, /*strided=*/true}, "bf16", 300);
  expect_matches_reference<BFloat16>({1, 2, 2, 19, 128, true}, "bf16", 400);
  expect_matches_reference<BFloat16>({1, 1, 1, 1, 64, true}, "bf16", 500);
}

TEST(TensorCoreAttentionEmulated, HeadDim128OverSeveralTilesWithAnExplicitScaleMatches) {
  // D = 128 (the largest shared-memory layout) across two query tiles and three dk/dv query
  // tiles per head, causal and not, with a scale other than 1 / sqrt(D).
  expect_matches_reference<BFloat16>({1, 2, 1, 80, 128, false, 0.3}, "bf16", 900);
  expect_matches_reference<BFloat16>({1, 2, 1, 80, 128, true, 0.3}, "bf16", 1000);
}

TEST(TensorCoreAttentionEmulated, F16AndHeadDim96MatchTheReference) {
  expect_matches_reference<Float16>({1, 3, 1, 40, 96, true}, "f16", 600);
  expect_matches_reference<Float16>({1, 2, 1, 66, 32, false, 0.0, /*strided=*/true}, "f16", 700);
}

}  // namespace
}  // namespace autotp
