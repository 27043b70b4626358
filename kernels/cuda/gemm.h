// CUDA GEMM on row-major matrices (the contract of kernels/cpu/gemm.h): strided-batched
// C = alpha * op(A) op(B) + beta * C through cuBLASLt (f32, bf16, f16) and cuBLAS (f64).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/cuda/stream.h"
#include "kernels/gemm_algorithm_search.h"

namespace autotp::kernels::cuda {

// The cuBLASLt and cuBLAS handles of one CUDA device and the cuBLASLt workspace (device
// memory), created together and released together (RAII, move-only by being non-copyable).
// Ownership: GemmContext::for_device() is the one process-wide cache of these contexts, one
// per device, created on first use and owned by a function-local static. Like the caching
// allocator (core/cuda_allocator.h) the cached contexts are never destroyed, since GEMMs may
// run during static destruction and the CUDA runtime may already be unloaded at exit; the
// driver reclaims the handles and the workspace then. A context created directly (tests,
// or a caller that wants its own) is destroyed normally.
// A context's workspace is shared by every GEMM run with it: use one context per stream that
// runs GEMMs concurrently (today every op runs on the legacy default stream).
struct GemmPlanCache;  // gemm.cu: cuBLASLt descriptors and algorithms by GEMM shape

class GemmContext {
 public:
  static constexpr size_t kWorkspaceBytes = size_t(32)
                                            << 20;  // 32 MiB, cuBLASLt's suggestion for Hopper

  explicit GemmContext(int device);
  ~GemmContext();
  GemmContext(const GemmContext&) = delete;
  GemmContext& operator=(const GemmContext&) = delete;

  // The cached context of CUDA device `device` (see the ownership note above). Thread-safe.
  static GemmContext& for_device(int device);

  int device() const { return device_; }
  void* lt_handle() const { return lt_handle_; }      // cublasLtHandle_t
  void* blas_handle() const { return blas_handle_; }  // cublasHandle_t
  void* workspace() const { return workspace_; }      // kWorkspaceBytes of device memory
  // The plans of the GEMM shapes run with this context (descriptors and the algorithm the
  // heuristic chose), so a training step's repeated shapes skip the heuristic query.
  GemmPlanCache& plans() const { return *plans_; }

  // Autotune (off by default; `kernels.gemm_autotune` in a config): each GEMM shape's first
  // calls time up to 8 of cuBLASLt's heuristic candidates (two runs each, on the calls' own
  // operands, every run a complete GEMM whose result stands) and later calls run the fastest;
  // the heuristic's first pick stays unless another is more than 1 % faster. A call with
  // beta == 0 runs all its shape's timings at once; an accumulating one times one run per
  // call. Timings are read back when they are done, never waited for. Results stay within
  // GEMM rounding of each other but may differ bit-wise between runs that keep different
  // algorithms. Switching it clears the plans (and the report).
  void set_autotune(bool on);
  bool autotune() const;
  kernels::GemmAutotuneReport autotune_report() const;

 private:
  std::unique_ptr<GemmPlanCache> plans_;
  int device_;
  void* lt_handle_ = nullptr;
  void* blas_handle_ = nullptr;
  void* workspace_ = nullptr;
};

// `batch` independent GEMMs on row-major matrices, exactly the contract of
// kernels/cpu/gemm.h's gemm_strided_batched (strides and leading dimensions in elements):
//   op(A)(i, p) = trans_a ? a[p * lda + i] : a[i * lda + p]      op(A) is [M, K]
//   op(B)(p, j) = trans_b ? b[j * ldb + p] : b[p * ldb + j]      op(B) is [K, N]
//   C(i, j)     = c[i * ldc + j]                                 C is [M, N]
// and matrix i of the batch at a + i * stride_a, b + i * stride_b, c + i * stride_c (a stride
// of 0 shares A or B). beta == 0 overwrites C without reading it; K == 0 gives beta * C.
// `c_in`, when not null, is the C that beta scales, laid out like the output c (ldc, stride_c)
// and not overlapping it unless equal: c = alpha * op(A) op(B) + beta * c_in (a residual added
// in the GEMM's epilogue); null reads c itself.
// Leading dimensions must be valid for cuBLAS: lda >= (trans_a ? M : K), ldb >= (trans_b ?
// K : N), ldc >= N, all >= 1 (the caller normalizes the leading dimension of a single row or
// column; violations throw std::invalid_argument naming the sizes).
// Dtypes (DTypeCode): f32 (f32 compute, no TF32), bf16 and f16 (16-bit A/B/C, f32 accumulate
// and f32 alpha/beta, one rounding on store), f64 (cuBLAS). Runs on ctx's device, async on
// `stream`; not bit-deterministic across cuBLAS versions or GPUs, but repeatable on one.
void gemm_strided_batched(GemmContext& ctx, int dtype, void* c, int64_t ldc, int64_t stride_c,
                          const void* a, int64_t lda, int64_t stride_a, bool trans_a, const void* b,
                          int64_t ldb, int64_t stride_b, bool trans_b, int64_t m, int64_t n,
                          int64_t k, double alpha, double beta, int64_t batch, cudaStream_t stream,
                          const void* c_in = nullptr);

}  // namespace autotp::kernels::cuda
