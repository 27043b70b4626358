// CPU GEMM: blocks of op(B) [kc x nc] and op(A) [mc x kc] are packed into contiguous panels,
// and a fixed-size register tile of C (kMr x kNr) is accumulated by a loop the compiler vectorizes.
#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <vector>

namespace autotp::kernels::cpu {

namespace {

// Register tile of C: kMr rows by kNr<T> columns (32 bytes of columns: two SSE or one AVX
// vector per row), small enough to stay in registers on any x86-64 or ARM64 target.
constexpr int64_t kMr = 4;
template <typename T>
constexpr int64_t kNr = static_cast<int64_t>(32 / sizeof(T));

// Cache blocks: a packed op(A) block [kMc x kKc] stays in L2 while it meets every kNr-wide
// panel of the packed op(B) block [kKc x kNc]; one B panel [kKc x kNr] stays in L1.
constexpr int64_t kKc = 256;
constexpr int64_t kMc = 64;
constexpr int64_t kNc = 1024;

int64_t round_up(int64_t x, int64_t multiple) {
  return (x + multiple - 1) / multiple * multiple;
}

// A row-major operand read through an optional transpose: at(r, c) = op(M)(r, c).
template <typename T>
struct Operand {
  const T* data;
  int64_t ld;
  bool trans;
  T at(int64_t r, int64_t c) const { return trans ? data[c * ld + r] : data[r * ld + c]; }
};

// Packs op(A)[i0 : i0 + mc, p0 : p0 + kc] into panels of kMr rows: panel q holds, for each p
// in turn, the kMr values op(A)(i0 + q * kMr + r, p0 + p), r < kMr; rows past mc are zero.
template <typename T>
void pack_a(T* dst, const Operand<T>& a, int64_t i0, int64_t mc, int64_t p0, int64_t kc) {
  for (int64_t ir = 0; ir < mc; ir += kMr) {
    const int64_t rows = std::min(kMr, mc - ir);
    for (int64_t p = 0; p < kc; ++p) {
      for (int64_t r = 0; r < kMr; ++r) {
        dst[p * kMr + r] = r < rows ? a.at(i0 + ir + r, p0 + p) : T(0);
      }
    }
    dst += kMr * kc;
  }
}

// Packs op(B)[p0 : p0 + kc, j0 : j0 + nc] into panels of kNr columns: panel q holds, for each
// p in turn, the kNr values op(B)(p0 + p, j0 + q * kNr + j); columns past nc are zero.
template <typename T>
void pack_b(T* dst, const Operand<T>& b, int64_t p0, int64_t kc, int64_t j0, int64_t nc) {
  constexpr int64_t nr = kNr<T>;
  for (int64_t jr = 0; jr < nc; jr += nr) {
    const int64_t cols = std::min(nr, nc - jr);
    for (int64_t p = 0; p < kc; ++p) {
      for (int64_t j = 0; j < nr; ++j) {
        dst[p * nr + j] = j < cols ? b.at(p0 + p, j0 + jr + j) : T(0);
      }
    }
    dst += nr * kc;
  }
}

// c[0:rows, 0:cols] += alpha * (A panel [kc x kMr]^T @ B panel [kc x kNr]).
template <typename T>
void micro_kernel(T* c, int64_t ldc, const T* ap, const T* bp, int64_t kc, int64_t rows,
                  int64_t cols, T alpha) {
  constexpr int64_t nr = kNr<T>;
  T acc[kMr][nr] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const T* av = ap + p * kMr;
    const T* bv = bp + p * nr;
    for (int64_t r = 0; r < kMr; ++r) {
      for (int64_t j = 0; j < nr; ++j)
        acc[r][j] += av[r] * bv[j];
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j)
      c[r * ldc + j] += alpha * acc[r][j];
  }
}

// C = beta * C (beta == 0 writes zeros without reading C).
template <typename T>
void scale_c(T* c, int64_t ldc, int64_t m, int64_t n, T beta) {
  if (beta == T(1)) return;
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if (beta == T(0)) {
      std::fill(row, row + n, T(0));
    } else {
      for (int64_t j = 0; j < n; ++j)
        row[j] *= beta;
    }
  }
}

