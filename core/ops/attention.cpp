// causal_mask and scaled_dot_product_attention (grouped-query heads): dedicated CPU and CUDA
// kernels for forward and backward; attention saves the per-row logsumexp, not the
// probabilities (on CUDA a tiled kernel with an online softmax: no [S, S] matrix in memory).
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/nn.h"
#include "core/ops/nn_common.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/causal_mask.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/attention.h"
#include "kernels/cuda/causal_mask.h"
#include "kernels/cuda/tensor_core_attention.h"
#include "kernels/stored_score_pieces.h"
#endif

namespace autotp::ops {

using detail::check_same_device;
using detail::fail_without_cuda;
using detail::stats_dtype;

namespace {

// out = x with entries above the end-aligned causal diagonal set to `value`. No autograd.
Tensor causal_fill(const Tensor& x, double value) {
  const int64_t sq = x.shape()[x.dim() - 2], sk = x.shape()[x.dim() - 1];
  const int64_t batch = sq * sk == 0 ? 0 : x.numel() / (sq * sk);
  const Tensor xc = x.detach().contiguous();                     // [batch, Sq, Sk]
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());  // [..., Sq, Sk]
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "causal_mask", [&]<typename T>(TypeTag<T>) {
      kernels::cpu::causal_mask_fill<T>(out.data<T>(), xc.data<T>(), batch, sq, sk,
                                        static_cast<T>(value));
    });
  } else {
#ifdef AUTOTP_WITH_CUDA
    kernels::cuda::causal_mask_fill(static_cast<int>(x.dtype()), out.raw_data(), xc.raw_data(),
                                    batch, sq, sk, value, nullptr);
#else
    fail_without_cuda("causal_mask");
#endif
  }
  return out;
}

// A contiguous copy that starts on a 16-byte boundary: the tensor-core kernels load 16 bytes
// at a time, and a contiguous view into a larger buffer may start anywhere.
Tensor aligned_contiguous(const Tensor& t) {
  Tensor c = t.detach().contiguous();
  if (reinterpret_cast<uintptr_t>(c.raw_data()) % 16 != 0) c = c.clone();
  return c;
}

#ifdef AUTOTP_WITH_CUDA
// The strides of a [batch, heads, seq, dim] operand as the tensor-core kernels take them, when
// they can read it in place: dim contiguous, every other stride a multiple of 8 elements (16
// bytes), the data on a 16-byte boundary. A dim of size 1 has no stride to honour (index 0).
std::optional<kernels::HeadStrides> tensor_core_strides(const Tensor& t) {
  const Shape& shape = t.shape();
  const Strides& st = t.strides();
  if (shape[3] > 1 && st[3] != 1) return std::nullopt;
  if (reinterpret_cast<uintptr_t>(t.raw_data()) % 16 != 0) return std::nullopt;
  kernels::HeadStrides s{shape[0] > 1 ? st[0] : 0, shape[1] > 1 ? st[1] : 0,
                         shape[2] > 1 ? st[2] : 8};
  if (s.batch % 8 != 0 || s.head % 8 != 0 || s.row % 8 != 0 || s.row <= 0) return std::nullopt;
  return s;
}

// The operand itself where the kernels read it in place, else a contiguous aligned copy.
Tensor tensor_core_operand(const Tensor& t) {
  return tensor_core_strides(t) ? t.detach() : aligned_contiguous(t);
}

// True when `t` ([batch, heads, seq, dim]) is laid out sequence-major, [batch, seq, heads, dim]
// in memory: a projection's output viewed per head.
bool sequence_major(const Tensor& t) {
  return t.shape()[1] > 1 && t.shape()[2] > 1 && t.strides()[1] < t.strides()[2];
}

