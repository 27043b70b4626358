// Row-major GEMM on cuBLASLt / cuBLAS. cuBLAS is column-major: a row-major [R, C] matrix with
// leading dimension ld is, read column-major, its transpose [C, R] with the same ld, so
// C = op(A) op(B) is computed as the column-major product C^T = op(B)^T op(A)^T, i.e. with
// cuBLAS operands (first B, then A), sizes (N, M, K) and the same transpose flags.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/device_guard.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/launch.cuh"

namespace autotp::kernels::cuda {

namespace {

// RAII owners of the cuBLASLt descriptors of one call.
struct MatmulDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  MatmulDesc(cublasComputeType_t compute, cudaDataType_t scale) {
    AUTOTP_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, compute, scale));
  }
  ~MatmulDesc() { cublasLtMatmulDescDestroy(desc); }
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
};

struct MatrixLayout {
  cublasLtMatrixLayout_t layout = nullptr;
  // A column-major [rows, cols] matrix with leading dimension ld, `batch` of them `stride` apart.
  MatrixLayout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
               int64_t stride) {
    AUTOTP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, type, static_cast<uint64_t>(rows),
                                                   static_cast<uint64_t>(cols), ld));
    const int32_t count = static_cast<int32_t>(batch);
    AUTOTP_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                         &count, sizeof(count)));
    AUTOTP_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
  ~MatrixLayout() { cublasLtMatrixLayoutDestroy(layout); }
  MatrixLayout(const MatrixLayout&) = delete;
  MatrixLayout& operator=(const MatrixLayout&) = delete;
};

struct Preference {
  cublasLtMatmulPreference_t pref = nullptr;
  Preference() { AUTOTP_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref)); }
  ~Preference() { cublasLtMatmulPreferenceDestroy(pref); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  void set_u32(cublasLtMatmulPreferenceAttributes_t attribute, uint32_t value) {
    AUTOTP_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof(value)));
  }
  void set_u64(cublasLtMatmulPreferenceAttributes_t attribute, uint64_t value) {
    AUTOTP_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof(value)));
  }
};

// The largest power of two (<= 256) dividing the byte address of every column of every matrix
// of the batch: cuBLASLt assumes 256-byte aligned operands unless told otherwise.
uint32_t alignment_bytes(const void* ptr, int64_t ld, int64_t stride_elems, int64_t batch,
                         size_t itemsize) {
  uint64_t bits = reinterpret_cast<uintptr_t>(ptr) | 256u;
  bits |= static_cast<uint64_t>(ld) * itemsize;
  if (batch > 1) bits |= static_cast<uint64_t>(stride_elems) * itemsize;
  return static_cast<uint32_t>(bits & (~bits + 1));  // lowest set bit
}

// What a cuBLASLt GEMM of one shape needs beyond its pointers: the descriptors and the
// algorithm the heuristic picked for them (or none: cuBLAS's GEMM then runs instead).
struct LtPlan {
  MatmulDesc op{CUBLAS_COMPUTE_32F, CUDA_R_32F};
  std::unique_ptr<MatrixLayout> layout1, layout2, layout_c;
  cublasLtMatmulAlgo_t algo = {};
  bool use_cublas = false;
  // Whether `algo` may write D somewhere other than C (CUBLASLT_ALGO_CAP_OUT_OF_PLACE_RESULT_
  // SUPPORT); without it a call with a separate C copies C into D and runs in place.
  bool out_of_place = false;
};

}  // namespace

// Plans by (dtype, transposes, sizes, leading dims, batch strides, operand alignments): all a
// plan's preferences depend on (the dtype decides the split-K reduction schemes); whether C
// is separate from D is not in the key, the plan records if its algorithm allows that.
// Bounded: a context that sees more shapes than kMaxPlans starts over.
struct GemmPlanCache {
  static constexpr size_t kMaxPlans = 4096;
  std::mutex mutex;
  std::map<std::array<int64_t, 16>, std::unique_ptr<LtPlan>> plans;
};

