// Row-major GEMM on cuBLASLt / cuBLAS. cuBLAS is column-major: a row-major [R, C] matrix with
// leading dimension ld is, read column-major, its transpose [C, R] with the same ld, so
// C = op(A) op(B) is computed as the column-major product C^T = op(B)^T op(A)^T, i.e. with
// cuBLAS operands (first B, then A), sizes (N, M, K) and the same transpose flags.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/device_guard.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/gemm_algorithm_search.h"

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

// One algorithm a plan may run, with whether it may write D somewhere other than C
// (CUBLASLT_ALGO_CAP_OUT_OF_PLACE_RESULT_SUPPORT); without it a call with a separate C copies C
// into D and runs in place.
struct LtCandidate {
  cublasLtMatmulAlgo_t algo = {};
  bool out_of_place = false;
};

// A start and a stop event around one timed run (timing enabled). Destroying an event whose
// run has not finished is allowed: CUDA releases it when it completes.
struct TimingEvents {
  cudaEvent_t start = nullptr, stop = nullptr;
  TimingEvents() {
    AUTOTP_CUDA_CHECK(cudaEventCreate(&start));
    const cudaError_t error = cudaEventCreate(&stop);
    if (error != cudaSuccess) {
      cudaEventDestroy(start);
      AUTOTP_CUDA_CHECK(error);
    }
  }
  ~TimingEvents() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  TimingEvents(const TimingEvents&) = delete;
  TimingEvents& operator=(const TimingEvents&) = delete;
};

// A plan's autotune while it lasts: the search and the timed runs not yet read back.
struct LtSearch {
  explicit LtSearch(int candidates) : search(candidates, kTimingsPerCandidate) {}
  static constexpr int kTimingsPerCandidate = 2;
  kernels::GemmAlgorithmSearch search;
  struct Timing {
    int candidate;
    std::unique_ptr<TimingEvents> events;
  };
  std::vector<Timing> in_flight;
};

// What a cuBLASLt GEMM of one shape needs beyond its pointers: the descriptors and the
// algorithms the heuristic offered for them (none: cuBLAS's GEMM then runs instead). Without
// autotune the heuristic's first is the only candidate; with it, up to kAutotuneCandidates
// are timed on the calls' own operands and `chosen` becomes the fastest (see lt_gemm).
struct LtPlan {
  MatmulDesc op{CUBLAS_COMPUTE_32F, CUDA_R_32F};
  std::unique_ptr<MatrixLayout> layout1, layout2, layout_c;
  std::vector<LtCandidate> candidates;
  int chosen = 0;
  std::unique_ptr<LtSearch> search;  // present while the autotune of this shape runs
  bool use_cublas = false;
};

constexpr int kAutotuneCandidates = 8;

}  // namespace

