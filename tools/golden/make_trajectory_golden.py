#!/usr/bin/env python3
"""Writes the reference trajectory of tests/engine/test_trainer.cpp: 10 AdamW steps of a tiny
Hugging Face Llama in float64 with DeepSpeed's WarmupLR, gradient accumulation and clipping.

Into tests/data/trajectory/:
  config.json, model.safetensors   the tiny LlamaForCausalLM and its initial weights (drawn in
                                   float32, so the float64 run starts from exactly these values)
  tokens.bin                       the training tokens, flat little-endian uint16 (nanoGPT's .bin)
  train.yaml                       the autotp config of the run (the test points model.path and
                                   data.path at this directory with --set)
  golden.json                      per step: the loss (mean over the micro-batches), the
                                   pre-clip gradient norm, the learning rate, the input windows
                                   of every micro-batch; after the last step, every parameter's
                                   sum, sum of squares and eight of its elements

The batches are the ones autotp's DataLoader yields for this file (engine/data.h): sample
((step * accum + micro) * dp_size + dp_rank) * micro_batch + row is the window of seq_len + 1
tokens starting at u % (N - seq_len), where u is the 64-bit value (w0 << 32) | w1 of the
Philox-4x32-10 block for (key = data seed, counter = sample index), reimplemented below
(kernels/philox.h). The C++ test also checks that its loader yields exactly these windows.

The step follows autotp's Trainer (engine/trainer.h) and DeepSpeed's engine: lr for optimizer
step n (0-based) is WarmupLR's lr at last_batch_iteration n - 1 (warmup_min_lr at n = 0); each
micro-batch loss is the mean cross entropy of logits against the already-shifted labels,
divided by the accumulation count before backward; torch.nn.utils.clip_grad_norm_ (its return
value, the norm before clipping, is recorded); torch.optim.AdamW (foreach=False).

The model runs in float64 with the float64 RMSNorm / attention softmax / rope patches of
make_llama_golden.py (transformers computes those in float32 even in a float64 model).

Regenerate (needs torch and transformers; never run by CI), from the repository root:
  python3 tools/golden/make_trajectory_golden.py
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_llama_golden as hf64  # noqa: E402  (the float64 patches)

STEPS = 10
SEQ_LEN = 16
MICRO_BATCH = 2
ACCUMULATION = 2
SAMPLES_PER_TENSOR = 8  # final elements recorded per parameter
DATA_SEED = 77
INIT_SEED = 5
NUM_TOKENS = 320
VOCAB = 64
LR = dict(warmup_min_lr=1e-3, warmup_max_lr=2e-2, warmup_num_steps=4)  # warmup_type log
ADAMW = dict(betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
CLIP = 1.5
MODEL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
             rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.02)

MASK32 = 0xFFFFFFFF


def philox(seed, counter):
    """Philox-4x32-10 of kernels/philox.h: counter (lo, hi, 0, 0), key (seed lo, seed hi)."""
    c = [counter & MASK32, (counter >> 32) & MASK32, 0, 0]
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    for _ in range(10):
        p0 = 0xD2511F53 * c[0]
        p1 = 0xCD9E8D57 * c[2]
        hi0, lo0 = p0 >> 32, p0 & MASK32
        hi1, lo1 = p1 >> 32, p1 & MASK32
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
        k0 = (k0 + 0x9E3779B9) & MASK32
        k1 = (k1 + 0xBB67AE85) & MASK32
    return c


def window(tokens, seed, index, length):
    w = philox(seed, index)
    start = ((w[0] << 32) | w[1]) % (len(tokens) - length + 1)
    return tokens[start:start + length]


def batch(tokens, step, micro):
    rows = []
    for row in range(MICRO_BATCH):
        index = (step * ACCUMULATION + micro) * MICRO_BATCH + row  # dp_size 1, dp_rank 0
        rows.append(window(tokens, DATA_SEED, index, SEQ_LEN + 1))
    return rows


def warmup_lr(iteration):
    """DeepSpeed WarmupLR (log warmup) at last_batch_iteration `iteration`."""
    if iteration < 0:
        return LR["warmup_min_lr"]
    w = max(2, LR["warmup_num_steps"])
    gamma = math.log(iteration + 1) / math.log(w) if iteration < w else 1.0
    return LR["warmup_min_lr"] + (LR["warmup_max_lr"] - LR["warmup_min_lr"]) * gamma


def make_tokens():
    """A learnable stream: mostly next = (7 * prev + 3) mod V, sometimes a random token."""
    rng = np.random.default_rng(2024)
    out = [int(rng.integers(VOCAB))]
    for _ in range(NUM_TOKENS - 1):
        out.append(int(rng.integers(VOCAB)) if rng.random() < 0.25 else (7 * out[-1] + 3) % VOCAB)
    return out


def train_yaml():
    return f"""# The reference trajectory's config (tools/golden/make_trajectory_golden.py writes it).