namespace {

std::string sizes_text(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                       bool trans_a, bool trans_b, int64_t batch, int dtype) {
  return "M=" + std::to_string(m) + ", N=" + std::to_string(n) + ", K=" + std::to_string(k) +
         ", lda=" + std::to_string(lda) + (trans_a ? " (A transposed)" : "") +
         ", ldb=" + std::to_string(ldb) + (trans_b ? " (B transposed)" : "") +
         ", ldc=" + std::to_string(ldc) + ", batch=" + std::to_string(batch) + ", dtype " +
         dtype_code_name(dtype);
}

// c = beta * c for the K == 0 case (beta == 0 writes zeros without reading c).
template <typename T>
__global__ void scale_matrices_kernel(T* c, int64_t ldc, int64_t stride_c, int64_t m, int64_t n,
                                      int64_t batch, ComputeType<T> beta) {
  const int64_t total = batch * m * n;
  for (int64_t e = global_thread_index(); e < total; e += grid_thread_count()) {
    const int64_t b = e / (m * n), i = (e / n) % m, j = e % n;
    T& x = c[b * stride_c + i * ldc + j];
    x = beta == ComputeType<T>(0) ? convert<T>(ComputeType<T>(0)) : convert<T>(beta * widen(x));
  }
}

// Bytes per element of the GEMM dtypes (0 for others: the dtype switch rejects those).
size_t gemm_itemsize(int dtype) {
  switch (static_cast<DTypeCode>(dtype)) {
    case DTypeCode::F64:
      return 8;
    case DTypeCode::F32:
      return 4;
    case DTypeCode::BF16:
    case DTypeCode::F16:
      return 2;
    default:
      return 0;
  }
}

// Copies `batch` row-major [m, n] matrices (leading dimension ld, `stride` elements apart)
// from src to dst on `stream`.
void copy_matrices(void* dst, const void* src, size_t itemsize, int64_t ld, int64_t stride,
                   int64_t m, int64_t n, int64_t batch, cudaStream_t stream) {
  for (int64_t i = 0; i < batch; ++i) {
    const size_t offset = static_cast<size_t>(i * stride) * itemsize;
    AUTOTP_CUDA_CHECK(
        cudaMemcpy2DAsync(static_cast<char*>(dst) + offset, static_cast<size_t>(ld) * itemsize,
                          static_cast<const char*>(src) + offset,
                          static_cast<size_t>(ld) * itemsize, static_cast<size_t>(n) * itemsize,
                          static_cast<size_t>(m), cudaMemcpyDeviceToDevice, stream));
  }
}

// The plan of one GEMM shape: descriptors, preferences and the heuristic's first algorithm.
std::unique_ptr<LtPlan> make_plan(cublasLtHandle_t handle, cudaDataType_t type, int64_t lda,
                                  bool trans_a, int64_t ldb, bool trans_b, int64_t ldc, int64_t m,
                                  int64_t n, int64_t k, int64_t batch, int64_t stride_a,
                                  int64_t stride_b, int64_t stride_c, uint32_t align_a,
                                  uint32_t align_b, uint32_t align_c) {
  auto plan = std::make_unique<LtPlan>();
  // cuBLAS operand 1 is our B, operand 2 our A (see the file comment).
  const cublasOperation_t op1 = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op2 = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  AUTOTP_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op.desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                     &op1, sizeof(op1)));
  AUTOTP_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op.desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                     &op2, sizeof(op2)));
  // Column-major layouts of the stored matrices (before the op): op1(operand 1) is [N, K],
  // op2(operand 2) is [K, M], C is [N, M].
  plan->layout1 =
      std::make_unique<MatrixLayout>(type, trans_b ? k : n, trans_b ? n : k, ldb, batch, stride_b);
  plan->layout2 =
      std::make_unique<MatrixLayout>(type, trans_a ? m : k, trans_a ? k : m, lda, batch, stride_a);
  plan->layout_c = std::make_unique<MatrixLayout>(type, n, m, ldc, batch, stride_c);

  Preference pref;
  pref.set_u64(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, GemmContext::kWorkspaceBytes);
  // Split-K partial sums stay in f32, the compute type: never rounded to a 16-bit output type
  // in between (gemm.h's one rounding on store). The in-place scheme reduces in the output
  // buffer and its dtype, so only an f32 output may use it; the cache key holds the dtype.
  uint32_t reduction = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  if (type == CUDA_R_32F) reduction |= CUBLASLT_REDUCTION_SCHEME_INPLACE;
  pref.set_u32(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, reduction);
  pref.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_b);
  pref.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_a);
  pref.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c);
  pref.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c);

  cublasLtMatmulHeuristicResult_t heuristic = {};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      handle, plan->op.desc, plan->layout1->layout, plan->layout2->layout, plan->layout_c->layout,
      plan->layout_c->layout, pref.pref, 1, &heuristic, &found);
  if (status != CUBLAS_STATUS_NOT_SUPPORTED) AUTOTP_CUBLAS_CHECK(status);
  plan->use_cublas = status == CUBLAS_STATUS_NOT_SUPPORTED || found == 0 ||
                     heuristic.state != CUBLAS_STATUS_SUCCESS;
  if (plan->use_cublas) return plan;
  plan->algo = heuristic.algo;
  int32_t out_of_place = 0;
  size_t written = 0;
  AUTOTP_CUBLAS_CHECK(
      cublasLtMatmulAlgoCapGetAttribute(&plan->algo, CUBLASLT_ALGO_CAP_OUT_OF_PLACE_RESULT_SUPPORT,
                                        &out_of_place, sizeof(out_of_place), &written));
  plan->out_of_place = written == sizeof(out_of_place) && out_of_place != 0;
  return plan;
}

