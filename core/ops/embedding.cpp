// embedding: a row gather from a [V, D] table, with a scatter-add backward kernel.
#include <vector>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/nn.h"
#include "core/ops/nn_common.h"
#include "kernels/cpu/embedding.h"

namespace autotp::ops {

using detail::check_cpu;
using detail::dispatch_index;

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  AUTOTP_CHECK(weight.defined() && ids.defined(), "embedding: undefined weight or ids");
  AUTOTP_CHECK(weight.dim() == 2, "embedding: weight must be [V, D], got shape {}",
               shape_str(weight.shape()));
  AUTOTP_CHECK(ids.dtype() == DType::I64 || ids.dtype() == DType::I32,
               "embedding: ids must be i64 or i32, got {}", dtype_name(ids.dtype()));
  check_cpu(weight, "embedding");
  check_cpu(ids, "embedding");
  const int64_t vocab = weight.shape()[0], dim = weight.shape()[1];
  const std::vector<int64_t> host_ids = ids.to_vector_i64();
  for (size_t i = 0; i < host_ids.size(); ++i) {
    AUTOTP_CHECK(host_ids[i] >= 0 && host_ids[i] < vocab,
                 "embedding: id {} (at flat position {} of ids shape {}) is outside the "
                 "vocabulary [0, {})",
                 host_ids[i], i, shape_str(ids.shape()), vocab);
  }
  const Tensor wc = weight.detach().contiguous();  // [V, D]
  const Tensor ic = ids.contiguous();              // ids.shape
  const int64_t n_ids = ids.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(dim);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());  // ids.shape + [D]
  dispatch_float(weight.dtype(), "embedding", [&]<typename T>(TypeTag<T>) {
    dispatch_index(ids.dtype(), "embedding", [&]<typename I>(TypeTag<I>) {
      kernels::cpu::embedding_forward<T, I>(out.data<T>(), wc.data<T>(), ic.data<I>(), n_ids, dim);
    });
  });
  const DType dtype = weight.dtype();
  return record_op(out, "EmbeddingBackward", {&weight},
                   [ic, vocab, dim, n_ids, dtype](const Tensor& g) {
                     check_cpu(g, "embedding backward");
                     const Tensor gc = g.contiguous();                         // ids.shape + [D]
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

}  // namespace autotp::ops
