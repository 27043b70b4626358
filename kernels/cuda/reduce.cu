// Reductions: inner == 1 reduces each contiguous row with one block (threads take strided
// partials, then a fixed shared-memory tree); inner > 1 gives each 32-wide column tile a
// 32 x 8 block (8 strided partials per column, summed in a fixed order).
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.h"

#include <string>

namespace autotp::kernels::cuda {

namespace {

constexpr int kTileWidth = 32;  // columns per block in the inner > 1 kernel
constexpr int kTileRows = 8;    // partial sums per column

// Sum in the compute type (f32 for 16-bit floats and f32, f64 for f64).
template <typename T>
struct SumReducer {
  using State = ComputeType<T>;
  T* out;

  __device__ static State identity() { return State(0); }
  __device__ static void add(State& state, T v, int64_t /*k*/) { state += widen(v); }
  __device__ static void merge(State& state, const State& other) { state += other; }
  __device__ void store(int64_t position, const State& state) const {
    out[position] = convert<T>(state);
  }
};

// First maximum with NaN propagation, as the CPU scan: (value, k) beats the best so far when
// it is a NaN and the best is not; when both are NaN and k is smaller; when both are numbers
// and it is larger, or equal with a smaller k. The rule does not depend on the order elements
// arrive in, so strided partials merged in any order give the CPU's answer.
template <typename T>
struct MaxReducer {
  struct State {
    ComputeType<T> value;
    T raw;          // the element itself, stored unchanged
    int64_t index;  // -1: no element yet
  };
  T* values;
  int64_t* indices;

  __device__ static bool beats(ComputeType<T> v, int64_t k, const State& best) {
    if (best.index < 0) return true;
    const bool v_nan = v != v, best_nan = best.value != best.value;
    if (v_nan || best_nan) return v_nan && (!best_nan || k < best.index);
    return v > best.value || (v == best.value && k < best.index);
  }
  __device__ static State identity() { return State{ComputeType<T>(0), T(), -1}; }
  __device__ static void add(State& state, T v, int64_t k) {
    const ComputeType<T> c = widen(v);
    if (beats(c, k, state)) state = State{c, v, k};
  }
  __device__ static void merge(State& state, const State& other) {
    if (other.index >= 0 && beats(other.value, other.index, state)) state = other;
  }
  __device__ void store(int64_t position, const State& state) const {
    values[position] = state.raw;
    indices[position] = state.index;
  }
};

// inner == 1: block b reduces rows b, b + gridDim.x, ...; blockDim.x is 32 or 256.
template <typename T, typename Reducer>
__global__ void reduce_rows_kernel(Reducer reducer, const T* x, int64_t outer, int64_t n) {
  using State = typename Reducer::State;
  __shared__ State partial[kThreadsPerBlock];
  for (int64_t row = blockIdx.x; row < outer; row += gridDim.x) {
    const T* in = x + row * n;
    State state = Reducer::identity();
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x)
      Reducer::add(state, in[k], k);
    partial[threadIdx.x] = state;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
      if (threadIdx.x < stride) Reducer::merge(partial[threadIdx.x], partial[threadIdx.x + stride]);
      __syncthreads();
    }
    if (threadIdx.x == 0) reducer.store(row, partial[0]);
    __syncthreads();  // partial[0] is read before the next row overwrites it
  }
}

// inner > 1: block (kTileWidth, kTileRows) reduces one tile of kTileWidth adjacent columns of
// one outer slice; tiles are spread over the grid.
template <typename T, typename Reducer>
__global__ void reduce_columns_kernel(Reducer reducer, const T* x, int64_t outer, int64_t n,
                                      int64_t inner) {
  using State = typename Reducer::State;
  __shared__ State partial[kTileRows][kTileWidth];
  const int64_t tiles_per_slice = (inner + kTileWidth - 1) / kTileWidth;
  for (int64_t tile = blockIdx.x; tile < outer * tiles_per_slice; tile += gridDim.x) {
    const int64_t o = tile / tiles_per_slice;
    const int64_t i = (tile - o * tiles_per_slice) * kTileWidth + threadIdx.x;
    State state = Reducer::identity();
    if (i < inner) {
      const T* column = x + o * n * inner + i;
      for (int64_t k = threadIdx.y; k < n; k += kTileRows)
        Reducer::add(state, column[k * inner], k);
    }
    partial[threadIdx.y][threadIdx.x] = state;
    __syncthreads();
    if (threadIdx.y == 0 && i < inner) {
      State total = partial[0][threadIdx.x];
      for (int r = 1; r < kTileRows; ++r)
        Reducer::merge(total, partial[r][threadIdx.x]);
      reducer.store(o * inner + i, total);
    }
    __syncthreads();
  }
}

// `op` names the reduction in launch errors ("sum_axis: reduce_rows_kernel").
template <typename T, typename Reducer>
void launch_reduce(const char* op, int dtype, Reducer reducer, const T* x, int64_t outer, int64_t n,
                   int64_t inner, cudaStream_t stream) {
  if (outer == 0 || inner == 0) return;  // no outputs
  if (inner == 1) {
    const int threads = n >= kThreadsPerBlock ? kThreadsPerBlock : 32;
    const auto blocks = static_cast<unsigned>(std::min<int64_t>(outer, kMaxBlocks));
    reduce_rows_kernel<T, Reducer><<<blocks, threads, 0, stream>>>(reducer, x, outer, n);
  } else {
    const int64_t tiles = outer * ((inner + kTileWidth - 1) / kTileWidth);
    const auto blocks = static_cast<unsigned>(std::min<int64_t>(tiles, kMaxBlocks));
    reduce_columns_kernel<T, Reducer>
        <<<blocks, dim3(kTileWidth, kTileRows), 0, stream>>>(reducer, x, outer, n, inner);
  }
  const std::string kernel =
      std::string(op) + (inner == 1 ? ": reduce_rows_kernel" : ": reduce_columns_kernel");
  AUTOTP_CUDA_CHECK_LAUNCH(kernel.c_str(), {"outer", outer}, {"n", n}, {"inner", inner},
                           {"dtype", dtype});
}

}  // namespace

void sum_axis(int dtype, void* out, const void* x, int64_t outer, int64_t n, int64_t inner,
              cudaStream_t stream) {
  dispatch_float_code(dtype, "sum_axis", [&]<typename T>(TypeTag<T>) {
    launch_reduce("sum_axis", dtype, SumReducer<T>{static_cast<T*>(out)}, static_cast<const T*>(x),
                  outer, n, inner, stream);
  });
}

void max_axis(int dtype, void* out, int64_t* argmax, const void* x, int64_t outer, int64_t n,
              int64_t inner, cudaStream_t stream) {
  if (n < 1) throw std::invalid_argument("max_axis: the reduced dim is empty");
  dispatch_float_code(dtype, "max_axis", [&]<typename T>(TypeTag<T>) {
    launch_reduce("max_axis", dtype, MaxReducer<T>{static_cast<T*>(out), argmax},
                  static_cast<const T*>(x), outer, n, inner, stream);
  });
}

}  // namespace autotp::kernels::cuda
