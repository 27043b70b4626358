#!/usr/bin/env python3
# Writes tests/data/hf_tiny_llama/ (a tiny float32 Llama saved by transformers' save_pretrained,
# plus its logits) and checks by hand that transformers loads a directory autotp exported.
"""Reference data for tests/engine/test_checkpoint.cpp (load_hf_model / export_hf_model).

Default mode: builds a tiny random LlamaForCausalLM (hidden 32, 2 layers, 4 query heads on 2 kv
heads, vocab 67, float32), saves it with model.save_pretrained() into tests/data/hf_tiny_llama/
(config.json, generation_config.json, model.safetensors: exactly what transformers writes) and
adds reference_logits.txt: the float32 logits transformers computes (eager attention) for fixed
input_ids [2, 7].

reference_logits.txt format (also what --check-export reads from autotp's side):
  lines starting with '#' are comments
  input_ids <ndim> <dims...>     then the ids, whitespace separated
  logits <ndim> <dims...>        then the values ('%.9g', float32 round-trips exactly)

--check-export DIR: DIR is a model directory written by autotp's export_hf_model, with a
reference_logits.txt that autotp wrote (its own logits for its own input_ids). Loads DIR with
AutoModelForCausalLM.from_pretrained (as is, no flags; it reports the dtype it loaded), runs
the ids in float32 and prints the largest difference from autotp's float32 logits relative to
max|logits|; fails above --rtol (default 1e-5).

Never a CI dependency (needs torch + transformers):
  python3 tools/golden/make_hf_checkpoint_golden.py [--out tests/data/hf_tiny_llama]
  python3 tools/golden/make_hf_checkpoint_golden.py --check-export /tmp/autotp_export
"""

import argparse
import os
import shutil
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

SEED = 20240601
INPUT_SHAPE = (2, 7)


def write_reference(path, input_ids, logits, comment):
    with open(path, "w") as f:
        for line in comment:
            f.write(f"# {line}\n")
        f.write(f"input_ids {input_ids.dim()} {' '.join(str(d) for d in input_ids.shape)}\n")
        f.write(" ".join(str(int(v)) for v in input_ids.flatten().tolist()) + "\n")
        f.write(f"logits {logits.dim()} {' '.join(str(d) for d in logits.shape)}\n")
        rows = logits.reshape(-1, logits.shape[-1]).tolist()
        for row in rows:
            f.write(" ".join("%.9g" % v for v in row) + "\n")


def read_reference(path):
    tokens = []
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                tokens.extend(line.split())
    out, pos = {}, 0
    while pos < len(tokens):
        name, ndim = tokens[pos], int(tokens[pos + 1])
        shape = [int(t) for t in tokens[pos + 2:pos + 2 + ndim]]
        pos += 2 + ndim
        numel = 1
        for d in shape:
            numel *= d
        values = tokens[pos:pos + numel]
        pos += numel
        if name == "input_ids":
            out[name] = torch.tensor([int(v) for v in values], dtype=torch.int64).reshape(shape)
        else:
            out[name] = torch.tensor([float(v) for v in values], dtype=torch.float64).reshape(shape)
    return out


def make_golden(out_dir):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    config = LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=67,
                         rms_norm_eps=1e-5, max_position_embeddings=128,
                         rope_parameters=dict(rope_type="default", rope_theta=5000.0),
                         tie_word_embeddings=False)
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    # Weights big enough that the logits are far from uniform (HF's 0.02 init would make them
    # nearly constant): matrices ~ N(0, 0.15^2), embeddings ~ N(0, 1), norms ~ 1 + N(0, 0.1^2).
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif "embed_tokens" in name:
                p.copy_(noise)
            else:
                p.copy_(0.15 * noise)
    input_ids = torch.randint(0, config.vocab_size, INPUT_SHAPE, generator=gen)
    with torch.no_grad():
        logits = model(input_ids).logits  # [2, 7, 67] f32
    assert logits.dtype == torch.float32

    tmp = tempfile.mkdtemp(prefix="hf_tiny_llama.")
    try:
        model.save_pretrained(tmp)
        # Reloading must give the same logits (the saved directory is self-consistent).
        again = AutoModelForCausalLM.from_pretrained(tmp, attn_implementation="eager").eval()
        with torch.no_grad():
            assert torch.equal(again(input_ids).logits, logits)
        write_reference(os.path.join(tmp, "reference_logits.txt"), input_ids, logits, [
            "float32 logits of this directory's model from transformers "
            f"{transformers.__version__} (torch {torch.__version__}, eager attention),",
            "written by tools/golden/make_hf_checkpoint_golden.py",
        ])
        readme = os.path.join(out_dir, "README.md")  # hand-written; kept across regenerations
        readme_text = open(readme).read() if os.path.exists(readme) else None
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.makedirs(out_dir)
        for f in sorted(os.listdir(tmp)):  # plain copies: mkdtemp's 0700 mode stays behind
            shutil.copyfile(os.path.join(tmp, f), os.path.join(out_dir, f))
        if readme_text is not None:
            with open(readme, "w") as f:
                f.write(readme_text)
    finally:
        shutil.rmtree(tmp)
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"wrote {out_dir} ({', '.join(sorted(os.listdir(out_dir)))}; {total} bytes)")
    print(f"max|logits| = {logits.abs().max().item():.4f}")


def check_export(export_dir, rtol):
    ref = read_reference(os.path.join(export_dir, "reference_logits.txt"))
    model = AutoModelForCausalLM.from_pretrained(export_dir, attn_implementation="eager").eval()
    print(f"transformers {transformers.__version__} loaded {export_dir} as "
          f"{type(model).__name__} ({model.dtype}, {sum(p.numel() for p in model.parameters())} "
          "parameters)")
    # autotp's logits are float32 computations (from the saved weights, bf16 ones included):
    # compare transformers' float32 computation on the same weights.
    with torch.no_grad():
        theirs = model.float()(ref["input_ids"]).logits.to(torch.float64)
    ours = ref["logits"]
    assert theirs.shape == ours.shape, f"shape {tuple(theirs.shape)} != {tuple(ours.shape)}"
    scale = ours.abs().max().item()
    diff = (theirs - ours).abs().max().item()
    print(f"max|transformers - autotp| = {diff:.3e}, max|logits| = {scale:.4f}, "
          f"relative {diff / scale:.3e} (limit {rtol:.1e})")
    if not diff <= rtol * scale:
        print("FAILED: transformers' logits differ from autotp's")
        sys.exit(1)
    print("OK")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--out", default=os.path.join(root, "tests", "data", "hf_tiny_llama"))
    parser.add_argument("--check-export", metavar="DIR")
    parser.add_argument("--rtol", type=float, default=1e-5)
    args = parser.parse_args()
    if args.check_export:
        check_export(args.check_export, args.rtol)
    else:
        make_golden(args.out)


if __name__ == "__main__":
    main()