# model.path and data.path are relative to the repository root; the test sets them with --set.
train_micro_batch_size_per_gpu: {MICRO_BATCH}
gradient_accumulation_steps: {ACCUMULATION}
gradient_clipping: {CLIP}
optimizer:
  type: AdamW
  params:
    lr: {LR["warmup_max_lr"]}
    betas: [{ADAMW["betas"][0]}, {ADAMW["betas"][1]}]
    eps: {ADAMW["eps"]}
    weight_decay: {ADAMW["weight_decay"]}
scheduler:
  type: WarmupLR
  params:
    warmup_min_lr: {LR["warmup_min_lr"]}
    warmup_max_lr: {LR["warmup_max_lr"]}
    warmup_num_steps: {LR["warmup_num_steps"]}
    warmup_type: log
model:
  path: tests/data/trajectory
data:
  type: tokens
  path: tests/data/trajectory/tokens.bin
  dtype: uint16
  seq_len: {SEQ_LEN}
  seed: {DATA_SEED}
train:
  steps: {STEPS}
  seed: {INIT_SEED}
  log_interval: 1
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                      "tests", "data", "trajectory"))
    args = parser.parse_args()
    out_dir = os.path.normpath(args.out)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")

    torch.manual_seed(INIT_SEED)
    config = LlamaConfig(**MODEL)
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config)  # HF initialization, float32
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(tmp, name), os.path.join(out_dir, name))
    model = model.double().train()
    head_dim = config.hidden_size // config.num_attention_heads
    hf64.patch_float64(model, hf64.inv_freq_f64(dict(config.rope_parameters), head_dim))

    tokens = make_tokens()
    np.array(tokens, dtype="<u2").tofile(os.path.join(out_dir, "tokens.bin"))
    with open(os.path.join(out_dir, "train.yaml"), "w") as f:
        f.write(train_yaml())

    params = [p for _, p in model.named_parameters()]
    optimizer = torch.optim.AdamW(params, lr=LR["warmup_min_lr"], foreach=False, **ADAMW)
    steps = []
    with hf64.Float64Attention():
        for step in range(STEPS):
            lr = warmup_lr(step - 1)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            losses, windows = [], []
            for micro in range(ACCUMULATION):
                rows = batch(tokens, step, micro)
                windows.append(rows)
                ids = torch.tensor(rows, dtype=torch.int64)
                logits = model(input_ids=ids[:, :-1]).logits  # [B, S, V] float64
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB),
                                                         ids[:, 1:].reshape(-1))
                losses.append(loss.item())
                (loss / ACCUMULATION).backward()
            norm = torch.nn.utils.clip_grad_norm_(params, CLIP).item()
            optimizer.step()
            steps.append(dict(step=step + 1, loss=sum(losses) / ACCUMULATION, grad_norm=norm,
                              lr=lr, clipped=norm > CLIP, windows=windows))
            print(f"step {step + 1}: loss {steps[-1]['loss']:.6f} grad norm {norm:.4f} "
                  f"lr {lr:.5f}{' (clipped)' if norm > CLIP else ''}")
    assert any(s["clipped"] for s in steps) and not all(s["clipped"] for s in steps), \
        "pick CLIP so that some steps clip and some do not"
    # Sums see every element; eight elements at fixed flat indices (spread over the tensor)
    # also see where each value went, which a permutation would leave the sums blind to.
    final = {}
    for n, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        picks = sorted({(2 * k + 1) * flat.numel() // (2 * SAMPLES_PER_TENSOR)
                        for k in range(SAMPLES_PER_TENSOR)})
        final[n] = dict(sum=flat.sum().item(), sq_sum=(flat ** 2).sum().item(),
                        samples=[[i, flat[i].item()] for i in picks])
    golden = dict(
        generator="tools/golden/make_trajectory_golden.py",
        torch=torch.__version__, transformers=transformers.__version__,
        steps=[{k: v for k, v in s.items() if k != "clipped"} for s in steps],
        final_params=final)
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"wrote {out_dir}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