// An uninitialized [batch, heads, seq, dim] tensor in the memory order of `like`: sequence-major
// (a transposed view of a contiguous [batch, seq, heads, dim] tensor) or contiguous. Gradients
// take their input's layout, so the transposes that made the input cost nothing going back.
Tensor empty_in_layout_of(const Tensor& like) {
  const Shape& shape = like.shape();
  if (!sequence_major(like)) return Tensor::empty(shape, like.dtype(), like.device());
  return Tensor::empty({shape[0], shape[2], shape[1], shape[3]}, like.dtype(), like.device())
      .transpose(1, 2);
}
#endif

}  // namespace

Tensor causal_mask(const Tensor& scores, double value) {
  AUTOTP_CHECK(scores.defined(), "causal_mask: undefined scores");
  AUTOTP_CHECK(scores.dim() >= 2, "causal_mask: scores must be [..., Sq, Sk], got shape {}",
               shape_str(scores.shape()));
  Tensor out = causal_fill(scores, value);
  return record_op(out, "CausalMaskBackward", {&scores}, [](const Tensor& g) {
    return std::vector<Tensor>{causal_fill(g, 0.0)};  // masked entries do not depend on scores
  });
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    double scale, const AttentionKernels& variant) {
  const char* op = "scaled_dot_product_attention";
  AUTOTP_CHECK(q.defined() && k.defined() && v.defined(), "{}: undefined q, k or v", op);
  AUTOTP_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
               "{}: q, k, v must be [B, H, S, D], got q {}, k {}, v {}", op, shape_str(q.shape()),
               shape_str(k.shape()), shape_str(v.shape()));
  AUTOTP_CHECK(k.shape() == v.shape(), "{}: k {} and v {} must have the same shape", op,
               shape_str(k.shape()), shape_str(v.shape()));
  const int64_t batch = q.shape()[0], hq = q.shape()[1], seq = q.shape()[2], dim = q.shape()[3];
  const int64_t hkv = k.shape()[1];
  AUTOTP_CHECK(k.shape()[0] == batch && k.shape()[2] == seq && k.shape()[3] == dim,
               "{}: k/v {} must match q {} in batch, sequence and head dim ([{}, Hkv, {}, {}])", op,
               shape_str(k.shape()), shape_str(q.shape()), batch, seq, dim);
  AUTOTP_CHECK(hkv > 0 && hq % hkv == 0,
               "{}: {} query heads are not a multiple of {} kv heads (q {}, k {})", op, hq, hkv,
               shape_str(q.shape()), shape_str(k.shape()));
  AUTOTP_CHECK(dim > 0, "{}: head dim of q {} is empty", op, shape_str(q.shape()));
  AUTOTP_CHECK(variant.row_tiles_per_warp == 1 || variant.row_tiles_per_warp == 2,
               "{}: row_tiles_per_warp must be 1 or 2, got {}", op, variant.row_tiles_per_warp);
  AUTOTP_CHECK(!variant.needs_small_head_dim() || dim <= 64,
               "{}: the attention kernel variants (row_tiles_per_warp {}, dkdv_kv_in_registers "
               "{}) need a head dim of at most 64, q {} has {}",
               op, variant.row_tiles_per_warp, variant.dkdv_kv_in_registers, shape_str(q.shape()),
               dim);
  AUTOTP_CHECK(!(variant.dq_from_stored_scores && variant.dkdv_kv_in_registers),
               "{}: dq_from_stored_scores and dkdv_kv_in_registers exclude each other (the "
               "stored-score backward has its own dk/dv kernel)",
               op);
  AUTOTP_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(),
               "{}: dtypes differ (q {}, k {}, v {})", op, dtype_name(q.dtype()),
               dtype_name(k.dtype()), dtype_name(v.dtype()));
  check_same_device(q, k, op, "q", "k");
  check_same_device(q, v, op, "q", "v");
  const double s = scale > 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(dim));
  if (q.device().is_cpu()) {
    const Tensor qc = aligned_contiguous(q);                              // [B, Hq, S, D]
    const Tensor kc = aligned_contiguous(k);                              // [B, Hkv, S, D]
    const Tensor vc = aligned_contiguous(v);                              // [B, Hkv, S, D]
    Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());         // [B, Hq, S, D]
    Tensor lse = Tensor::empty({batch, hq, seq}, q.dtype(), q.device());  // [B, Hq, S]
    dispatch_float(q.dtype(), op, [&]<typename T>(TypeTag<T>) {
      kernels::cpu::attention_forward<T>(out.data<T>(), lse.data<T>(), qc.data<T>(), kc.data<T>(),
                                         vc.data<T>(), batch, hq, hkv, seq, dim, s, causal);
    });
    return record_op(
        out, "AttentionBackward", {&q, &k, &v},
        [qc, kc, vc, lse, batch, hq, hkv, seq, dim, s, causal](const Tensor& g) {
          check_same_device(qc, g, "scaled_dot_product_attention backward", "q", "gradient");
          const Tensor gc = g.contiguous();                                // [B, Hq, S, D]
          Tensor dq = Tensor::empty(qc.shape(), qc.dtype(), qc.device());  // [B, Hq, S, D]
          Tensor dk = Tensor::empty(kc.shape(), kc.dtype(), kc.device());  // [B, Hkv, S, D]
          Tensor dv = Tensor::empty(vc.shape(), vc.dtype(), vc.device());  // [B, Hkv, S, D]
          dispatch_float(qc.dtype(), "scaled_dot_product_attention", [&]<typename T>(TypeTag<T>) {
            kernels::cpu::attention_backward<T>(
                dq.data<T>(), dk.data<T>(), dv.data<T>(), qc.data<T>(), kc.data<T>(), vc.data<T>(),
                lse.data<T>(), gc.data<T>(), batch, hq, hkv, seq, dim, s, causal);
          });
          return std::vector<Tensor>{dq, dk, dv};
        });
  }
