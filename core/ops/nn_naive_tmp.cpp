// TEMPORARY naive embedding (host loops, CPU f32/f64) so the Module/layers branch links and
// tests before core/ops/nn.cpp lands. Delete this file at merge time.
#include <vector>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/nn.h"

namespace autotp::ops {

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  AUTOTP_CHECK(weight.defined() && ids.defined(), "embedding: undefined operand");
  AUTOTP_CHECK(weight.dim() == 2, "embedding: weight must be [V, D], got {}",
               shape_str(weight.shape()));
  AUTOTP_CHECK(ids.dtype() == DType::I64 || ids.dtype() == DType::I32,
               "embedding: ids must be i64 or i32, got {}", dtype_name(ids.dtype()));
  AUTOTP_CHECK(weight.device().is_cpu() && ids.device().is_cpu(),
               "embedding: the temporary naive embedding runs on CPU tensors only");
  const int64_t vocab = weight.size(0), dim = weight.size(1);
  const std::vector<int64_t> index = ids.to_vector_i64();
  for (int64_t id : index) {
    AUTOTP_CHECK(id >= 0 && id < vocab, "embedding: id {} is outside [0, {})", id, vocab);
  }
  Shape out_shape = ids.shape();
  out_shape.push_back(dim);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
  const Tensor w = weight.detach().contiguous();
  dispatch_float(weight.dtype(), "embedding", [&]<typename T>(TypeTag<T>) {
    const T* pw = static_cast<const T*>(w.raw_data());
    T* po = out.data<T>();
    for (size_t r = 0; r < index.size(); ++r) {
      for (int64_t d = 0; d < dim; ++d) po[r * dim + d] = pw[index[r] * dim + d];
    }
  });
  const Shape w_shape = weight.shape();
  return record_op(out, "EmbeddingBackward", {&weight}, [index, w_shape, dim](const Tensor& g) {
    // g [ids..., D] scatter-added into rows of dw [V, D].
    const Tensor gc = g.contiguous();
    Tensor dw = Tensor::zeros(w_shape, g.dtype(), g.device());
    dispatch_float(g.dtype(), "embedding_backward", [&]<typename T>(TypeTag<T>) {
      const T* pg = static_cast<const T*>(gc.raw_data());
      T* pd = dw.data<T>();
      for (size_t r = 0; r < index.size(); ++r) {
        for (int64_t d = 0; d < dim; ++d) pd[index[r] * dim + d] += pg[r * dim + d];
      }
    });
    return std::vector<Tensor>{dw};
  });
}

}  // namespace autotp::ops