// Packing buffers sized for the largest blocks of one problem, reused across a batch.
template <typename T>
struct Workspace {
  std::vector<T> a_pack, b_pack;
  Workspace(int64_t m, int64_t n, int64_t k) {
    const int64_t kc = std::min(kKc, k);
    a_pack.resize(static_cast<size_t>(round_up(std::min(kMc, m), kMr) * kc));
    b_pack.resize(static_cast<size_t>(round_up(std::min(kNc, n), kNr<T>) * kc));
  }
};

template <typename T>
void gemm_blocked(Workspace<T>& ws, T* c, int64_t ldc, const Operand<T>& a, const Operand<T>& b,
                  int64_t m, int64_t n, int64_t k, T alpha, T beta) {
  if (m <= 0 || n <= 0) return;
  scale_c(c, ldc, m, n, beta);
  if (k <= 0 || alpha == T(0)) return;
  constexpr int64_t nr = kNr<T>;
  for (int64_t j0 = 0; j0 < n; j0 += kNc) {
    const int64_t nc = std::min(kNc, n - j0);
    for (int64_t p0 = 0; p0 < k; p0 += kKc) {
      const int64_t kc = std::min(kKc, k - p0);
      pack_b(ws.b_pack.data(), b, p0, kc, j0, nc);
      for (int64_t i0 = 0; i0 < m; i0 += kMc) {
        const int64_t mc = std::min(kMc, m - i0);
        pack_a(ws.a_pack.data(), a, i0, mc, p0, kc);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          for (int64_t ir = 0; ir < mc; ir += kMr) {
            micro_kernel(c + (i0 + ir) * ldc + j0 + jr, ldc, ws.a_pack.data() + ir * kc,
                         ws.b_pack.data() + jr * kc, kc, std::min(kMr, mc - ir),
                         std::min(nr, nc - jr), alpha);
          }
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void gemm(T* c, int64_t ldc, const T* a, int64_t lda, bool trans_a, const T* b, int64_t ldb,
          bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, T beta) {
  gemm_strided_batched(c, ldc, 0, a, lda, 0, trans_a, b, ldb, 0, trans_b, m, n, k, alpha, beta, 1);
}

template <typename T>
void gemm_strided_batched(T* c, int64_t ldc, int64_t stride_c, const T* a, int64_t lda,
                          int64_t stride_a, bool trans_a, const T* b, int64_t ldb, int64_t stride_b,
                          bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, T beta,
                          int64_t batch) {
  if (batch <= 0 || m <= 0 || n <= 0) return;
  Workspace<T> ws(m, n, k);
  for (int64_t i = 0; i < batch; ++i) {
    const Operand<T> op_a{a + i * stride_a, lda, trans_a};
    const Operand<T> op_b{b + i * stride_b, ldb, trans_b};
    gemm_blocked(ws, c + i * stride_c, ldc, op_a, op_b, m, n, k, alpha, beta);
  }
}

#define AUTOTP_INSTANTIATE(T)                                                                   \
  template void gemm<T>(T*, int64_t, const T*, int64_t, bool, const T*, int64_t, bool, int64_t, \
                        int64_t, int64_t, T, T);                                                \
  template void gemm_strided_batched<T>(T*, int64_t, int64_t, const T*, int64_t, int64_t, bool, \
                                        const T*, int64_t, int64_t, bool, int64_t, int64_t,     \
                                        int64_t, T, T, int64_t);
AUTOTP_INSTANTIATE(float)
AUTOTP_INSTANTIATE(double)
#undef AUTOTP_INSTANTIATE

}  // namespace autotp::kernels::cpu
