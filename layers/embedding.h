// Embedding layer: rows of weight [num_embeddings, embedding_dim] looked up by integer ids.
// Forward is ops::embedding; the parameter lives in the Module registry as "weight".
#pragma once

#include <cstdint>
#include <string>

#include "core/module.h"

namespace autotp {

class Embedding : public UnaryModule {
 public:
  // Weight starts at zero: initialize with init::init_weights_hf (or set values).
  Embedding(int64_t num_embeddings, int64_t embedding_dim, DType dtype = DType::F32,
            Device device = Device::cpu());

  std::string type_name() const override { return "Embedding"; }
  std::string extra_repr() const override;

  // ids (i64/i32) [...] -> [..., embedding_dim]
  Tensor forward(const Tensor& ids) override;

  Tensor weight() const { return parameter("weight"); }  // [num_embeddings, embedding_dim]
  int64_t num_embeddings() const { return weight().size(0); }
  int64_t embedding_dim() const { return weight().size(1); }
};

}  // namespace autotp
