// Multi-tensor AdamW (kernels/cuda/multi_tensor.cuh): every tensor is split into chunks of
// kAdamWChunkElements, one block per chunk, which finds its tensor by binary search over the
// tensors' first chunk indices. (A table with an entry per chunk would be megabytes at a
// billion parameters, copied from pageable memory every step.) A block moves 16 bytes per
// access when its tensor's arrays are aligned for it.
#include "kernels/cuda/adamw.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/cuda/vectorized.cuh"

namespace autotp::kernels::cuda {

namespace {

constexpr int kAdamWThreads = 256;

// Correctly rounded operations that nvcc never contracts into FMAs, so each line below is
// the same IEEE operation as the CPU kernel's (built with -ffp-contract=off).
__device__ __forceinline__ float add_rn(float a, float b) {
  return __fadd_rn(a, b);
}
__device__ __forceinline__ float sub_rn(float a, float b) {
  return __fsub_rn(a, b);
}
__device__ __forceinline__ float mul_rn(float a, float b) {
  return __fmul_rn(a, b);
}
__device__ __forceinline__ float div_rn(float a, float b) {
  return __fdiv_rn(a, b);
}
__device__ __forceinline__ float sqrt_rn(float a) {
  return __fsqrt_rn(a);
}
__device__ __forceinline__ double add_rn(double a, double b) {
  return __dadd_rn(a, b);
}
__device__ __forceinline__ double sub_rn(double a, double b) {
  return __dsub_rn(a, b);
}
__device__ __forceinline__ double mul_rn(double a, double b) {
  return __dmul_rn(a, b);
}
__device__ __forceinline__ double div_rn(double a, double b) {
  return __ddiv_rn(a, b);
}
__device__ __forceinline__ double sqrt_rn(double a) {
  return __dsqrt_rn(a);
}

// T: the parameter/moment type (float, double); G: the gradient's (T, or a 16-bit float read
// and widened exactly); C: the model copy's type. grad_scale multiplies each widened gradient
// element in T unless it is 1. first_chunk[k] is the index of tensor k's first chunk
// (first_chunk[count] = all chunks).
template <typename T, typename G, typename C>
__global__ void adamw_chunk_kernel(MultiTensorTable<AdamWTensor> table, double grad_scale) {
  const ChunkRange range = chunk_of_block(table, kAdamWChunkElements);
  const AdamWTensor& t = table.entries[range.tensor];
  const int64_t chunk_start = range.begin;
  const cpu::AdamWStep& s = t.step;
  // The constants as the CPU kernel rounds them: differences in double, then to T.
  const bool decay = s.weight_decay != 0.0;
  const bool decoupled = s.decoupled_weight_decay;  // read once, not per element
  const T decay_factor = static_cast<T>(sub_rn(1.0, mul_rn(s.lr, s.weight_decay)));
  const T weight_decay = static_cast<T>(s.weight_decay);
  const T lerp_weight = static_cast<T>(sub_rn(1.0, s.beta1));
  const bool lerp_small = (lerp_weight < T(0) ? -lerp_weight : lerp_weight) < static_cast<T>(0.5);
  const T one_minus_lerp = sub_rn(static_cast<T>(1), lerp_weight);
  const T beta2 = static_cast<T>(s.beta2);
  const T one_minus_beta2 = static_cast<T>(sub_rn(1.0, s.beta2));
  const T neg_step_size = static_cast<T>(-s.step_size);
  const T bc2_sqrt = static_cast<T>(s.bias_correction2_sqrt);
  const T eps = static_cast<T>(s.eps);
  const bool scale_grad = grad_scale != 1.0;
  const T grad_factor = static_cast<T>(grad_scale);

  T* param = static_cast<T*>(t.param);
  T* exp_avg = static_cast<T*>(t.exp_avg);
  T* exp_avg_sq = static_cast<T*>(t.exp_avg_sq);
  const G* grad = static_cast<const G*>(t.grad);
  C* copy = static_cast<C*>(t.model_copy);
  const int64_t end = range.end;
  // One element's update, in place on p, m and v (the CPU kernel's operations in its order).
  auto update = [&](T& p, G raw_grad, T& m, T& v) {
    T g = convert<T>(raw_grad);
    if (scale_grad) g = mul_rn(g, grad_factor);
    if (decay) {
      if (decoupled) {
        p = mul_rn(p, decay_factor);
      } else {
        g = add_rn(g, mul_rn(weight_decay, p));
      }
    }
    const T diff = sub_rn(g, m);
    m = lerp_small ? add_rn(m, mul_rn(lerp_weight, diff)) : sub_rn(g, mul_rn(diff, one_minus_lerp));
    v = add_rn(mul_rn(v, beta2), mul_rn(mul_rn(one_minus_beta2, g), g));
    const T denom = add_rn(div_rn(sqrt_rn(v), bc2_sqrt), eps);
    p = add_rn(p, div_rn(mul_rn(neg_step_size, m), denom));
  };
  // 16-byte accesses where this tensor's arrays allow them (uniform over the block: chunk
  // starts are multiples of V); the chunk's last numel % V elements one by one.
  constexpr int V = kVectorElems<T>;
  const auto aligned = [](const void* ptr, size_t bytes) {
    return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
  };
  const bool vectorized = aligned(param, 16) && aligned(exp_avg, 16) && aligned(exp_avg_sq, 16) &&
                          aligned(grad, V * sizeof(G)) &&
                          (copy == nullptr || aligned(copy, V * sizeof(C)));
  int64_t scalar_start = chunk_start;
  if (vectorized) {
    scalar_start = chunk_start + (end - chunk_start) / V * V;
    for (int64_t i = chunk_start + threadIdx.x * V; i < scalar_start; i += blockDim.x * V) {
      Pack<T, V> p = load_pack<V>(param + i), m = load_pack<V>(exp_avg + i),
                 v = load_pack<V>(exp_avg_sq + i);
      const Pack<G, V> g = load_pack<V>(grad + i);
#pragma unroll
      for (int e = 0; e < V; ++e)
        update(p.v[e], g.v[e], m.v[e], v.v[e]);
      store_pack<V>(param + i, p);
      store_pack<V>(exp_avg + i, m);
      store_pack<V>(exp_avg_sq + i, v);
      if (copy != nullptr) {
        Pack<C, V> c;
#pragma unroll
        for (int e = 0; e < V; ++e)
          c.v[e] = convert<C>(p.v[e]);
        store_pack<V>(copy + i, c);
      }
    }
  }
  for (int64_t i = scalar_start + threadIdx.x; i < end; i += blockDim.x) {
    T p = param[i], m = exp_avg[i], v = exp_avg_sq[i];
    update(p, grad[i], m, v);
    param[i] = p;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    if (copy != nullptr) copy[i] = convert<C>(p);
  }
}

void check_tables(int copy_dtype, const AdamWTensor* tensors, int64_t count) {
  if (count < 0) throw std::invalid_argument("adamw_multi_tensor: negative tensor count");
  for (int64_t k = 0; k < count; ++k) {
    const AdamWTensor& t = tensors[k];
    const std::string which = "adamw_multi_tensor: tensor " + std::to_string(k);
    if (t.numel < 0) throw std::invalid_argument(which + " has a negative numel");
    if (t.numel == 0) continue;
    if (t.param == nullptr || t.exp_avg == nullptr || t.exp_avg_sq == nullptr ||
        t.grad == nullptr) {
      throw std::invalid_argument(which + " has a null param, moment or gradient pointer");
    }
    if (copy_dtype == kAdamWNoCopy && t.model_copy != nullptr) {
      throw std::invalid_argument(which + " has a model copy but the launch's copy dtype is none");
    }
  }
}

}  // namespace

int64_t adamw_workspace_bytes(const AdamWTensor* tensors, int64_t count) {
  return multi_tensor_workspace_bytes(tensors, count, kAdamWChunkElements, 0);
}

void adamw_multi_tensor(int dtype, int grad_dtype, int copy_dtype, double grad_scale,
                        const AdamWTensor* tensors, int64_t count, void* workspace,
                        int64_t workspace_bytes, cudaStream_t stream) {
  check_tables(copy_dtype, tensors, count);
  if (!(grad_scale > 0.0) || grad_scale > 1e300) {
    throw std::invalid_argument("adamw_multi_tensor: grad_scale must be positive and finite, got " +
                                std::to_string(grad_scale));
  }
  const MultiTensorTable<AdamWTensor> table =
      stage_multi_tensor("adamw_multi_tensor", tensors, count, kAdamWChunkElements, 0, workspace,
                         workspace_bytes, stream);
  if (table.chunks == 0) return;
  const int64_t chunks = table.chunks;
  const auto blocks = static_cast<unsigned>(chunks);
  auto launch = [&]<typename T, typename G, typename C>() {
    adamw_chunk_kernel<T, G, C><<<blocks, kAdamWThreads, 0, stream>>>(table, grad_scale);
    AUTOTP_CUDA_CHECK_LAUNCH("adamw_chunk_kernel", {"tensors", count}, {"chunks", chunks},
                             {"dtype", dtype}, {"grad_dtype", grad_dtype},
                             {"copy_dtype", copy_dtype});
  };
  auto with_grad_type = [&]<typename T, typename G>() {
    if (copy_dtype == kAdamWNoCopy) {
      launch.template operator()<T, G, T>();
    } else {
      dispatch_float_code(copy_dtype, "adamw_multi_tensor (model copy)",
                          [&]<typename C>(TypeTag<C>) { launch.template operator()<T, G, C>(); });
    }
  };
  // Gradients in the parameters' dtype, or 16-bit gradients read directly (f32 masters
  // updated from bf16/f16 model gradients without an f32 copy of them).
  auto with_param_type = [&]<typename T>(TypeTag<T>) {
    if (grad_dtype == dtype) {
      with_grad_type.template operator()<T, T>();
    } else if (static_cast<DTypeCode>(grad_dtype) == DTypeCode::BF16) {
      with_grad_type.template operator()<T, bf16>();
    } else if (static_cast<DTypeCode>(grad_dtype) == DTypeCode::F16) {
      with_grad_type.template operator()<T, f16>();
    } else {
      throw_unsupported_dtype("adamw_multi_tensor (gradients)", grad_dtype,
                              "the parameters' dtype, bf16 or f16");
    }
  };
  switch (static_cast<DTypeCode>(dtype)) {
    case DTypeCode::F32:
      with_param_type(TypeTag<float>{});
      return;
    case DTypeCode::F64:
      with_param_type(TypeTag<double>{});
      return;
    default:
      throw_unsupported_dtype("adamw_multi_tensor", dtype, "f32 or f64");
  }
}

}  // namespace autotp::kernels::cuda
