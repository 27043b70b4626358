// The rotary inverse frequencies a ModelConfig asks for: HF's default rope, or Llama 3.1's
// "llama3" rope scaling (HF's _compute_llama3_parameters), computed in double.
#pragma once

#include <vector>

#include "models/model_config.h"

namespace autotp {

// inv_freq [head_dim / 2]. For rope_type "llama3", with wavelen = 2*pi / inv_freq and
// L = original_max_position_embeddings: wavelengths below L / high_freq_factor keep their
// frequency, those above L / low_freq_factor are divided by `factor`, and those in between
// interpolate with smooth = (L / wavelen - low_freq_factor) / (high_freq_factor -
// low_freq_factor): inv_freq * ((1 - smooth) / factor + smooth).
std::vector<double> rope_inv_freq(const ModelConfig& config);

}  // namespace autotp
