// Embedding layer: registration of weight [num_embeddings, embedding_dim], forward via
// ops::embedding.
#include "layers/embedding.h"

#include "core/ops/nn.h"

namespace autotp {

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, DType dtype, Device device) {
  AUTOTP_CHECK(num_embeddings > 0 && embedding_dim > 0,
               "Embedding: num_embeddings ({}) and embedding_dim ({}) must be positive",
               num_embeddings, embedding_dim);
  AUTOTP_CHECK(is_floating(dtype), "Embedding: dtype {} is not a floating type", dtype_name(dtype));
  register_parameter("weight", Tensor::zeros({num_embeddings, embedding_dim}, dtype, device));
}

std::string Embedding::extra_repr() const {
  return fmt::format("num_embeddings={}, embedding_dim={}", num_embeddings(), embedding_dim());
}

Tensor Embedding::forward(const Tensor& ids) {
  return ops::embedding(weight(), ids);
}

}  // namespace autotp
