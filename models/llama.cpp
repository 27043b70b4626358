// Llama-family modules: registration under HF names (per-type bias/q_norm layout) and the
// forward passes, every child reached through the registry so that AutoTP can replace it.
#include "models/llama.h"

#include <cmath>

#include "core/ops.h"
#include "layers/embedding.h"
#include "layers/linear.h"
#include "layers/rms_norm.h"
#include "models/rope.h"

namespace autotp {

LlamaLayout llama_layout(const ModelConfig& config) {
  const std::string& type = config.model_type;
  if (type == "llama") {
    return {config.attention_bias, config.attention_bias, config.mlp_bias, false};
  }
  if (type == "mistral") return {false, false, false, false};
  if (type == "qwen2") return {true, false, false, false};
  if (type == "qwen3") return {config.attention_bias, config.attention_bias, false, true};
  std::string supported;
  for (const std::string& t : supported_model_types())
    supported += (supported.empty() ? "" : ", ") + t;
  AUTOTP_FAIL("llama_layout: model_type '{}' is not in the Llama family (supported: {})", type,
              supported);
}

// ---- LlamaMLP ------------------------------------------------------------------------------

LlamaMLP::LlamaMLP(const ModelConfig& config, DType dtype, Device device) {
  const bool bias = llama_layout(config).mlp_bias;
  const int64_t hidden = config.hidden_size, inner = config.intermediate_size;
  register_module("gate_proj", std::make_shared<Linear>(hidden, inner, bias, dtype, device));
  register_module("up_proj", std::make_shared<Linear>(hidden, inner, bias, dtype, device));
  register_module("down_proj", std::make_shared<Linear>(inner, hidden, bias, dtype, device));
}

Tensor LlamaMLP::forward(const Tensor& x) {           // x [..., hidden]
  const Tensor gate = gate_proj().forward(x);         // [..., inner]
  const Tensor up = up_proj().forward(x);             // [..., inner]
  return down_proj().forward(ops::swiglu(gate, up));  // silu(gate) * up: [..., hidden]
}

Tensor LlamaMLP::forward_add(const Tensor& x, const Tensor& residual) {
  const Tensor gate = gate_proj().forward(x);
  const Tensor up = up_proj().forward(x);
  return down_proj().forward_add(ops::swiglu(gate, up), residual);  // [..., hidden]
}

// ---- LlamaAttention ------------------------------------------------------------------------

LlamaAttention::LlamaAttention(const ModelConfig& config, DType dtype, Device device)
    : head_dim_(config.head_dim) {
  const LlamaLayout layout = llama_layout(config);
  const int64_t hidden = config.hidden_size;
  const int64_t q_width = config.num_attention_heads * head_dim_;
  const int64_t kv_width = config.num_key_value_heads * head_dim_;
  register_module("q_proj",
                  std::make_shared<Linear>(hidden, q_width, layout.qkv_bias, dtype, device));
  register_module("k_proj",
                  std::make_shared<Linear>(hidden, kv_width, layout.qkv_bias, dtype, device));
  register_module("v_proj",
                  std::make_shared<Linear>(hidden, kv_width, layout.qkv_bias, dtype, device));
  register_module("o_proj",
                  std::make_shared<Linear>(q_width, hidden, layout.o_bias, dtype, device));
  if (layout.qk_norm) {
    register_module("q_norm",
                    std::make_shared<RMSNorm>(head_dim_, config.rms_norm_eps, dtype, device));
    register_module("k_norm",
                    std::make_shared<RMSNorm>(head_dim_, config.rms_norm_eps, dtype, device));
  }
}

void LlamaAttention::set_attention_kernels(const ops::AttentionKernels& variant) {
  AUTOTP_CHECK(variant.row_tiles_per_warp == 1 || variant.row_tiles_per_warp == 2,
               "{}: attention row tiles per warp must be 1 or 2, got {}", describe(),
               variant.row_tiles_per_warp);
  AUTOTP_CHECK(!variant.needs_small_head_dim() || head_dim_ <= 64,
               "{}: the attention kernel variants (128-row blocks, dk/dv K,V in registers) need "
               "head_dim <= 64; this model's head_dim is {}",
               describe(), head_dim_);
  attention_kernels_ = variant;
}

std::string LlamaAttention::extra_repr() const {
  return fmt::format("head_dim={}", head_dim_);
}

int64_t LlamaAttention::local_heads(const Tensor& proj_out, const char* proj) const {
  const int64_t width = proj_out.size(-1);
  AUTOTP_CHECK(width > 0 && width % head_dim_ == 0,
               "{}: {} produced width {}, which is not a whole number of heads of head_dim {}",
               describe(), proj, width, head_dim_);
  return width / head_dim_;
}

Tensor LlamaAttention::forward(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  return o_proj().forward(attend(x, cos, sin));  // [B, S, hidden]
}

Tensor LlamaAttention::forward_add(const Tensor& x, const Tensor& cos, const Tensor& sin,
                                   const Tensor& residual) {
  return o_proj().forward_add(attend(x, cos, sin), residual);  // [B, S, hidden]
}

Tensor LlamaAttention::attend(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  AUTOTP_CHECK(x.dim() == 3, "{}: input must be [B, S, hidden], got shape {}", describe(),
               shape_str(x.shape()));
  const int64_t batch = x.size(0), seq = x.size(1), d = head_dim_;
  Tensor q = q_proj().forward(x);  // [B, S, Hq * D]
  Tensor k = k_proj().forward(x);  // [B, S, Hkv * D]
  Tensor v = v_proj().forward(x);  // [B, S, Hkv * D]
  const int64_t hq = local_heads(q, "q_proj"), hkv = local_heads(k, "k_proj");
  AUTOTP_CHECK(v.size(-1) == k.size(-1), "{}: v_proj width {} differs from k_proj width {}",
               describe(), v.size(-1), k.size(-1));
  AUTOTP_CHECK(hq % hkv == 0,
               "{}: {} query heads (from q_proj) are not a multiple of {} kv heads (from k_proj)",
               describe(), hq, hkv);
  q = q.reshape({batch, seq, hq, d});   // [B, S, Hq, D]
  k = k.reshape({batch, seq, hkv, d});  // [B, S, Hkv, D]
  v = v.reshape({batch, seq, hkv, d});  // [B, S, Hkv, D]
  if (has_child("q_norm")) {            // qwen3: RMSNorm over each head's D values
    q = child_as<UnaryModule>("q_norm").forward(q);
    k = child_as<UnaryModule>("k_norm").forward(k);
  }
  // Per-head views of the projections' [B, S, H, D] outputs: rotary and the CUDA tensor-core
  // attention work in that memory order (and write their outputs and gradients in it), so
  // neither the transposes here nor the merge of the heads below copy anything there.
  q = ops::apply_rotary(q.transpose(1, 2), cos, sin);  // [B, Hq, S, D]
  k = ops::apply_rotary(k.transpose(1, 2), cos, sin);  // [B, Hkv, S, D]
  v = v.transpose(1, 2);                               // [B, Hkv, S, D]
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const Tensor attn =
      ops::scaled_dot_product_attention(q, k, v, /*causal=*/true, scale, attention_kernels_);
  return attn.transpose(1, 2).reshape({batch, seq, hq * d});  // [B, S, Hq * D]
}

// ---- LlamaDecoderLayer -----------------------------------------------------------------------

LlamaDecoderLayer::LlamaDecoderLayer(const ModelConfig& config, DType dtype, Device device) {
  register_module("self_attn", std::make_shared<LlamaAttention>(config, dtype, device));
  register_module("mlp", std::make_shared<LlamaMLP>(config, dtype, device));
  register_module("input_layernorm", std::make_shared<RMSNorm>(config.hidden_size,
                                                               config.rms_norm_eps, dtype, device));
  register_module(
      "post_attention_layernorm",
      std::make_shared<RMSNorm>(config.hidden_size, config.rms_norm_eps, dtype, device));
}

Tensor LlamaDecoderLayer::forward(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  // Each residual sum is taken in by the branch's output projection (forward_add).
  const Tensor h = self_attn().forward_add(input_layernorm().forward(x), cos, sin, x);
  return mlp().forward_add(post_attention_layernorm().forward(h), h);  // [B, S, hidden]
}

// ---- LlamaModel ---------------------------------------------------------------------------

LlamaModel::LlamaModel(const ModelConfig& config, DType dtype, Device device)
    : inv_freq_(rope_inv_freq(config)), sliding_window_(config.sliding_window) {
  register_module("embed_tokens", std::make_shared<Embedding>(config.vocab_size, config.hidden_size,
                                                              dtype, device));
  auto layers = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers->push_back(std::make_shared<LlamaDecoderLayer>(config, dtype, device));
  }
  register_module(
      "norm", std::make_shared<RMSNorm>(config.hidden_size, config.rms_norm_eps, dtype, device));
}

