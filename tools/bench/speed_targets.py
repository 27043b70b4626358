#!/usr/bin/env python3
"""Issue 8's speed targets from one device call's results (tools/gpu/profile_bench.sh).

Reads every `autotp bench --json` report in RESULTS_DIR (autotp_bf16*.json: the default
kernels, the GEMM autotune and each attention variant) and the PyTorch side-by-side
(torch_bf16.json from tools/bench/torch_bench.py, same call, same GPU), ranks the autotp
configurations by tokens/s and checks the fastest against the targets: MFU >= 50 %,
tokens/s >= 1.25x PyTorch eager and >= 1.0x torch.compile, peak memory no higher than eager.
Prints a table and one verdict line per target, then, where bench_ops_bf16.json (`autotp
bench-ops`) is there, each kernel's achieved TFLOP/s or GB/s and its fraction of the device's
peak (the issue's per-kernel limits); --json FILE writes the same as JSON.
Exit status 0 whether or not the targets hold (it reports, it does not judge a build);
2 when the results are missing or malformed.

Usage: tools/bench/speed_targets.py RESULTS_DIR [--json FILE]
"""
import argparse
import glob
import json
import os
import sys

MFU_TARGET = 0.50
EAGER_TARGET = 1.25
COMPILE_TARGET = 1.00


def fail(message):
    print(f"speed_targets: {message}", file=sys.stderr)
    sys.exit(2)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")


def autotp_runs(results_dir):
    runs = []
    for path in sorted(glob.glob(os.path.join(results_dir, "autotp_bf16*.json"))):
        report = load_json(path)
        for key in ("tokens_per_s", "step_ms", "peak_memory_bytes", "kernel_config"):
            if key not in report:
                fail(f"{path}: no '{key}' (not an `autotp bench --json` report)")
        runs.append({"file": os.path.basename(path), **report})
    if not runs:
        fail(f"{results_dir}: no autotp_bf16*.json (run tools/gpu/profile_bench.sh first)")
    return sorted(runs, key=lambda r: -r["tokens_per_s"])


def torch_runs(results_dir):
    path = os.path.join(results_dir, "torch_bf16.json")
    if not os.path.exists(path):
        return {}
    rows = load_json(path)
    if not isinstance(rows, list):
        fail(f"{path}: expected a list of rows (torch_bench.py --out)")
    return {r["framework"]: r for r in rows if str(r.get("framework", "")).startswith("pytorch")}


def verdicts(best, torch):
    """(name, value text, target text, holds or None when unknown) per target."""
    out = []
    mfu = best.get("mfu")
    out.append(("MFU", "n/a" if mfu is None else f"{100 * mfu:.1f} %", f">= {100 * MFU_TARGET:.0f} %",
                None if mfu is None else mfu >= MFU_TARGET))
    for name, target in (("pytorch eager", EAGER_TARGET), ("pytorch compile", COMPILE_TARGET)):
        row = torch.get(name)
        ratio = best["tokens_per_s"] / row["tokens_per_s"] if row else None
        out.append((f"tokens/s vs {name}", "n/a" if ratio is None else f"{ratio:.3f}x",
                    f">= {target:.2f}x", None if ratio is None else ratio >= target))
    eager = torch.get("pytorch eager")
    if eager:
        ours, theirs = best["peak_memory_bytes"] / 2**30, eager["peak_memory_bytes"] / 2**30
        out.append(("peak memory vs eager", f"{ours:.2f} vs {theirs:.2f} GiB", "<= eager",
                    ours <= theirs))
    else:
        out.append(("peak memory vs eager", "n/a", "<= eager", None))
    return out


def kernel_rates(results_dir):
    """Rows of (op, shape, bound, forward rate, forward fraction, backward ...) from bench-ops."""
    path = os.path.join(results_dir, "bench_ops_bf16.json")
    if not os.path.exists(path):
        return []
    report = load_json(path)
    rows = []
    for op in report.get("ops", []):
        for key in ("op", "bound", "forward_rate", "backward_rate"):
            if key not in op:
                fail(f"{path}: an op without '{key}' (not an `autotp bench-ops --json` report)")
        rows.append(op)
    return rows


def rate_text(rate, bound, fraction):
    if rate is None:
        return "n/a"
    value = f"{rate / 1e12:.0f} TFLOP/s" if bound == "flops" else f"{rate / 1e9:.0f} GB/s"
    return value + (f" ({100 * fraction:.0f} %)" if fraction is not None else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results_dir")
    ap.add_argument("--json", help="also write the ranking and the verdicts here")
    args = ap.parse_args()
    runs = autotp_runs(args.results_dir)
    torch = torch_runs(args.results_dir)
    best = runs[0]
    device = best.get("device", "unknown device")
    print(f"autotp configurations on {device}, fastest first:")
    print(f"  {'tokens/s':>9} {'step ms':>8} {'MFU':>6}  configuration (file)")
    for r in runs:
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
        print(f"  {r['tokens_per_s']:9.0f} {r['step_ms']:8.2f} {mfu:>6}  {r['kernel_config']} ({r['file']})")
    for name, row in sorted(torch.items()):
        print(f"  {row['tokens_per_s']:9.0f} {row['step_ms']:8.2f} "
              f"{(100 * row['mfu']) if row.get('mfu') is not None else float('nan'):5.1f}%  {name}")
    print(f"targets, fastest configuration ({best['file']}):")
    results = verdicts(best, torch)
    for name, value, target, holds in results:
        state = "unknown" if holds is None else ("met" if holds else "NOT met")
        print(f"  {name:28} {value:>20}  target {target:10} {state}")
    kernels = kernel_rates(args.results_dir)
    if kernels:
        print("kernels (autotp bench-ops, bf16), achieved rate and fraction of the device's peak:")
        for op in kernels:
            fwd = rate_text(op["forward_rate"], op["bound"], op.get("forward_of_peak"))
            bwd = rate_text(op["backward_rate"], op["bound"], op.get("backward_of_peak"))
            print(f"  {op['op']:28} forward {fwd:>22}   backward {bwd:>22}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "ranking": runs, "pytorch": torch, "kernels": kernels,
                       "fastest": best["file"],
                       "targets": [{"name": n, "value": v, "target": t, "holds": h}
                                   for n, v, t, h in results]}, f, indent=1)


if __name__ == "__main__":
    main()