#ifdef AUTOTP_WITH_CUDA
  AUTOTP_CHECK(dim <= kernels::cuda::kAttentionMaxHeadDim,
               "{}: head dim {} of q {} is above the CUDA kernel's limit {}", op, dim,
               shape_str(q.shape()), kernels::cuda::kAttentionMaxHeadDim);
  // The logsumexp is kept in f32 for 16-bit inputs.
  const DType stats = stats_dtype(q.dtype());
  Tensor lse = Tensor::empty({batch, hq, seq}, stats, q.device());  // [B, Hq, S]
  const int code = static_cast<int>(q.dtype());
  if (kernels::cuda::tensor_core_attention_applies(code, dim)) {
    // The tensor-core kernels read every operand at its own strides: q, k, v as the model
    // passes them (e.g. the projections' [B, S, H, D] outputs viewed per head), and the output
    // is written sequence-major, so merging its heads back is a view, not a copy.
    const Tensor qt = tensor_core_operand(q), kt = tensor_core_operand(k),
                 vt = tensor_core_operand(v);
    Tensor out = Tensor::empty({batch, seq, hq, dim}, q.dtype(), q.device())
                     .transpose(1, 2);  // [B, Hq, S, D], sequence-major
    kernels::AttentionLayouts layouts{};
    layouts.q = *tensor_core_strides(qt);
    layouts.k = *tensor_core_strides(kt);
    layouts.v = *tensor_core_strides(vt);
    layouts.out = *tensor_core_strides(out);
    kernels::cuda::tensor_core_attention_forward(code, out.raw_data(), lse.raw_data(),
                                                 qt.raw_data(), kt.raw_data(), vt.raw_data(), batch,
                                                 hq, hkv, seq, dim, s, causal, layouts, nullptr,
                                                 variant.row_tiles_per_warp, variant.longest_first);
    const Tensor saved_out = out.detach();  // a detached alias: no cycle through the closure
    return record_op(
        out, "AttentionBackward", {&q, &k, &v},
        [qt, kt, vt, saved_out, lse, layouts, batch, hq, hkv, seq, dim, s, causal,
         variant](const Tensor& g) {
          check_same_device(qt, g, "scaled_dot_product_attention backward", "q", "gradient");
          const Tensor gt = tensor_core_operand(g);  // [B, Hq, S, D]
          // Each gradient in its input's memory order.
          Tensor dq = empty_in_layout_of(qt), dk = empty_in_layout_of(kt),
                 dv = empty_in_layout_of(vt);
          Tensor delta = Tensor::empty(lse.shape(), lse.dtype(), lse.device());  // [B, Hq, S]
          kernels::AttentionLayouts l = layouts;
          l.dout = *tensor_core_strides(gt);
          l.dq = *tensor_core_strides(dq);
          l.dk = *tensor_core_strides(dk);
          l.dv = *tensor_core_strides(dv);
          kernels::cuda::TensorCoreBackwardOptions options;
          options.dq_row_tiles_per_warp = variant.row_tiles_per_warp;
          options.dkdv_kv_in_registers = variant.dkdv_kv_in_registers;
          options.longest_first = variant.longest_first;
          Tensor scores;  // the stored dS tiles, freed when the backward returns
          if (variant.dq_from_stored_scores) {
            const int64_t elements = kernels::stored_score_buffer_elements(
                kernels::stored_score_pieces(
                    batch, hq, hkv, seq, causal,
                    variant.stored_scores_max_bytes / static_cast<int64_t>(dtype_size(qt.dtype()))),
                hq, hkv, seq, causal);
            scores = Tensor::empty({elements}, qt.dtype(), qt.device());
            options.stored_scores = scores.raw_data();
            options.stored_scores_elements = elements;
          }
          kernels::cuda::tensor_core_attention_backward(
              static_cast<int>(qt.dtype()), dq.raw_data(), dk.raw_data(), dv.raw_data(),
              qt.raw_data(), kt.raw_data(), vt.raw_data(), saved_out.raw_data(), lse.raw_data(),
              gt.raw_data(), delta.raw_data(), batch, hq, hkv, seq, dim, s, causal, l, nullptr,
              options);
          return std::vector<Tensor>{dq, dk, dv};
        });
  }
  // The other dtypes and head dims: the row-per-warp kernels over contiguous operands.
  const Tensor qc = aligned_contiguous(q);                       // [B, Hq, S, D]
  const Tensor kc = aligned_contiguous(k);                       // [B, Hkv, S, D]
  const Tensor vc = aligned_contiguous(v);                       // [B, Hkv, S, D]
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());  // [B, Hq, S, D]
  kernels::cuda::attention_forward(code, out.raw_data(), lse.raw_data(), qc.raw_data(),
                                   kc.raw_data(), vc.raw_data(), batch, hq, hkv, seq, dim, s,
                                   causal, nullptr);
  return record_op(
      out, "AttentionBackward", {&q, &k, &v},
      [qc, kc, vc, lse, batch, hq, hkv, seq, dim, s, causal](const Tensor& g) {
        check_same_device(qc, g, "scaled_dot_product_attention backward", "q", "gradient");
        const Tensor gc = aligned_contiguous(g);                               // [B, Hq, S, D]
        Tensor dq = Tensor::empty(qc.shape(), qc.dtype(), qc.device());        // [B, Hq, S, D]
        Tensor dk = Tensor::empty(kc.shape(), kc.dtype(), kc.device());        // [B, Hkv, S, D]
        Tensor dv = Tensor::empty(vc.shape(), vc.dtype(), vc.device());        // [B, Hkv, S, D]
        Tensor delta = Tensor::empty(lse.shape(), lse.dtype(), lse.device());  // [B, Hq, S]
        kernels::cuda::attention_backward(
            static_cast<int>(qc.dtype()), dq.raw_data(), dk.raw_data(), dv.raw_data(),
            qc.raw_data(), kc.raw_data(), vc.raw_data(), /*out=*/nullptr, lse.raw_data(),
            gc.raw_data(), delta.raw_data(), batch, hq, hkv, seq, dim, s, causal, nullptr);
        return std::vector<Tensor>{dq, dk, dv};
      });
#else
  fail_without_cuda(op);
#endif
}

}  // namespace autotp::ops
