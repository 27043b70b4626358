// Module layouts of 2-layer instances of the preset architectures, written from the
// Hugging Face parameter names and registration order of each (bloom, chatglm, mixtral,
// deepseek_v2, phi3), plus the built-in Llama family through module_shapes().
#pragma once

#include <string>
#include <vector>

#include "autotp/model_dims.h"
#include "models/model_config.h"
#include "models/module_shapes.h"

namespace autotp::testing {

// Appends modules in registration order.
class LayoutBuilder {
 public:
  LayoutBuilder& linear(const std::string& path, int64_t in, int64_t out, bool bias) {
    ModuleShape m{path, "Linear", {{"weight", {out, in}}}, {}};
    if (bias) m.parameters.emplace_back("bias", Shape{out});
    modules_.push_back(std::move(m));
    return *this;
  }
  LayoutBuilder& norm(const std::string& path, int64_t dim, bool bias = false,
                      const std::string& type = "RMSNorm") {
    ModuleShape m{path, type, {{"weight", {dim}}}, {}};
    if (bias) m.parameters.emplace_back("bias", Shape{dim});
    modules_.push_back(std::move(m));
    return *this;
  }
  LayoutBuilder& embedding(const std::string& path, int64_t vocab, int64_t hidden) {
    modules_.push_back({path, "Embedding", {{"weight", {vocab, hidden}}}, {}});
    return *this;
  }
  LayoutBuilder& module(ModuleShape m) {
    modules_.push_back(std::move(m));
    return *this;
  }
  std::vector<ModuleShape> build() { return std::move(modules_); }

