// Cross-entropy kernels: a block per row computes the row's logsumexp and loss in one pass over
// the logits (an online logsumexp: a running max and a sum rescaled when the max grows, merged
// over the block by block reductions); one block then averages the row losses in f64. Rows
// that are 16-byte aligned with a class count that is a multiple of the vector width (a real
// vocabulary) are read and written in 16-byte accesses, other rows element by element by the
// same kernels.
#include "kernels/cuda/check.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/row_utils.cuh"
#include "kernels/cuda/vectorized.cuh"

namespace autotp::kernels::cuda {

namespace {

// Adds a pack of V logits to a thread's running max m and sum of exp(x - m): the pack's maximum
// first (fmax skips NaN), one rescale when it raises m, then one exponential per element (a
// -inf logit adds exp(-inf) = 0 once m is finite). While m is still -inf (every logit so far
// -inf or NaN) the pack adds 0 for -inf and NaN for NaN, so a NaN logit still reaches the sum.
// Per element a max, an exponential and an add, against the compare, branch and possible
// rescale per element of an element-wise online update: the row kernel was issue-bound (sm_90
// SASS: 34 instructions per bf16 logit, 2 bytes of traffic). 16-bit rows take 2^x from
// approx_exp2 on log2(e)-scaled arguments (one fma and one MUFU.EX2 per element; a relative
// error near 1e-6, far below what a 16-bit logit carries); f32 and f64 rows keep expf/exp.
template <typename T, int V>
__device__ __forceinline__ void add_pack_exponentials(const Pack<T, V>& in, ComputeType<T>& m,
                                                      ComputeType<T>& sum) {
  using C = ComputeType<T>;
  constexpr bool kApproximate = sizeof(T) == 2;
  constexpr float kLog2e = 1.4426950408889634f;
  C v[V];
  C pack_max = negative_infinity<C>();
#pragma unroll
  for (int e = 0; e < V; ++e) {
    v[e] = widen(in.v[e]);
    pack_max = math_max(pack_max, v[e]);
  }
  if (pack_max > m) {  // sum is 0 (or NaN) while m is -inf, and exp(-inf) is 0
    if constexpr (kApproximate)
      sum *= approx_exp2((m - pack_max) * kLog2e);
    else
      sum *= math_exp(m - pack_max);
    m = pack_max;
  }
  if (m != negative_infinity<C>()) {
    if constexpr (kApproximate) {
      const float m2 = m * kLog2e;
#pragma unroll
      for (int e = 0; e < V; ++e)
        sum += approx_exp2(__fmaf_rn(v[e], kLog2e, -m2));
    } else {
#pragma unroll
      for (int e = 0; e < V; ++e)
        sum += math_exp(v[e] - m);
    }
  } else {
#pragma unroll
    for (int e = 0; e < V; ++e)
      sum += v[e] == negative_infinity<C>() ? C(0) : v[e];  // NaN stays NaN
  }
}

// A block per row, in one pass over the row in accesses of V elements (classes a multiple of
// V; V = 1 takes any row). Each thread keeps a running max m and the sum s of exp(x - m) over
// its elements; the block then takes the max M of the m and sums s exp(m - M). A -inf logit
// adds exp(-inf) = 0, as on the CPU, so it is skipped (exp(-inf - m) would be NaN while m is
// still -inf): a thread that saw only -inf keeps s = 0 and adds nothing. A NaN logit makes s,
// and so the row's loss, NaN; an all -inf row gets lse = -inf and a NaN loss (the CPU's NaN).
template <typename T, typename I, int V>
__global__ void cross_entropy_rows_kernel(ComputeType<T>* row_loss, ComputeType<T>* lse,
                                          const T* logits, const I* targets, int64_t rows,
                                          int64_t classes, int64_t ignore_index) {
  using C = ComputeType<T>;
  __shared__ C scratch[32];
  const int64_t vectors = classes / V;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t target = static_cast<int64_t>(targets[row]);
    if (target == ignore_index) {  // uniform over the block
      if (threadIdx.x == 0) {
        row_loss[row] = C(0);
        lse[row] = C(0);
      }
      continue;
    }
    const T* x = logits + row * classes;
    C m = negative_infinity<C>(), sum = 0;
    for (int64_t k = threadIdx.x; k < vectors; k += blockDim.x) {
      const Pack<T, V> in = load_pack<V>(x + k * V);
      if constexpr (V == 1) {
        const C v = widen(in.v[0]);
        if (v > m) {
          sum = sum * math_exp(m - v) + C(1);
          m = v;
        } else if (v != negative_infinity<C>()) {
          sum += math_exp(v - m);
        }
      } else {
        add_pack_exponentials<T>(in, m, sum);
      }
    }
    const C row_max = block_max(m, scratch);
    const C scaled = sum == C(0) ? C(0) : sum * math_exp(m - row_max);
    const C row_lse = row_max + math_log(block_sum(scaled, scratch));
    if (threadIdx.x == 0) {
      lse[row] = row_lse;
      row_loss[row] = row_lse - widen(x[target]);
    }
  }
}

// One block: loss = sum(row_loss) / count, the sum in f64 (strided partials, then the block's
// fixed tree).
template <typename C>
__global__ void mean_loss_kernel(C* loss, const C* row_loss, int64_t rows, int64_t count) {
  __shared__ double scratch[32];
  double partial = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x)
    partial += static_cast<double>(row_loss[r]);
  const double total = block_sum(partial, scratch);
  if (threadIdx.x == 0)
    *loss = static_cast<C>(count == 0 ? 0.0 : total / static_cast<double>(count));
}

