// CPU reference GEMM, BLAS-like on row-major matrices: C = alpha * op(A) op(B) + beta * C,
// single and strided-batched. Cache-blocked over N/K/M with packed panels (f32 and f64).
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// C[M, N] = alpha * op(A)[M, K] @ op(B)[K, N] + beta * C, all row-major with leading
// dimensions (the element distance between consecutive rows):
//   op(A)(i, p) = trans_a ? a[p * lda + i] : a[i * lda + p]
//   op(B)(p, j) = trans_b ? b[j * ldb + p] : b[p * ldb + j]
//   C(i, j)     = c[i * ldc + j]
// beta == 0 overwrites C without reading it (NaNs in C do not propagate); K == 0 gives beta * C.
// A and B may alias each other (read only) but not C. Deterministic: the summation order
// depends only on the sizes. Accumulation is in T: an f32 GEMM sums in f32 (per K-block of
// the register tile, then into C), so its rounding error grows like K * eps_f32.
template <typename T>
void gemm(T* c, int64_t ldc, const T* a, int64_t lda, bool trans_a, const T* b, int64_t ldb,
          bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, T beta);

// `batch` independent GEMMs; matrix i uses c + i * stride_c, a + i * stride_a, b + i * stride_b
// (all in elements). A stride of 0 shares that operand across the batch (not allowed for C
// unless batch <= 1).
template <typename T>
void gemm_strided_batched(T* c, int64_t ldc, int64_t stride_c, const T* a, int64_t lda,
                          int64_t stride_a, bool trans_a, const T* b, int64_t ldb, int64_t stride_b,
                          bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, T beta,
                          int64_t batch);

}  // namespace autotp::kernels::cpu
