// Cross-entropy kernels: a block per row computes the row's logsumexp and loss (max, then sum
// of exponentials, by block reductions); one block then averages the row losses in f64.
#include "kernels/cuda/check.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/row_utils.cuh"

namespace autotp::kernels::cuda {

namespace {

template <typename T, typename I>
__global__ void cross_entropy_rows_kernel(ComputeType<T>* row_loss, ComputeType<T>* lse,
                                          const T* logits, const I* targets, int64_t rows,
                                          int64_t classes, int64_t ignore_index) {
  using C = ComputeType<T>;
  __shared__ C scratch[32];
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
    C m = negative_infinity<C>();
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x)
      m = math_max(m, widen(x[c]));
    m = block_max(m, scratch);
    C sum = 0;
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x)
      sum += math_exp(widen(x[c]) - m);
    const C row_lse = m + math_log(block_sum(sum, scratch));
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

template <typename T, typename I>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* logits, const I* targets,
                                              const ComputeType<T>* lse,
                                              const ComputeType<T>* dloss, int64_t rows,
                                              int64_t classes, int64_t ignore_index,
                                              int64_t count) {
  using C = ComputeType<T>;
  const C scale = count == 0 ? C(0) : *dloss / static_cast<C>(count);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t target = static_cast<int64_t>(targets[row]);
    const T* x = logits + row * classes;
    T* dx = dlogits + row * classes;
    if (target == ignore_index) {
      for (int64_t c = threadIdx.x; c < classes; c += blockDim.x)
        dx[c] = convert<T>(C(0));
      continue;
    }
    const C row_lse = lse[row];
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) {
      const C p = math_exp(widen(x[c]) - row_lse);
      dx[c] = convert<T>(scale * (p - (c == target ? C(1) : C(0))));
    }
  }
}

}  // namespace

void cross_entropy_forward(int dtype, int index_dtype, void* loss, void* lse, void* row_loss,
                           const void* logits, const void* targets, int64_t rows, int64_t classes,
                           int64_t ignore_index, int64_t count, cudaStream_t stream) {
  dispatch_float_code(dtype, "cross_entropy_forward", [&]<typename T>(TypeTag<T>) {
    using C = ComputeType<T>;
    if (rows > 0) {
      dispatch_index_code(index_dtype, "cross_entropy_forward", [&]<typename I>(TypeTag<I>) {
        cross_entropy_rows_kernel<T, I>
            <<<blocks_for_rows(rows), threads_for_row(classes), 0, stream>>>(
                static_cast<C*>(row_loss), static_cast<C*>(lse), static_cast<const T*>(logits),
                static_cast<const I*>(targets), rows, classes, ignore_index);
        AUTOTP_CUDA_CHECK_LAUNCH("cross_entropy_rows_kernel", {"rows", rows}, {"classes", classes},
                                 {"dtype", dtype}, {"index_dtype", index_dtype});
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
      cross_entropy_backward_kernel<T, I>
          <<<blocks_for_rows(rows), threads_for_row(classes), 0, stream>>>(
              static_cast<T*>(dlogits), static_cast<const T*>(logits),
              static_cast<const I*>(targets), static_cast<const C*>(lse),
              static_cast<const C*>(dloss), rows, classes, ignore_index, count);
      AUTOTP_CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel", {"rows", rows},
                               {"classes", classes}, {"dtype", dtype},
                               {"index_dtype", index_dtype});
    });
  });
}

}  // namespace autotp::kernels::cuda