// f32 / bf16 / f16 through cuBLASLt with f32 compute.
// `c_in` is the C read with beta (the same layout as the output c; c itself for in place).
void lt_gemm(GemmContext& ctx, cudaDataType_t type, size_t itemsize, void* c, const void* c_in,
             int64_t ldc, int64_t stride_c, const void* a, int64_t lda, int64_t stride_a,
             bool trans_a, const void* b, int64_t ldb, int64_t stride_b, bool trans_b, int64_t m,
             int64_t n, int64_t k, float alpha, float beta, int64_t batch, cudaStream_t stream) {
  const uint32_t align_b = alignment_bytes(b, ldb, stride_b, batch, itemsize);
  const uint32_t align_a = alignment_bytes(a, lda, stride_a, batch, itemsize);
  const uint32_t align_c = std::min(alignment_bytes(c, ldc, stride_c, batch, itemsize),
                                    alignment_bytes(c_in, ldc, stride_c, batch, itemsize));
  const std::array<int64_t, 16> key = {static_cast<int64_t>(type),
                                       trans_a,
                                       trans_b,
                                       m,
                                       n,
                                       k,
                                       lda,
                                       ldb,
                                       ldc,
                                       stride_a,
                                       stride_b,
                                       stride_c,
                                       batch,
                                       align_a,
                                       align_b,
                                       align_c};
  auto handle = static_cast<cublasLtHandle_t>(ctx.lt_handle());
  GemmPlanCache& cache = ctx.plans();
  const LtPlan* plan = nullptr;
  {
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto found = cache.plans.find(key);
    if (found == cache.plans.end()) {
      if (cache.plans.size() >= GemmPlanCache::kMaxPlans) cache.plans.clear();
      found =
          cache.plans
              .emplace(key, make_plan(handle, type, lda, trans_a, ldb, trans_b, ldc, m, n, k, batch,
                                      stride_a, stride_b, stride_c, align_a, align_b, align_c))
              .first;
    }
    plan = found->second.get();
  }
  if (plan->use_cublas) {
    // No cuBLASLt kernel for this alignment or shape: cuBLAS's strided-batched GEMM takes any
    // (same operands, same f32 compute; it may pick another summation order). It reads C in
    // place only, so a separate C is copied there first.
    if (c_in != c) copy_matrices(c, c_in, itemsize, ldc, stride_c, m, n, batch, stream);
    const cublasOperation_t op1 = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op2 = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    auto blas = static_cast<cublasHandle_t>(ctx.blas_handle());
    AUTOTP_CUBLAS_CHECK(cublasSetStream(blas, stream));
    AUTOTP_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
        blas, op1, op2, n, m, k, &alpha, b, type, ldb, stride_b, a, type, lda, stride_a, &beta, c,
        type, ldc, stride_c, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  if (c_in != c && !plan->out_of_place) {
    // This algorithm writes D only over C: C into D first, then in place (the plan's C
    // alignment is the lower of both, so it holds for D alone).
    copy_matrices(c, c_in, itemsize, ldc, stride_c, m, n, batch, stream);
    c_in = c;
  }
  AUTOTP_CUBLAS_CHECK(cublasLtMatmul(handle, plan->op.desc, &alpha, b, plan->layout1->layout, a,
                                     plan->layout2->layout, &beta, c_in, plan->layout_c->layout, c,
                                     plan->layout_c->layout, &plan->algo, ctx.workspace(),
                                     GemmContext::kWorkspaceBytes, stream));
}

}  // namespace

