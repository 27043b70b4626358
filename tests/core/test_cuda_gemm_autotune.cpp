// GEMM autotune (kernels.gemm_autotune) on the GPU: while a shape's candidates are timed and
// after one is kept, every call computes its GEMM exactly once, with the result the CPU gives.
// Integer operands make every algorithm's result exact (f32 sums of small integers; bf16
// rounds that once), so whichever candidate runs, the comparison is bitwise. Each test skips,
// saying why, where no CUDA device is visible.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/ops/linalg.h"
#include "core/random.h"
#include "core/storage.h"
#include "tests/support/tolerances.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/gemm.h"
#endif

namespace autotp {
namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the GEMM autotune runs on GPUs"

using autotp::testing::all_close;
using autotp::testing::Tolerance;

const Device kCpu = Device::cpu();
const Device kCuda = Device::cuda(0);
constexpr Tolerance kExact{0.0, 0.0};
// More calls than any search needs: 8 candidates x 2 timings, one per accumulating call.
constexpr int kCalls = 40;

// Integers in [-3, 3] (K <= 130 keeps every partial sum exact in f32).
Tensor integers_cpu(const Shape& shape, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::F32);
  fill_uniform(t, seed, 0, 0.0, 1.0);
  std::vector<double> v = t.to_vector();
  for (double& x : v)
    x = -3 + std::floor(x * 7);
  return Tensor::from_vector(v, shape);
}

Tensor host_f32(const Tensor& t) {
  return t.detach().to(kCpu).to(DType::F32);
}

// Autotune on for the test's GEMMs on device 0, off again afterwards (plans cleared each time).
struct AutotuneOnDevice0 {
  AutotuneOnDevice0() { ops::set_gemm_autotune(kCuda, true); }
  ~AutotuneOnDevice0() { ops::set_gemm_autotune(kCuda, false); }
};

// A finished search is read on the shape's next call: after a wait, one more call of each.
// At least one shape must have been searched (cuBLASLt offers several algorithms for these
// sizes), so the calls above did run while candidates were being timed.
void expect_searches_over(const kernels::GemmAutotuneReport& report, const std::string& what) {
  EXPECT_GT(report.shapes_searched, 0) << what << ": no shape had a search";
  EXPECT_EQ(report.shapes_searching, 0) << what;
  EXPECT_LE(report.shapes_changed, report.shapes_searched) << what;
  EXPECT_GE(report.candidates_timed, 2 * report.shapes_searched) << what;
  EXPECT_GE(report.heuristic_ms, report.chosen_ms) << what;
  std::printf(
      "[ autotune ] %s: %lld shapes searched, %lld changed, one call of each %.4f -> "
      "%.4f ms\n",
      what.c_str(), static_cast<long long>(report.shapes_searched),
      static_cast<long long>(report.shapes_changed), report.heuristic_ms, report.chosen_ms);
}

TEST(CudaGemmAutotune, EveryMatmulAndLinearAddCallEqualsTheCpuDuringAndAfterTheSearch_CUDA) {
  SKIP_WITHOUT_CUDA();
  // Shapes large enough for cuBLASLt to offer several algorithms, K = 128.
  const Tensor a = integers_cpu({512, 128}, 1), b = integers_cpu({128, 768}, 2);
  const Tensor x = integers_cpu({4, 128, 128}, 3), w = integers_cpu({768, 128}, 4);
  const Tensor residual = integers_cpu({4, 128, 768}, 5);
  const Tensor product = ops::matmul(a, b);
  const Tensor with_residual = ops::linear_add(x, w, Tensor(), residual);
  for (DType dtype : {DType::F32, DType::BF16}) {
    const AutotuneOnDevice0 autotune;  // a fresh search and report for each dtype
    const std::string name(dtype_name(dtype));
    const Tensor ad = a.to(dtype).to(kCuda), bd = b.to(dtype).to(kCuda);
    const Tensor xd = x.to(dtype).to(kCuda), wd = w.to(dtype).to(kCuda);
    const Tensor rd = residual.to(dtype).to(kCuda);
    // bf16 rounds the exact f32 result once, like rounding the CPU's f32 result to bf16.
    const Tensor expected_product = product.to(dtype).to(DType::F32);
    const Tensor expected_sum = with_residual.to(dtype).to(DType::F32);
    for (int call = 0; call <= kCalls; ++call) {
      if (call == kCalls) cuda_memory::synchronize(0);  // every timing done: read on this call
      ASSERT_TRUE(all_close(host_f32(ops::matmul(ad, bd)), expected_product, kExact,
                            name + " matmul, call " + std::to_string(call)));
      // The residual is the GEMM's separate C input (beta = 1, out of place): one timed run
      // per call, the residual read once.
      ASSERT_TRUE(all_close(host_f32(ops::linear_add(xd, wd, Tensor(), rd)), expected_sum, kExact,
                            name + " linear_add, call " + std::to_string(call)));
    }
    expect_searches_over(ops::gemm_autotune_report(kCuda), name);
  }
}

