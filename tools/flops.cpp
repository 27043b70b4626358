// FLOP accounting and the device peak table.
#include "tools/flops.h"

#include <fmt/format.h>

namespace autotp::tools {

FlopCount training_flops_per_token(const ModelConfig& config, int64_t params, int64_t seq_len) {
  FlopCount c;
  c.params = params;
  // A tied table is the lm_head's weight too: its matmul counts (nanoGPT's rule).
  c.non_embedding_params =
      config.tie_word_embeddings ? params : params - config.vocab_size * config.hidden_size;
  const double layers = static_cast<double>(config.num_hidden_layers);
  const double heads = static_cast<double>(config.num_attention_heads);
  const double head_dim = static_cast<double>(config.head_dim);
  c.attention_flops_per_token = 12.0 * layers * heads * head_dim * static_cast<double>(seq_len);
  c.flops_per_token =
      6.0 * static_cast<double>(c.non_embedding_params) + c.attention_flops_per_token;
  c.formula = fmt::format(
      "6 N + 12 L H Q T = 6 x {} + 12 x {} x {} x {} x {} = {:.4g} FLOP/token "
      "(N: parameters without the input embedding{})",
      c.non_embedding_params, config.num_hidden_layers, config.num_attention_heads, config.head_dim,
      seq_len, c.flops_per_token,
      config.tie_word_embeddings ? "; tied, so the table counts once, as the lm_head's weight"
                                 : "");
  return c;
}

std::optional<double> dense_bf16_peak_flops(const std::string& name) {
  // Vendor datasheet figures for dense (non-sparse) bf16 tensor-core math.
  struct Entry {
    const char* key;
    double flops;
  };
  static const Entry kTable[] = {
      {"H200", 989e12}, {"H100 PCIe", 756e12}, {"H100", 989e12}, {"H800", 989e12},
      {"A100", 312e12}, {"L40S", 362e12},      {"A10", 125e12},
  };
  for (const Entry& e : kTable) {
    if (name.find(e.key) != std::string::npos) return e.flops;
  }
  return std::nullopt;
}

std::optional<double> memory_bandwidth_bytes_per_s(const std::string& name) {
  // Vendor datasheet HBM/GDDR bandwidths; more specific names first.
  struct Entry {
    const char* key;
    double bytes_per_s;
  };
  static const Entry kTable[] = {
      {"H200", 4.8e12},   {"H100 PCIe", 2.0e12},        {"H100", 3.35e12},
      {"H800", 3.35e12},  {"A100-SXM4-40GB", 1.555e12}, {"A100-PCIE-40GB", 1.555e12},
      {"A100", 2.039e12}, {"L40S", 0.864e12},           {"A10", 0.6e12},
  };
  for (const Entry& e : kTable) {
    if (name.find(e.key) != std::string::npos) return e.bytes_per_s;
  }
  return std::nullopt;
}

}  // namespace autotp::tools
