// The Llama family (llama, mistral, qwen2, qwen3) as one Module tree with Hugging Face's
// parameter names: embed_tokens, decoder layers (GQA attention + RoPE, SwiGLU MLP, RMSNorms),
// final norm and lm_head (or the tied embedding).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/module.h"
#include "core/ops/nn.h"
#include "models/causal_lm.h"
#include "models/model_config.h"

namespace autotp {

// Where the architectures of the family differ (HF's modeling_<type>.py):
//   llama:   q/k/v/o bias = attention_bias, MLP bias = mlp_bias
//   mistral: no biases (attention_bias/mlp_bias are ignored, as HF does)
//   qwen2:   bias on q/k/v always, none on o_proj or the MLP
//   qwen3:   q/k/v/o bias = attention_bias, no MLP bias, per-head RMSNorm q_norm/k_norm
//            [head_dim] on queries and keys before RoPE
struct LlamaLayout {
  bool qkv_bias = false;
  bool o_bias = false;
  bool mlp_bias = false;
  bool qk_norm = false;
};
LlamaLayout llama_layout(const ModelConfig& config);

// down_proj(silu(gate_proj(x)) * up_proj(x)); x [..., hidden] -> [..., hidden].
class LlamaMLP : public UnaryModule {
 public:
  LlamaMLP(const ModelConfig& config, DType dtype, Device device);
  std::string type_name() const override { return "LlamaMLP"; }
  Tensor forward(const Tensor& x) override;
  // residual + forward(x), the sum taken in by down_proj (UnaryModule::forward_add).
  Tensor forward_add(const Tensor& x, const Tensor& residual) override;

  UnaryModule& gate_proj() const { return child_as<UnaryModule>("gate_proj"); }
  UnaryModule& up_proj() const { return child_as<UnaryModule>("up_proj"); }
  UnaryModule& down_proj() const { return child_as<UnaryModule>("down_proj"); }
};

// Causal grouped-query self-attention with rotary embeddings.
//
// Head counts are taken from the tensors, not from the config: the local number of query
// heads is q_proj's output width / head_dim and of kv heads k_proj's output width / head_dim.
// A column-parallel q_proj/k_proj/v_proj holding a slice of the heads (and a row-parallel
// o_proj taking that slice's width) therefore works unchanged after the AutoTP pass replaces
// them; only head_dim and the kv grouping (local q heads a multiple of local kv heads) must hold.
class LlamaAttention : public Module {
 public:
  LlamaAttention(const ModelConfig& config, DType dtype, Device device);
  std::string type_name() const override { return "LlamaAttention"; }
  std::string extra_repr() const override;

  // x [B, S, hidden], cos/sin [S, head_dim] -> [B, S, hidden]
  Tensor forward(const Tensor& x, const Tensor& cos, const Tensor& sin);
  // residual + forward(x, cos, sin), the sum taken in by o_proj (UnaryModule::forward_add).
  Tensor forward_add(const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& residual);

  UnaryModule& q_proj() const { return child_as<UnaryModule>("q_proj"); }
  UnaryModule& k_proj() const { return child_as<UnaryModule>("k_proj"); }
  UnaryModule& v_proj() const { return child_as<UnaryModule>("v_proj"); }
  UnaryModule& o_proj() const { return child_as<UnaryModule>("o_proj"); }
  int64_t head_dim() const { return head_dim_; }
  // The CUDA attention kernel variant this module runs (default: 64-row blocks); a variant
  // needs head_dim <= 64 (an error naming the module otherwise).
  void set_attention_kernels(const ops::AttentionKernels& variant);
  const ops::AttentionKernels& attention_kernels() const { return attention_kernels_; }

 private:
  // proj_out [B, S, H * head_dim] -> H, with an error naming `proj` when head_dim does not divide.
  int64_t local_heads(const Tensor& proj_out, const char* proj) const;
  // The attention's output before o_proj: x [B, S, hidden] -> [B, S, Hq * head_dim].
  Tensor attend(const Tensor& x, const Tensor& cos, const Tensor& sin);

  int64_t head_dim_;
  ops::AttentionKernels attention_kernels_;
};

// x + attn(input_layernorm(x)), then h + mlp(post_attention_layernorm(h)).
class LlamaDecoderLayer : public Module {
 public:
  LlamaDecoderLayer(const ModelConfig& config, DType dtype, Device device);
  std::string type_name() const override { return "LlamaDecoderLayer"; }

  // x [B, S, hidden], cos/sin [S, head_dim] -> [B, S, hidden]
  Tensor forward(const Tensor& x, const Tensor& cos, const Tensor& sin);

  LlamaAttention& self_attn() const { return child_as<LlamaAttention>("self_attn"); }
  UnaryModule& mlp() const { return child_as<UnaryModule>("mlp"); }
  UnaryModule& input_layernorm() const { return child_as<UnaryModule>("input_layernorm"); }
  UnaryModule& post_attention_layernorm() const {
    return child_as<UnaryModule>("post_attention_layernorm");
  }
};

// HF's LlamaModel: embed_tokens -> layers -> norm. Positions are 0..S-1 (no padding mask).
class LlamaModel : public Module {
 public:
  LlamaModel(const ModelConfig& config, DType dtype, Device device);
  std::string type_name() const override { return "LlamaModel"; }

  // input_ids [B, S] (i64/i32) -> hidden states [B, S, hidden] after the final norm
  Tensor forward(const Tensor& input_ids);

  UnaryModule& embed_tokens() const { return child_as<UnaryModule>("embed_tokens"); }
  ModuleList& layers() const { return child_as<ModuleList>("layers"); }
  UnaryModule& norm() const { return child_as<UnaryModule>("norm"); }
  // The rotary inverse frequencies [head_dim / 2] (default or llama3-scaled), in double.
  const std::vector<double>& inv_freq() const { return inv_freq_; }

 private:
  std::vector<double> inv_freq_;  // [head_dim / 2]
  // The rotary cos/sin tables of the last forward's (seq, dtype, device): computing them costs
  // milliseconds of host time at seq 2048 (and a host-to-device copy), during which a GPU
  // would sit idle at the start of every step.
  struct RotaryTables {
    int64_t seq = -1;
    DType dtype = DType::F32;
    Device device = Device::cpu();
    Tensor cos, sin;  // [seq, head_dim]
  };
  RotaryTables rotary_;
  std::optional<int64_t> sliding_window_;  // longer sequences are rejected (not implemented)
};

// HF's <Arch>ForCausalLM: "model" (LlamaModel) and "lm_head" (Linear hidden -> vocab, no bias).
// With tie_word_embeddings there is no lm_head module: logits use model.embed_tokens.weight,
// so the names match HF's saved checkpoints, which omit lm_head.weight for tied models.
class LlamaForCausalLM : public CausalLM {
 public:
  LlamaForCausalLM(const ModelConfig& config, DType dtype = DType::F32,
                   Device device = Device::cpu());
  std::string type_name() const override { return config().architecture(); }

  // input_ids [B, S] (i64/i32) -> logits [B, S, vocab_size]
  Tensor forward(const Tensor& input_ids) override;

  LlamaModel& model() const { return child_as<LlamaModel>("model"); }
};

// Sets the CUDA attention kernel variant of every LlamaAttention in `root`'s tree; returns how
// many modules took it.
int64_t set_attention_kernels(Module& root, const ops::AttentionKernels& variant);

}  // namespace autotp
