#!/usr/bin/env python3
"""Trains the model of an autotp YAML config with PyTorch + transformers on the same GPU, for a
side-by-side comparison with `autotp bench`: LlamaForCausalLM (SDPA attention), fused AdamW,
synthetic tokens, eager and torch.compile. Prints one JSON line per mode and a table.

Usage: tools/bench/torch_bench.py CONFIG.yaml [--steps N] [--warmup K] [--dtype f32|bf16]
       [--modes eager,compile] [--autotp-json FILE] [--out FILE]
Never a CI dependency: it runs where PyTorch and a GPU are.
"""
import argparse
import json
import time

import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM

# Dense bf16 tensor-core peaks (vendor datasheets), matching tools/flops.cpp.
PEAKS = [("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12)]


def peak_for(name):
    for key, flops in PEAKS:
        if key in name:
            return flops
    return None


def model_config(cfg):
    fields = dict(cfg["model"])
    fields.pop("path", None)
    model_type = fields.pop("model_type")
    return AutoConfig.for_model(model_type, **fields)


def flops_per_token(hf, params, seq_len):
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    # N without the input embedding table (a lookup, no matmul); a tied table is also the
    # lm_head's weight, so it counts once (nanoGPT's rule), as in tools/flops.cpp.
    tied = getattr(hf, "tie_word_embeddings", False)
    non_embedding = params if tied else params - hf.vocab_size * hf.hidden_size
    return 6 * non_embedding + 12 * hf.num_hidden_layers * hf.num_attention_heads * head_dim * seq_len


def run(cfg, mode, dtype, steps, warmup):
    hf = model_config(cfg)
    hf._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf, torch_dtype=dtype, attn_implementation="sdpa").cuda()
    model.train()
    params = sum(p.numel() for p in model.parameters())
    opt_cfg = cfg.get("optimizer", {}).get("params", {})
    opt = torch.optim.AdamW(model.parameters(), lr=float(opt_cfg.get("lr", 1e-4)),
                            betas=tuple(opt_cfg.get("betas", (0.9, 0.999))),
                            eps=float(opt_cfg.get("eps", 1e-8)),
                            weight_decay=float(opt_cfg.get("weight_decay", 0.0)), fused=True)
    step_fn = model if mode == "eager" else torch.compile(model)
    batch = int(cfg.get("train_micro_batch_size_per_gpu", 1))
    seq_len = int(cfg.get("data", {}).get("seq_len", 512))
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        ids = torch.randint(0, hf.vocab_size, (batch, seq_len + 1), device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = step_fn(input_ids=ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step_s = sum(times) / len(times)
    tokens_per_s = batch * seq_len / step_s
    fpt = flops_per_token(hf, params, seq_len)
    peak = peak_for(torch.cuda.get_device_name())
    return {
        "framework": f"pytorch {mode}", "device": torch.cuda.get_device_name(),
        "dtype": str(dtype).replace("torch.", ""), "params": params, "micro_batch": batch,
        "seq_len": seq_len, "step_ms": step_s * 1e3, "tokens_per_s": tokens_per_s,
        "achieved_tflops": fpt * tokens_per_s / 1e12,
        "mfu": (fpt * tokens_per_s / peak) if peak else None,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(), "last_loss": loss.item(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--autotp-json", help="the --json output of `autotp bench`, for the table")
    ap.add_argument("--out", help="write all rows as a JSON list")
    args = ap.parse_args()
    cfg = yaml.safe_load(open(args.config))
    dtype = torch.float32 if args.dtype == "f32" else torch.bfloat16
    torch.backends.cuda.matmul.allow_tf32 = False  # same f32 arithmetic as autotp's GEMMs
    rows = []
    if args.autotp_json:
        ours = json.load(open(args.autotp_json))
        ours["framework"] = "autotp"
        rows.append(ours)
    for mode in args.modes.split(","):
        row = run(cfg, mode, dtype, args.steps, args.warmup)
        print(json.dumps(row), flush=True)
        rows.append(row)
        torch.cuda.empty_cache()
    base = rows[0]["tokens_per_s"]
    print(f"{'framework':18} {'dtype':9} {'tokens/s':>11} {'MFU':>7} {'peak GiB':>9} {'vs first':>9}")
    for r in rows:
        mfu = f"{100 * r['mfu']:.2f}%" if r.get("mfu") is not None else "n/a"
        print(f"{r['framework']:18} {r['dtype']:9} {r['tokens_per_s']:11.0f} {mfu:>7} "
              f"{r['peak_memory_bytes'] / 2**30:9.2f} {r['tokens_per_s'] / base:9.2f}")
    if args.out:
        json.dump(rows, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
