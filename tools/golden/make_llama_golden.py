#!/usr/bin/env python3
# Writes the Hugging Face reference data of tests/models/test_llama_golden.cpp: tiny random
# Llama/Qwen2/Qwen3/Mistral models run in float64 with PyTorch + transformers on the CPU.
"""Make the golden files for the Llama-family model tests.

For every model in MODELS this builds the transformers model from a tiny config, gives every
parameter a random value (drawn in float32, so the float32 copy stored here is exact, then
converted to float64), runs input_ids [2, 9] through it in float64 and writes, into
tests/data/golden/<name>/:

  config.json   the config exactly as model.save_pretrained() writes it
  config.txt    the same config flattened to "key<TAB>value" lines ("obj.key" for nested
                objects; lists as JSON text; null as "null"), for the C++ test's reader
  tensors.txt   one line per tensor: "<name> <dtype> <ndim> <dim0> <dim1> ..."
  tensors.bin   the tensors' raw little-endian data, concatenated in tensors.txt order

Tensors: param/<hf name> (f32, the exact weights), grad/<hf name> (f64, d loss / d param),
input_ids (i64), logits (f64 [2, 9, V]), loss (f64 scalar; labels = input_ids),
labels_masked (i64, some -100) and loss_masked (f64), inv_freq (f64, the float64 rope
inverse frequencies used) and inv_freq_hf (f32, transformers' own float32 inv_freq).

Float64 fidelity: transformers' Llama-family code computes RMSNorm, the eager softmax, the rope
angles and the loss in float32 even in a float64 model. This script runs those four in float64
with the same formulas (patches below), and checks that the patched float64 model agrees with
the unpatched one to float32 precision and that its inverse frequencies agree with HF's.

Regenerate (needs torch and transformers; never run by CI):
  python3 tools/golden/make_llama_golden.py [--out tests/data/golden]
"""

import argparse
import json
import math
import os
import shutil
import tempfile

import torch
import transformers
from safetensors import safe_open
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)
from transformers.models.llama import modeling_llama
from transformers.models.mistral import modeling_mistral
from transformers.models.qwen2 import modeling_qwen2
from transformers.models.qwen3 import modeling_qwen3

BATCH, SEQ = 2, 9
COMMON = dict(hidden_size=32, intermediate_size=44, num_attention_heads=4, vocab_size=61,
              rms_norm_eps=1e-5, max_position_embeddings=64)

# name -> (config class, model class, config kwargs, seed)
MODELS = {
    # GQA (4 query heads share 2 kv heads), no biases, untied lm_head.
    "llama_gqa": (LlamaConfig, LlamaForCausalLM,
                  dict(COMMON, num_hidden_layers=2, num_key_value_heads=2), 1),
    # Tied embeddings (no lm_head.weight), llama's attention_bias (q/k/v/o) and mlp_bias,
    # num_key_value_heads absent (= num_attention_heads).
    "llama_tied_bias": (LlamaConfig, LlamaForCausalLM,
                        dict(COMMON, num_hidden_layers=1, tie_word_embeddings=True,
                             attention_bias=True, mlp_bias=True), 2),
    # Llama 3.1 rope scaling with every band in use (head_dim 16: wavelengths from 6 to
    # ~80000 against 512/4 and 512/1), multi-query attention (1 kv head).
    "llama3_rope": (LlamaConfig, LlamaForCausalLM,
                    dict(COMMON, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=4096,
                         rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                                              low_freq_factor=1.0, high_freq_factor=4.0,
                                              original_max_position_embeddings=512)), 3),
    # Qwen2: bias on q/k/v only.
    "qwen2_bias": (Qwen2Config, Qwen2ForCausalLM,
                   dict(COMMON, num_hidden_layers=2, num_key_value_heads=2), 4),
    # Qwen3: per-head q_norm/k_norm, head_dim 12 (not hidden / heads = 8).
    "qwen3_qknorm": (Qwen3Config, Qwen3ForCausalLM,
                     dict(COMMON, num_hidden_layers=2, num_key_value_heads=2, head_dim=12), 5),
    # Mistral with a sliding window longer than the sequence (so attention is fully causal).
    "mistral_window": (MistralConfig, MistralForCausalLM,
                       dict(COMMON, num_hidden_layers=1, num_key_value_heads=2, sliding_window=16),
                       6),
}

MASKED = [(0, 3), (0, 8), (1, 1), (1, 2)]  # label positions set to -100 in labels_masked


# ---- float64 versions of HF's float32 internals -------------------------------------------

def rms_norm_forward(self, hidden_states):
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0,
                            **kwargs):
    key_states = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value_states = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1)  # in the input dtype
    attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
    return attn_output, attn_weights


def inv_freq_f64(rope, head_dim):
    """HF's default / llama3 inverse frequencies (modeling_rope_utils) in float64."""
    base = rope["rope_theta"]
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    if rope["rope_type"] == "default":
        return inv
    assert rope["rope_type"] == "llama3"
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv
    inv_llama = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_llama / factor + smooth * inv_llama
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, inv_llama)


def make_rope_forward(inv64):
    def forward(self, x, position_ids):
        freqs = position_ids[..., None].to(torch.float64) * inv64
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)
    return forward


def patch_float64(model, inv64):
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.forward = rms_norm_forward.__get__(module)
    model.model.rotary_emb.forward = make_rope_forward(inv64).__get__(model.model.rotary_emb)