 private:
  std::vector<ModuleShape> modules_;
};

// A small Llama-family config (2 layers, 8 heads over 4 KV heads of dim 4, hidden 32).
inline ModelConfig toy_config(const std::string& model_type, bool tied = false) {
  ModelConfig c;
  c.model_type = model_type;
  c.vocab_size = 37;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 4;
  c.tie_word_embeddings = tied;
  c.max_position_embeddings = 64;
  c.resolve_defaults();
  return c;
}

// BloomForCausalLM: fused head-interleaved query_key_value [3H, H], LayerNorms with bias,
// lm_head tied to the word embeddings. H 16, 4 heads.
inline std::vector<ModuleShape> bloom_layout() {
  const int64_t h = 16, v = 50;
  LayoutBuilder b;
  b.embedding("transformer.word_embeddings", v, h)
      .norm("transformer.word_embeddings_layernorm", h, true, "LayerNorm");
  for (int i = 0; i < 2; ++i) {
    const std::string l = "transformer.h." + std::to_string(i);
    b.norm(l + ".input_layernorm", h, true, "LayerNorm")
        .linear(l + ".self_attention.query_key_value", h, 3 * h, true)
        .linear(l + ".self_attention.dense", h, h, true)
        .norm(l + ".post_attention_layernorm", h, true, "LayerNorm")
        .linear(l + ".mlp.dense_h_to_4h", h, 4 * h, true)
        .linear(l + ".mlp.dense_4h_to_h", 4 * h, h, true);
  }
  b.norm("transformer.ln_f", h, true, "LayerNorm");
  b.module({"lm_head", "Linear", {{"weight", {v, h}}}, "transformer.word_embeddings.weight"});
  return b.build();
}
inline ModelDims bloom_dims() {
  return {"bloom", 16, 4, 4, 4, true};
}

// ChatGLM3 (THUDM/chatglm3-6b layout): MQA with multi_query_group_num 2, fused
// query_key_value [H + 2*kv*d, H] with bias, packed dense_h_to_4h [2*ffn, H], output_layer.
// H 32, 8 heads of dim 4, 2 KV groups, ffn 24.
inline std::vector<ModuleShape> chatglm_layout() {
  const int64_t h = 32, kv = 2, d = 4, ffn = 24, v = 40;
  LayoutBuilder b;
  b.embedding("transformer.embedding.word_embeddings", v, h);
  for (int i = 0; i < 2; ++i) {
    const std::string l = "transformer.encoder.layers." + std::to_string(i);
    b.norm(l + ".input_layernorm", h)
        .linear(l + ".self_attention.query_key_value", h, h + 2 * kv * d, true)
        .linear(l + ".self_attention.dense", h, h, false)
        .norm(l + ".post_attention_layernorm", h)
        .linear(l + ".mlp.dense_h_to_4h", h, 2 * ffn, false)
        .linear(l + ".mlp.dense_4h_to_h", ffn, h, false);
  }
  b.norm("transformer.encoder.final_layernorm", h).linear("transformer.output_layer", h, v, false);
  return b.build();
}
inline ModelDims chatglm_dims() {
  return {"chatglm", 32, 8, 2, 4, false};
}

// MixtralForCausalLM: 4 experts (w1, w2, w3) and a router gate per block. H 16, 4 heads over
// 2 KV heads of dim 4, expert width 24.
inline std::vector<ModuleShape> mixtral_layout() {
  const int64_t h = 16, q = 16, kv = 8, inner = 24, v = 30, experts = 4;
  LayoutBuilder b;
  b.embedding("model.embed_tokens", v, h);
  for (int i = 0; i < 2; ++i) {
    const std::string l = "model.layers." + std::to_string(i);
    b.linear(l + ".self_attn.q_proj", h, q, false)
        .linear(l + ".self_attn.k_proj", h, kv, false)
        .linear(l + ".self_attn.v_proj", h, kv, false)
        .linear(l + ".self_attn.o_proj", q, h, false)
        .linear(l + ".block_sparse_moe.gate", h, experts, false);
    for (int e = 0; e < experts; ++e) {
      const std::string x = l + ".block_sparse_moe.experts." + std::to_string(e);
      b.linear(x + ".w1", h, inner, false)
          .linear(x + ".w2", inner, h, false)
          .linear(x + ".w3", h, inner, false);
    }
    b.norm(l + ".input_layernorm", h).norm(l + ".post_attention_layernorm", h);
  }
  b.norm("model.norm", h).linear("lm_head", h, v, false);
  return b.build();
}
inline ModelDims mixtral_dims() {
  return {"mixtral", 16, 4, 2, 4, false};
}

// DeepseekV2ForCausalLM with MLA (q_lora_rank 8, kv_lora_rank 6, qk_nope 4, qk_rope 2,
// v_head 4, 4 heads), layer 0 dense (first_k_dense_replace 1), layer 1 MoE with 4 routed
// experts, a MoEGate router (not a Linear) and shared experts. H 16.
inline std::vector<ModuleShape> deepseek_v2_layout() {
  const int64_t h = 16, heads = 4, q_lora = 8, kv_lora = 6, nope = 4, rope = 2, vd = 4;
  const int64_t inner = 24, moe_inner = 8, v = 30, experts = 4;
  LayoutBuilder b;
  b.embedding("model.embed_tokens", v, h);
  for (int i = 0; i < 2; ++i) {
    const std::string l = "model.layers." + std::to_string(i);
    const std::string a = l + ".self_attn";
    b.linear(a + ".q_a_proj", h, q_lora, false)
        .norm(a + ".q_a_layernorm", q_lora)
        .linear(a + ".q_b_proj", q_lora, heads * (nope + rope), false)
        .linear(a + ".kv_a_proj_with_mqa", h, kv_lora + rope, false)
        .norm(a + ".kv_a_layernorm", kv_lora)
        .linear(a + ".kv_b_proj", kv_lora, heads * (nope + vd), false)
        .linear(a + ".o_proj", heads * vd, h, false);
    if (i == 0) {
      b.linear(l + ".mlp.gate_proj", h, inner, false)
          .linear(l + ".mlp.up_proj", h, inner, false)
          .linear(l + ".mlp.down_proj", inner, h, false);
    } else {
      for (int e = 0; e < experts; ++e) {
        const std::string x = l + ".mlp.experts." + std::to_string(e);
        b.linear(x + ".gate_proj", h, moe_inner, false)
            .linear(x + ".up_proj", h, moe_inner, false)
            .linear(x + ".down_proj", moe_inner, h, false);
      }
      b.module({l + ".mlp.gate", "MoEGate", {{"weight", {experts, h}}}, {}});
      b.linear(l + ".mlp.shared_experts.gate_proj", h, 2 * moe_inner, false)
          .linear(l + ".mlp.shared_experts.up_proj", h, 2 * moe_inner, false)
          .linear(l + ".mlp.shared_experts.down_proj", 2 * moe_inner, h, false);
    }
    b.norm(l + ".input_layernorm", h).norm(l + ".post_attention_layernorm", h);
  }
  b.norm("model.norm", h).linear("lm_head", h, v, false);
  return b.build();
}
inline ModelDims deepseek_v2_dims() {
  return {"deepseek_v2", 16, 4, 4, 6, false};
}

// Phi3ForCausalLM (Phi-3-medium-like GQA): o_proj registered before the fused qkv_proj
// [q + 2*kv, H], packed gate_up_proj [2I, H]. H 32, 8 heads over 2 KV heads of dim 4, I 24.
inline std::vector<ModuleShape> phi3_layout() {
  const int64_t h = 32, q = 32, kv = 8, inner = 24, v = 30;
  LayoutBuilder b;
  b.embedding("model.embed_tokens", v, h);
  for (int i = 0; i < 2; ++i) {
    const std::string l = "model.layers." + std::to_string(i);
    b.linear(l + ".self_attn.o_proj", q, h, false)
        .linear(l + ".self_attn.qkv_proj", h, q + 2 * kv, false)
        .linear(l + ".mlp.gate_up_proj", h, 2 * inner, false)
        .linear(l + ".mlp.down_proj", inner, h, false)
        .norm(l + ".input_layernorm", h)
        .norm(l + ".post_attention_layernorm", h);
  }
  b.norm("model.norm", h).linear("lm_head", h, v, false);
  return b.build();
}
inline ModelDims phi3_dims() {
  return {"phi3", 32, 8, 2, 4, false};
}

}  // namespace autotp::testing