// Plans by (dtype, transposes, sizes, leading dims, batch strides, operand alignments): all a
// plan's preferences depend on (the dtype decides the split-K reduction schemes); whether C
// is separate from D is not in the key, the plan records if its algorithm allows that.
// Bounded: a context that sees more shapes than kMaxPlans starts over.
// The mutex is held while a plan is used (its search state changes on every call it lasts).
struct GemmPlanCache {
  static constexpr size_t kMaxPlans = 4096;
  std::mutex mutex;
  std::map<std::array<int64_t, 16>, std::unique_ptr<LtPlan>> plans;
  bool autotune = false;
  kernels::GemmAutotuneReport report;  // the searches finished since autotune was switched on
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

// The plan of one GEMM shape: descriptors, preferences and the heuristic's first algorithm, or
// with `autotune` its first kAutotuneCandidates and a search among them.
std::unique_ptr<LtPlan> make_plan(cublasLtHandle_t handle, cudaDataType_t type, int64_t lda,
                                  bool trans_a, int64_t ldb, bool trans_b, int64_t ldc, int64_t m,
                                  int64_t n, int64_t k, int64_t batch, int64_t stride_a,
                                  int64_t stride_b, int64_t stride_c, uint32_t align_a,
                                  uint32_t align_b, uint32_t align_c, bool autotune) {
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

  std::array<cublasLtMatmulHeuristicResult_t, kAutotuneCandidates> heuristics = {};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      handle, plan->op.desc, plan->layout1->layout, plan->layout2->layout, plan->layout_c->layout,
      plan->layout_c->layout, pref.pref, autotune ? kAutotuneCandidates : 1, heuristics.data(),
      &found);
  if (status != CUBLAS_STATUS_NOT_SUPPORTED) AUTOTP_CUBLAS_CHECK(status);
  if (status == CUBLAS_STATUS_SUCCESS) {
    for (int i = 0; i < found; ++i) {
      if (heuristics[i].state != CUBLAS_STATUS_SUCCESS) continue;
      LtCandidate candidate;
      candidate.algo = heuristics[i].algo;
      int32_t out_of_place = 0;
      size_t written = 0;
      AUTOTP_CUBLAS_CHECK(cublasLtMatmulAlgoCapGetAttribute(
          &candidate.algo, CUBLASLT_ALGO_CAP_OUT_OF_PLACE_RESULT_SUPPORT, &out_of_place,
          sizeof(out_of_place), &written));
      candidate.out_of_place = written == sizeof(out_of_place) && out_of_place != 0;
      plan->candidates.push_back(candidate);
    }
  }
  plan->use_cublas = plan->candidates.empty();
  if (plan->candidates.size() > 1) {
    plan->search = std::make_unique<LtSearch>(static_cast<int>(plan->candidates.size()));
  }
  return plan;
}

// What one cuBLASLt call computes, beyond the plan.
struct LtCall {
  cublasLtHandle_t handle;
  GemmContext* ctx;
  size_t itemsize;
  void* c;
  const void* c_in;
  int64_t ldc, stride_c;
  const void* a;
  const void* b;
  int64_t m, n, batch;
  float alpha, beta;
  cudaStream_t stream;
};

// Runs the plan's candidate `index` for `call`, returning cuBLASLt's status unchecked (a
// candidate under search that fails is dropped; the caller checks the others).
cublasStatus_t run_candidate(const LtPlan& plan, int index, const LtCall& call) {
  const LtCandidate& candidate = plan.candidates[static_cast<size_t>(index)];
  const void* c_in = call.c_in;
  if (c_in != call.c && !candidate.out_of_place) {
    // This algorithm writes D only over C: C into D first, then in place (the plan's C
    // alignment is the lower of both, so it holds for D alone).
    copy_matrices(call.c, c_in, call.itemsize, call.ldc, call.stride_c, call.m, call.n, call.batch,
                  call.stream);
    c_in = call.c;
  }
  return cublasLtMatmul(call.handle, plan.op.desc, &call.alpha, call.b, plan.layout1->layout,
                        call.a, plan.layout2->layout, &call.beta, c_in, plan.layout_c->layout,
                        call.c, plan.layout_c->layout, &candidate.algo, call.ctx->workspace(),
                        GemmContext::kWorkspaceBytes, call.stream);
}

// Reads back the plan's timed runs that have finished (never waits for one) and, once the
// search has every timing, keeps its choice and adds it to the report. A run is removed from
// the list only once read, so an error here leaves the others in place.
void collect_timings(LtPlan& plan, kernels::GemmAutotuneReport& report) {
  LtSearch& search = *plan.search;
  std::vector<LtSearch::Timing>& in_flight = search.in_flight;
  for (size_t i = 0; i < in_flight.size();) {
    const TimingEvents& events = *in_flight[i].events;
    const cudaError_t status = cudaEventQuery(events.stop);
    if (status == cudaErrorNotReady) {
      cudaGetLastError();  // not an error: leave nothing for the next launch check
      ++i;
      continue;
    }
    AUTOTP_CUDA_CHECK(status);
    float milliseconds = 0.0f;
    AUTOTP_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, events.start, events.stop));
    const int candidate = in_flight[i].candidate;
    in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(i));
    search.search.record(candidate, milliseconds);
  }
  if (!search.search.decided()) return;
  plan.chosen = search.search.chosen();
  ++report.shapes_searched;
  report.candidates_timed += search.search.candidates();
  if (plan.chosen != 0) ++report.shapes_changed;
  report.heuristic_ms += search.search.best_time(0).value_or(0.0);
  report.chosen_ms += search.search.best_time(plan.chosen).value_or(0.0);
  plan.search.reset();
}

