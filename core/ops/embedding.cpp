// embedding: a row gather from a [V, D] table, with a scatter-add backward kernel (on CUDA the
// index kernels: a gather, and an atomic-free segmented scatter-add, deterministic).
#include <vector>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/index_segments.h"
#include "core/ops/nn.h"
#include "core/ops/nn_common.h"
#include "kernels/cpu/embedding.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/index.h"
#endif

namespace autotp::ops {

using detail::check_host_or_same_device;
using detail::check_same_device;
using detail::dispatch_index;
using detail::fail_without_cuda;

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  AUTOTP_CHECK(weight.defined() && ids.defined(), "embedding: undefined weight or ids");
  AUTOTP_CHECK(weight.dim() == 2, "embedding: weight must be [V, D], got shape {}",
               shape_str(weight.shape()));
  AUTOTP_CHECK(ids.dtype() == DType::I64 || ids.dtype() == DType::I32,
               "embedding: ids must be i64 or i32, got {}", dtype_name(ids.dtype()));
  check_host_or_same_device(weight, ids, "embedding", "weight", "ids");
  const int64_t vocab = weight.shape()[0], dim = weight.shape()[1];
  // Validated on the host (and kept there for the CUDA backward): host ids are read in place
  // (and uploaded for a CUDA table without a host wait), device ids with one copy back.
  const std::vector<int64_t> host_ids = ids.to_vector_i64();
  for (size_t i = 0; i < host_ids.size(); ++i) {
    AUTOTP_CHECK(host_ids[i] >= 0 && host_ids[i] < vocab,
                 "embedding: id {} (at flat position {} of ids shape {}) is outside the "
                 "vocabulary [0, {})",
                 host_ids[i], i, shape_str(ids.shape()), vocab);
  }
  const Tensor wc = weight.detach().contiguous();                   // [V, D]
  const Tensor ic = ids.detach().to(weight.device()).contiguous();  // ids.shape
  const int64_t n_ids = ids.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(dim);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());  // ids.shape + [D]
  const DType dtype = weight.dtype();
  if (weight.device().is_cpu()) {
    dispatch_float(weight.dtype(), "embedding", [&]<typename T>(TypeTag<T>) {
      dispatch_index(ids.dtype(), "embedding", [&]<typename I>(TypeTag<I>) {
        kernels::cpu::embedding_forward<T, I>(out.data<T>(), wc.data<T>(), ic.data<I>(), n_ids,
                                              dim);
      });
    });
    return record_op(out, "EmbeddingBackward", {&weight},
                     [ic, vocab, dim, n_ids, dtype](const Tensor& g) {
                       check_same_device(ic, g, "embedding backward", "ids", "gradient");
                       const Tensor gc = g.contiguous();  // ids.shape + [D]
                       Tensor dweight = Tensor::empty({vocab, dim}, dtype, g.device());  // [V, D]
                       dispatch_float(dtype, "embedding", [&]<typename T>(TypeTag<T>) {
                         dispatch_index(ic.dtype(), "embedding", [&]<typename I>(TypeTag<I>) {
                           kernels::cpu::embedding_backward<T, I>(dweight.data<T>(), ic.data<I>(),
                                                                  gc.data<T>(), n_ids, vocab, dim);
                         });
                       });
                       return std::vector<Tensor>{dweight};
                     });
  }
#ifdef AUTOTP_WITH_CUDA
  // The gather is index_select over the rows of the [V, D] table (outer 1, inner D).
  kernels::cuda::index_select(static_cast<int>(dtype), static_cast<int>(ic.dtype()), out.raw_data(),
                              wc.raw_data(), ic.raw_data(), 1, vocab, dim, n_ids, nullptr);
  // A gradient already pending for the table (the lm_head's, when the embeddings are tied) is
  // the scatter-add's starting value, in place, when the engine's buffer may be overwritten.
  return record_folding_op(
      out, "EmbeddingBackward", {&weight},
      [host_ids, vocab, dim, n_ids, dtype](const Tensor& g, PendingGradients& pending) {
        const Tensor gc = g.contiguous();  // ids.shape + [D]
        Tensor dweight;                    // [V, D]
        if (pending[0].defined() && pending[0].shape() == Shape{vocab, dim} &&
            pending[0].dtype() == dtype && pending[0].device() == g.device() &&
            owns_its_storage(pending[0])) {
          dweight = std::move(pending[0]);
        } else {
          dweight = Tensor::zeros({vocab, dim}, dtype, g.device());
        }
        // Rows of g grouped by id (host sort), each dweight row summed by one
        // thread per column in id-position order: deterministic, no atomics.
        const detail::IndexSegments seg = detail::make_index_segments(host_ids, g.device());
        kernels::cuda::index_add_sorted(static_cast<int>(dtype), dweight.raw_data(), gc.raw_data(),
                                        seg.order.data<int64_t>(), seg.starts.data<int64_t>(),
                                        seg.values.data<int64_t>(), seg.segments, 1, vocab, dim,
                                        n_ids, nullptr);
        return std::vector<Tensor>{dweight};
      });
#else
  fail_without_cuda("embedding");
#endif
}

}  // namespace autotp::ops