#ifdef AUTOTP_WITH_CUDA
TEST(CudaGemmAutotune, EachCallWritesItsWholeOutputIntoABufferOfNaNs_CUDA) {
  SKIP_WITHOUT_CUDA();
  // The output is filled with NaN before every call, so a call that ran no GEMM (or wrote
  // part of it) fails: beta = 0 (all timings at once), and beta = 1 with a separate C input
  // (one timed run per call; a candidate without out-of-place support copies C over D first).
  constexpr int64_t m = 384, n = 640, k = 96;
  const Tensor a = integers_cpu({m, k}, 31), b = integers_cpu({k, n}, 32);
  const Tensor c_in = integers_cpu({m, n}, 33);
  const Tensor product = ops::matmul(a, b), sum = ops::add(c_in, product);
  kernels::cuda::GemmContext& ctx = kernels::cuda::GemmContext::for_device(0);
  for (DType dtype : {DType::F32, DType::BF16}) {
    const AutotuneOnDevice0 autotune;
    const std::string name(dtype_name(dtype));
    const Tensor ad = a.to(dtype).to(kCuda), bd = b.to(dtype).to(kCuda);
    const Tensor cd = c_in.to(dtype).to(kCuda);
    const Tensor out = Tensor::empty({m, n}, dtype, kCuda);
    for (int call = 0; call <= kCalls; ++call) {
      if (call == kCalls) cuda_memory::synchronize(0);
      for (double beta : {0.0, 1.0}) {
        out.fill_(std::nan(""));
        kernels::cuda::gemm_strided_batched(ctx, static_cast<int>(dtype), out.raw_data(), n, 0,
                                            ad.raw_data(), k, 0, false, bd.raw_data(), n, 0, false,
                                            m, n, k, 1.0, beta, 1, nullptr,
                                            beta == 0.0 ? nullptr : cd.raw_data());
        ASSERT_TRUE(all_close(
            host_f32(out), (beta == 0.0 ? product : sum).to(dtype).to(DType::F32), kExact,
            name + (beta == 0.0 ? " A B" : " C + A B") + ", call " + std::to_string(call)));
      }
    }
    expect_searches_over(ops::gemm_autotune_report(kCuda), name + " into NaN");
  }
}

TEST(CudaGemmAutotune, AnAccumulatingGemmAddsItsProductOncePerCall_CUDA) {
  SKIP_WITHOUT_CUDA();
  const AutotuneOnDevice0 autotune;
  // C += A B in place (beta = 1, C read and written: a gradient folded into its GEMM), called
  // kCalls times while the search times one candidate per call: C0 + kCalls A B exactly.
  constexpr int64_t m = 384, n = 640, k = 64;
  const Tensor a = integers_cpu({m, k}, 11), b = integers_cpu({k, n}, 12);
  const Tensor c0 = integers_cpu({m, n}, 13);
  const Tensor expected = ops::add(c0, ops::mul(ops::matmul(a, b), static_cast<double>(kCalls)));
  kernels::cuda::GemmContext& ctx = kernels::cuda::GemmContext::for_device(0);
  const Tensor ad = a.to(kCuda), bd = b.to(kCuda);
  Tensor c = c0.to(kCuda);
  for (int call = 0; call < kCalls; ++call) {
    if (call == kCalls - 1) cuda_memory::synchronize(0);
    kernels::cuda::gemm_strided_batched(ctx, static_cast<int>(DType::F32), c.raw_data(), n, 0,
                                        ad.raw_data(), k, 0, false, bd.raw_data(), n, 0, false, m,
                                        n, k, 1.0, 1.0, 1, nullptr);
  }
  EXPECT_TRUE(all_close(host_f32(c), expected, kExact, "C0 + 40 A B"));
  expect_searches_over(ops::gemm_autotune_report(kCuda), "accumulating f32");
}
#endif

TEST(CudaGemmAutotune, SwitchingItClearsTheReportAndTheCpuIgnoresIt_CUDA) {
  SKIP_WITHOUT_CUDA();
  {
    const AutotuneOnDevice0 autotune;
    const Tensor a = integers_cpu({128, 64}, 21).to(kCuda),
                 b = integers_cpu({64, 128}, 22).to(kCuda);
    for (int call = 0; call < 3; ++call)
      (void)ops::matmul(a, b);
    cuda_memory::synchronize(0);
    (void)ops::matmul(a, b);
    const kernels::GemmAutotuneReport report = ops::gemm_autotune_report(kCuda);
    EXPECT_EQ(report.shapes_searching, 0) << "a beta = 0 call runs every timing at once";
  }
  const kernels::GemmAutotuneReport off = ops::gemm_autotune_report(kCuda);
  EXPECT_EQ(off.shapes_searched, 0);
  EXPECT_EQ(off.candidates_timed, 0);
  EXPECT_NO_THROW(ops::set_gemm_autotune(kCpu, true));
  EXPECT_EQ(ops::gemm_autotune_report(kCpu).shapes_searched, 0);
}

}  // namespace
}  // namespace autotp