Tensor LlamaModel::forward(const Tensor& input_ids) {
  AUTOTP_CHECK(input_ids.defined() && input_ids.dim() == 2,
               "{}: input_ids must be [batch, seq], got shape {}", describe(),
               input_ids.defined() ? shape_str(input_ids.shape()) : std::string("(undefined)"));
  AUTOTP_CHECK(input_ids.dtype() == DType::I64 || input_ids.dtype() == DType::I32,
               "{}: input_ids must be i64 or i32, got {}", describe(),
               dtype_name(input_ids.dtype()));
  const int64_t seq = input_ids.size(1);
  AUTOTP_CHECK(!sliding_window_ || seq <= *sliding_window_,
               "{}: sequence length {} exceeds the sliding window {}; sliding-window attention is "
               "not implemented (sequences up to the window are exact)",
               describe(), seq, *sliding_window_);
  Tensor h = embed_tokens().forward(input_ids);  // [B, S, hidden]
  if (rotary_.seq != seq || rotary_.dtype != h.dtype() || rotary_.device != h.device()) {
    auto [cos, sin] = ops::rotary_tables_from_inv_freq(seq, inv_freq_, h.dtype(), h.device());
    rotary_ = RotaryTables{seq, h.dtype(), h.device(), std::move(cos), std::move(sin)};
  }
  ModuleList& list = layers();
  for (int64_t i = 0; i < list.size(); ++i)
    h = list.at<LlamaDecoderLayer>(i).forward(h, rotary_.cos, rotary_.sin);
  return norm().forward(h);  // [B, S, hidden]
}