GemmContext::GemmContext(int device) : plans_(std::make_unique<GemmPlanCache>()), device_(device) {
  ScopedDevice guard(device);
  cublasLtHandle_t lt = nullptr;
  AUTOTP_CUBLAS_CHECK(cublasLtCreate(&lt));
  lt_handle_ = lt;
  cublasHandle_t blas = nullptr;
  const cublasStatus_t status = cublasCreate(&blas);
  if (status != CUBLAS_STATUS_SUCCESS) {
    cublasLtDestroy(lt);
    AUTOTP_CUBLAS_CHECK(status);
  }
  blas_handle_ = blas;
  const cudaError_t error = cudaMalloc(&workspace_, kWorkspaceBytes);
  if (error != cudaSuccess) {
    cublasDestroy(blas);
    cublasLtDestroy(lt);
    AUTOTP_CUDA_CHECK(error);
  }
}

GemmContext::~GemmContext() {
  plans_.reset();  // the descriptors go before the handles
  int previous = 0;
  const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device_ &&
                        cudaSetDevice(device_) == cudaSuccess;
  cudaFree(workspace_);
  cublasDestroy(static_cast<cublasHandle_t>(blas_handle_));
  cublasLtDestroy(static_cast<cublasLtHandle_t>(lt_handle_));
  if (switched) cudaSetDevice(previous);
  cudaGetLastError();  // a failure while tearing down is not reported to the next launch
}

GemmContext& GemmContext::for_device(int device) {
  static std::mutex mutex;
  static auto* contexts = new std::map<int, std::unique_ptr<GemmContext>>();  // never freed
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<GemmContext>& slot = (*contexts)[device];
  if (!slot) slot = std::make_unique<GemmContext>(device);
  return *slot;
}

