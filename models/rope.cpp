// rope_inv_freq: HF's default inverse frequencies and the llama3 band-wise adjustment, in the
// same order of operations as transformers' _compute_llama3_parameters.
#include "models/rope.h"

#include <cmath>
#include <numbers>

#include "core/ops/nn.h"

namespace autotp {

std::vector<double> rope_inv_freq(const ModelConfig& config) {
  std::vector<double> inv_freq = ops::rope_inv_freq(config.head_dim, config.rope_theta);
  const RopeScaling& r = config.rope_scaling;
  if (r.rope_type == "default") return inv_freq;
  AUTOTP_CHECK(r.rope_type == "llama3", "rope_inv_freq: rope_type '{}' is not supported",
               r.rope_type);
  const double old_context = static_cast<double>(r.original_max_position_embeddings);
  const double low_freq_wavelen = old_context / r.low_freq_factor;
  const double high_freq_wavelen = old_context / r.high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen > low_freq_wavelen) {
      f = f / r.factor;  // low frequencies: fully interpolated
    } else if (!(wavelen < high_freq_wavelen)) {
      const double smooth =
          (old_context / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      f = (1.0 - smooth) * f / r.factor + smooth * f;  // medium: blend of the two
    }                                                  // high frequencies: unchanged
  }
  return inv_freq;
}

}  // namespace autotp