// A call while the plan's search lasts: the call's result comes from a timed run of the next
// candidate owed a timing. With beta == 0 every run overwrites the whole output, so all owed
// timings run now, back to back (a shape seen once per step is decided in its first call);
// with beta != 0 the call's one run may be timed, no more. A candidate other than the
// heuristic's first that cuBLASLt refuses is dropped; with no timing left to start the
// heuristic's first runs untimed. A timing counted as started but not launched (an error
// thrown on the way) is given up, so the search still ends.
void run_searching(LtPlan& plan, const LtCall& call) {
  LtSearch& search = *plan.search;
  bool result_written = false;
  while (!search.search.all_started()) {
    auto events = std::make_unique<TimingEvents>();
    AUTOTP_CUDA_CHECK(cudaEventRecord(events->start, call.stream));
    search.in_flight.reserve(search.in_flight.size() + 1);  // the push below cannot throw
    const std::optional<int> candidate = search.search.start_next_timing();
    if (!candidate) break;
    cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
    try {
      status = run_candidate(plan, *candidate, call);
      if (status == CUBLAS_STATUS_SUCCESS) {
        AUTOTP_CUDA_CHECK(cudaEventRecord(events->stop, call.stream));
      } else if (*candidate == 0) {
        AUTOTP_CUBLAS_CHECK(status);  // the heuristic's own pick: an error, as without autotune
      }
    } catch (...) {
      search.search.abandon_timing();
      throw;
    }
    if (status != CUBLAS_STATUS_SUCCESS) {
      search.search.exclude(*candidate, 1);
      continue;
    }
    search.in_flight.push_back({*candidate, std::move(events)});
    result_written = true;
    if (call.beta != 0.0f) break;
  }
  if (!result_written) AUTOTP_CUBLAS_CHECK(run_candidate(plan, 0, call));
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
  std::lock_guard<std::mutex> lock(cache.mutex);
  auto found = cache.plans.find(key);
  if (found == cache.plans.end()) {
    if (cache.plans.size() >= GemmPlanCache::kMaxPlans) cache.plans.clear();
    found = cache.plans
                .emplace(key, make_plan(handle, type, lda, trans_a, ldb, trans_b, ldc, m, n, k,
                                        batch, stride_a, stride_b, stride_c, align_a, align_b,
                                        align_c, cache.autotune))
                .first;
  }
  LtPlan& plan = *found->second;
  if (plan.use_cublas) {
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
  const LtCall call{handle, &ctx, itemsize, c,     c_in,  ldc,  stride_c, a,
                    b,      m,    n,        batch, alpha, beta, stream};
  if (plan.search) collect_timings(plan, cache.report);
  if (plan.search) {
    run_searching(plan, call);
    return;
  }
  AUTOTP_CUBLAS_CHECK(run_candidate(plan, plan.chosen, call));
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

void GemmContext::set_autotune(bool on) {
  std::lock_guard<std::mutex> lock(plans_->mutex);
  if (plans_->autotune == on) return;
  ScopedDevice guard(device_);  // the timing events of searches still running belong to it
  plans_->plans.clear();        // every shape planned again, with or without a search
  plans_->autotune = on;
  plans_->report = {};
}

bool GemmContext::autotune() const {
  std::lock_guard<std::mutex> lock(plans_->mutex);
  return plans_->autotune;
}

kernels::GemmAutotuneReport GemmContext::autotune_report() const {
  std::lock_guard<std::mutex> lock(plans_->mutex);
  kernels::GemmAutotuneReport report = plans_->report;
  for (const auto& [key, plan] : plans_->plans)
    report.shapes_searching += plan->search ? 1 : 0;
  return report;
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