void gemm_strided_batched(GemmContext& ctx, int dtype, void* c, int64_t ldc, int64_t stride_c,
                          const void* a, int64_t lda, int64_t stride_a, bool trans_a, const void* b,
                          int64_t ldb, int64_t stride_b, bool trans_b, int64_t m, int64_t n,
                          int64_t k, double alpha, double beta, int64_t batch, cudaStream_t stream,
                          const void* c_in) {
  // Built only for an error message (this runs for every GEMM of a step).
  const auto what = [&] {
    return sizes_text(m, n, k, lda, ldb, ldc, trans_a, trans_b, batch, dtype);
  };
  if (m < 0 || n < 0 || k < 0 || batch < 0) {
    throw std::invalid_argument("gemm_strided_batched: negative size (" + what() + ")");
  }
  if (m == 0 || n == 0 || batch == 0) return;
  // Column-major requirements on the stored matrices (see the file comment).
  const bool lds_ok = ldc >= std::max<int64_t>(n, 1) &&
                      lda >= std::max<int64_t>(trans_a ? m : k, 1) &&
                      ldb >= std::max<int64_t>(trans_b ? k : n, 1);
  if (!lds_ok) {
    throw std::invalid_argument("gemm_strided_batched: leading dimensions too small for cuBLAS (" +
                                what() + ")");
  }
  if (batch > 1 && stride_c == 0) {
    throw std::invalid_argument("gemm_strided_batched: C needs a nonzero batch stride (" + what() +
                                ")");
  }
  if (batch > INT32_MAX) {
    throw std::invalid_argument("gemm_strided_batched: batch too large for cuBLAS (" + what() +
                                ")");
  }
  ScopedDevice guard(ctx.device());
  // The C that beta scales: c itself unless a separate input is given (and read at all).
  if (c_in == nullptr || beta == 0.0) c_in = c;
  if (c_in != c && (k == 0 || static_cast<DTypeCode>(dtype) == DTypeCode::F64)) {
    // then in place
    copy_matrices(c, c_in, gemm_itemsize(dtype), ldc, stride_c, m, n, batch, stream);
    c_in = c;
  }
  if (k == 0) {  // no products: C = beta * C, done here (cuBLAS may reject K = 0)
    dispatch_float_code(dtype, "gemm_strided_batched", [&]<typename T>(TypeTag<T>) {
      scale_matrices_kernel<T><<<blocks_for(batch * m * n), kThreadsPerBlock, 0, stream>>>(
          static_cast<T*>(c), ldc, stride_c, m, n, batch, static_cast<ComputeType<T>>(beta));
      AUTOTP_CUDA_CHECK_LAUNCH("gemm_strided_batched: scale_matrices_kernel", {"m", m}, {"n", n},
                               {"batch", batch}, {"dtype", dtype});
    });
    return;
  }
  switch (static_cast<DTypeCode>(dtype)) {
    case DTypeCode::F32:
      lt_gemm(ctx, CUDA_R_32F, sizeof(float), c, c_in, ldc, stride_c, a, lda, stride_a, trans_a, b,
              ldb, stride_b, trans_b, m, n, k, static_cast<float>(alpha), static_cast<float>(beta),
              batch, stream);
      return;
    case DTypeCode::BF16:
      lt_gemm(ctx, CUDA_R_16BF, sizeof(bf16), c, c_in, ldc, stride_c, a, lda, stride_a, trans_a, b,
              ldb, stride_b, trans_b, m, n, k, static_cast<float>(alpha), static_cast<float>(beta),
              batch, stream);
      return;
    case DTypeCode::F16:
      lt_gemm(ctx, CUDA_R_16F, sizeof(f16), c, c_in, ldc, stride_c, a, lda, stride_a, trans_a, b,
              ldb, stride_b, trans_b, m, n, k, static_cast<float>(alpha), static_cast<float>(beta),
              batch, stream);
      return;
    case DTypeCode::F64: {
      auto handle = static_cast<cublasHandle_t>(ctx.blas_handle());
      AUTOTP_CUBLAS_CHECK(cublasSetStream(handle, stream));
      AUTOTP_CUBLAS_CHECK(cublasDgemmStridedBatched_64(
          handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
          &alpha, static_cast<const double*>(b), ldb, stride_b, static_cast<const double*>(a), lda,
          stride_a, &beta, static_cast<double*>(c), ldc, stride_c, batch));
      return;
    }
    default:
      throw_unsupported_dtype("gemm_strided_batched", dtype, "f32, f64, bf16 or f16");
  }
}

}  // namespace autotp::kernels::cuda