template <typename T, typename I, int V>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* logits, const I* targets,
                                              const ComputeType<T>* lse,
                                              const ComputeType<T>* dloss, int64_t rows,
                                              int64_t classes, int64_t ignore_index,
                                              int64_t count) {
  using C = ComputeType<T>;
  const C scale = count == 0 ? C(0) : *dloss / static_cast<C>(count);
  const int64_t vectors = classes / V;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t target = static_cast<int64_t>(targets[row]);
    const T* x = logits + row * classes;
    T* dx = dlogits + row * classes;
    const bool ignored = target == ignore_index;
    const C row_lse = ignored ? C(0) : lse[row];
    // 16-bit logits: p = 2^(x log2 e - lse log2 e), one fma and one MUFU.EX2 (see
    // add_pack_exponentials); f32 and f64 take expf/exp.
    const float lse2 = static_cast<float>(row_lse) * 1.4426950408889634f;
    for (int64_t k = threadIdx.x; k < vectors; k += blockDim.x) {
      Pack<T, V> out;
      if (ignored) {
#pragma unroll
        for (int e = 0; e < V; ++e)
          out.v[e] = convert<T>(C(0));
      } else {
        const Pack<T, V> in = load_pack<V>(x + k * V);
        // The target's place in this pack, -1 when it lies elsewhere (one 64-bit compare per
        // pack, not per element).
        const int64_t offset = target - k * V;
        const int target_element = offset >= 0 && offset < V ? static_cast<int>(offset) : -1;
#pragma unroll
        for (int e = 0; e < V; ++e) {
          C p;
          if constexpr (sizeof(T) == 2)
            p = approx_exp2(__fmaf_rn(widen(in.v[e]), 1.4426950408889634f, -lse2));
          else
            p = math_exp(widen(in.v[e]) - row_lse);
          out.v[e] = convert<T>(scale * (p - (e == target_element ? C(1) : C(0))));
        }
      }
      store_pack<V>(dx + k * V, out);
    }
  }
}

// Whether the rows can be read in 16-byte accesses.
template <typename T>
bool vectorizable_rows(int64_t classes, const void* a, const void* b = nullptr) {
  return classes % kVectorElems<T> == 0 && is_aligned(a, 16) && (!b || is_aligned(b, 16));
}

}  // namespace

void cross_entropy_forward(int dtype, int index_dtype, void* loss, void* lse, void* row_loss,
                           const void* logits, const void* targets, int64_t rows, int64_t classes,
                           int64_t ignore_index, int64_t count, cudaStream_t stream) {
  dispatch_float_code(dtype, "cross_entropy_forward", [&]<typename T>(TypeTag<T>) {
    using C = ComputeType<T>;
    if (rows > 0) {
      dispatch_index_code(index_dtype, "cross_entropy_forward", [&]<typename I>(TypeTag<I>) {
        const auto launch = [&]<int V>() {
          cross_entropy_rows_kernel<T, I, V>
              <<<blocks_for_rows(rows), threads_for_row(classes / V), 0, stream>>>(
                  static_cast<C*>(row_loss), static_cast<C*>(lse), static_cast<const T*>(logits),
                  static_cast<const I*>(targets), rows, classes, ignore_index);
          AUTOTP_CUDA_CHECK_LAUNCH("cross_entropy_rows_kernel", {"rows", rows},
                                   {"classes", classes}, {"vector", V}, {"dtype", dtype},
                                   {"index_dtype", index_dtype});
        };
        if (vectorizable_rows<T>(classes, logits))
          launch.template operator()<kVectorElems<T>>();
        else
          launch.template operator()<1>();
      });
    }
    mean_loss_kernel<C><<<1, kThreadsPerBlock, 0, stream>>>(
        static_cast<C*>(loss), static_cast<const C*>(row_loss), rows, count);
    AUTOTP_CUDA_CHECK_LAUNCH("cross_entropy mean_loss_kernel", {"rows", rows}, {"count", count},
                             {"dtype", dtype});
  });
}

void cross_entropy_backward(int dtype, int index_dtype, void* dlogits, const void* logits,
                            const void* targets, const void* lse, const void* dloss, int64_t rows,
                            int64_t classes, int64_t ignore_index, int64_t count,
                            cudaStream_t stream) {
  if (rows == 0 || classes == 0) return;
  dispatch_float_code(dtype, "cross_entropy_backward", [&]<typename T>(TypeTag<T>) {
    using C = ComputeType<T>;
    dispatch_index_code(index_dtype, "cross_entropy_backward", [&]<typename I>(TypeTag<I>) {
      const auto launch = [&]<int V>() {
        cross_entropy_backward_kernel<T, I, V>
            <<<blocks_for_rows(rows), threads_for_row(classes / V), 0, stream>>>(
                static_cast<T*>(dlogits), static_cast<const T*>(logits),
                static_cast<const I*>(targets), static_cast<const C*>(lse),
                static_cast<const C*>(dloss), rows, classes, ignore_index, count);
        AUTOTP_CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel", {"rows", rows},
                                 {"classes", classes}, {"vector", V}, {"dtype", dtype},
                                 {"index_dtype", index_dtype});
      };
      if (vectorizable_rows<T>(classes, logits, dlogits))
        launch.template operator()<kVectorElems<T>>();
      else
        launch.template operator()<1>();
    });
  });
}

}  // namespace autotp::kernels::cuda
