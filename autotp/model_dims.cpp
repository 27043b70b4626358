// model_dims: ModelDims from a ModelConfig.
#include "autotp/model_dims.h"

namespace autotp {

ModelDims model_dims(const ModelConfig& config_in) {
  ModelConfig c = config_in;
  c.resolve_defaults();
  ModelDims d;
  d.model_type = c.model_type;
  d.hidden_size = c.hidden_size;
  d.num_attention_heads = c.num_attention_heads;
  d.num_key_value_heads = c.num_key_value_heads;
  d.head_dim = c.head_dim;
  d.tie_word_embeddings = c.tie_word_embeddings;
  return d;
}

}  // namespace autotp