PATCHED_MODULES = (modeling_llama, modeling_mistral, modeling_qwen2, modeling_qwen3)


class Float64Attention:
    """Swaps each modeling module's eager_attention_forward for the float64 one."""

    def __enter__(self):
        self.saved = [m.eager_attention_forward for m in PATCHED_MODULES]
        for m in PATCHED_MODULES:
            m.eager_attention_forward = eager_attention_forward

    def __exit__(self, *args):
        for m, f in zip(PATCHED_MODULES, self.saved):
            m.eager_attention_forward = f


# ---- losses and files ------------------------------------------------------------------------

def causal_lm_loss(logits, labels):
    """transformers' ForCausalLMLoss (pad labels with -100, shift left, mean CE) in float64."""
    shift = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             shift.reshape(-1), ignore_index=-100)


def randomize(model, gen):
    """Every parameter random in float32 (norm weights near 1, small biases)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.2 * noise)
            elif "embed_tokens" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / math.sqrt(p.shape[1]))


def flatten_config(path):
    with open(path) as f:
        config = json.load(f)
    lines = []

    def text(v):
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, dict)):
            return json.dumps(v)
        return repr(v) if isinstance(v, float) else str(v)

    for key, value in sorted(config.items()):
        if isinstance(value, dict):
            for k, v in sorted(value.items()):
                lines.append(f"{key}.{k}\t{text(v)}")
        else:
            lines.append(f"{key}\t{text(value)}")
    return "\n".join(lines) + "\n"


def write_tensors(out_dir, tensors):
    dtype_names = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64"}
    with open(os.path.join(out_dir, "tensors.txt"), "w") as manifest, \
            open(os.path.join(out_dir, "tensors.bin"), "wb") as data:
        for name, t in tensors:
            t = t.detach().contiguous().cpu()
            manifest.write(" ".join([name, dtype_names[t.dtype], str(t.dim())] +
                                    [str(d) for d in t.shape]) + "\n")
            data.write(t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes())


def make_one(name, config_cls, model_cls, kwargs, seed, out_root):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config = config_cls(**kwargs)
    config._attn_implementation = "eager"
    model = model_cls(config).eval()
    randomize(model, gen)
    model = model.double()
    vocab = config.vocab_size
    input_ids = torch.randint(0, vocab, (BATCH, SEQ), generator=gen)
    labels_masked = input_ids.clone()
    for b, s in MASKED:
        labels_masked[b, s] = -100

    # Reference from the unpatched model (float32 internals) for the sanity checks below.
    with torch.no_grad():
        out_hf = model(input_ids=input_ids, labels=input_ids)
    hf_inv_freq = model.model.rotary_emb.inv_freq.detach().to(torch.float32).clone()

    rope = dict(config.rope_parameters)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    inv64 = inv_freq_f64(rope, head_dim)
    torch.testing.assert_close(inv64.to(torch.float32), hf_inv_freq, rtol=2e-6, atol=0)
    patch_float64(model, inv64)
    with Float64Attention():
        logits = model(input_ids=input_ids).logits
        loss = causal_lm_loss(logits, input_ids)
        loss.backward()
        with torch.no_grad():
            loss_masked = causal_lm_loss(model(input_ids=input_ids).logits, labels_masked)
    # The float64 patches change precision only: agreement to float32 accuracy (and a nonzero
    # difference, showing that the patches took effect).
    torch.testing.assert_close(logits.detach(), out_hf.logits.detach(), rtol=1e-5, atol=1e-5)
    patch_effect = (logits.detach() - out_hf.logits).abs().max().item()
    assert patch_effect > 0.0, "the float64 patches changed nothing"

    torch.testing.assert_close(loss.detach(), out_hf.loss.detach().to(torch.float64),
                               rtol=1e-5, atol=1e-6)

    out_dir = os.path.join(out_root, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        with safe_open(os.path.join(tmp, "model.safetensors"), "pt") as f:
            saved_names = set(f.keys())
        shutil.copy(os.path.join(tmp, "config.json"), os.path.join(out_dir, "config.json"))
    params = list(model.named_parameters())  # tied weights appear once, as in the checkpoint
    assert saved_names == {n for n, _ in params}, (saved_names ^ {n for n, _ in params})
    with open(os.path.join(out_dir, "config.txt"), "w") as f:
        f.write(flatten_config(os.path.join(out_dir, "config.json")))

    tensors = [("input_ids", input_ids), ("logits", logits), ("loss", loss),
               ("labels_masked", labels_masked), ("loss_masked", loss_masked),
               ("inv_freq", inv64), ("inv_freq_hf", hf_inv_freq)]
    tensors += [(f"param/{n}", p.to(torch.float32)) for n, p in params]
    tensors += [(f"grad/{n}", p.grad) for n, p in params]
    for n, p in params:
        assert torch.equal(p.to(torch.float32).to(torch.float64), p), f"{n} is not f32-exact"
    write_tensors(out_dir, tensors)
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"{name}: {len(params)} parameters, {sum(p.numel() for _, p in params)} values, "
          f"loss {loss.item():.6f}, |f64 - HF f32-internal logits| {patch_effect:.1e}, "
          f"{size / 1024:.0f} KiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                      "tests", "data", "golden"))
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    for name, (config_cls, model_cls, kwargs, seed) in MODELS.items():
        make_one(name, config_cls, model_cls, kwargs, seed, os.path.normpath(args.out))


if __name__ == "__main__":
    main()
