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
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const C v = widen(in.v[e]);
        if (v > m) {
          sum = sum * math_exp(m - v) + C(1);
          m = v;
        } else if (v != negative_infinity<C>()) {
          sum += math_exp(v - m);
        }
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
    for (int64_t k = threadIdx.x; k < vectors; k += blockDim.x) {
      Pack<T, V> out;
      if (ignored) {
#pragma unroll
        for (int e = 0; e < V; ++e)
          out.v[e] = convert<T>(C(0));
      } else {
        const Pack<T, V> in = load_pack<V>(x + k * V);
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const C p = math_exp(widen(in.v[e]) - row_lse);
          out.v[e] = convert<T>(scale * (p - (k * V + e == target ? C(1) : C(0))));
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