// ---- LlamaForCausalLM ------------------------------------------------------------------------

namespace {
ModelConfig checked(ModelConfig config) {
  config.resolve_defaults();
  config.validate();
  return config;
}
}  // namespace

LlamaForCausalLM::LlamaForCausalLM(const ModelConfig& config_in, DType dtype, Device device)
    : CausalLM(checked(config_in)) {
  const ModelConfig& c = config();
  register_module("model", std::make_shared<LlamaModel>(c, dtype, device));
  if (!c.tie_word_embeddings) {
    register_module("lm_head", std::make_shared<Linear>(c.hidden_size, c.vocab_size,
                                                        /*bias=*/false, dtype, device));
  }
}

Tensor LlamaForCausalLM::forward(const Tensor& input_ids) {
  const Tensor h = model().forward(input_ids);  // [B, S, hidden]
  if (has_child("lm_head")) return child_as<UnaryModule>("lm_head").forward(h);
  // Tied: logits = h @ embed_tokens.weight^T, read from the registry on every call.
  const Tensor weight = model().child_as<Embedding>("embed_tokens").weight();  // [V, hidden]
  return ops::linear(h, weight);                                               // [B, S, V]
}

int64_t set_attention_kernels(Module& root, const ops::AttentionKernels& variant) {
  int64_t count = 0;
  for (const auto& [name, module] : root.named_modules()) {
    if (auto* attention = dynamic_cast<LlamaAttention*>(module.get())) {
      attention->set_attention_kernels(variant);
      ++count;
    }
  }
  return count;
}

}  // namespace autotp
