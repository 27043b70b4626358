#!/usr/bin/env python3
"""Writes tests/engine/adamw_golden.h: AdamW/Adam parameter trajectories for the C++ tests.

Each case runs 10 optimizer steps on three small parameters ("w" [3, 5], "b" [7], "s" [2])
with the gradient of a quadratic, g = 2 (p - target) + offset[t], and a learning rate that
changes every step (as a scheduler would set it). Parameter "s" has no gradient at steps 2
and 5, so its own step count lags (PyTorch skips parameters whose grad is None).

References, in order of preference:
  * torch.optim.AdamW / torch.optim.Adam (foreach=False), when `import torch` works;
  * otherwise the exact formula of torch.optim.AdamW's single-tensor path
    (torch/optim/adamw.py + adam.py, _single_tensor_adam) evaluated in Python float64, and
    for float32 the same operations in numpy float32 (scalars rounded to float32 first, as
    PyTorch's CPU kernels round their Python-float scalars).
The header records which reference produced it. Run from the repository root:
    python3 tools/golden/make_adamw_golden.py
It is never run by the build or CI.
"""

import math
import os
import sys

import numpy as np

STEPS = 10
SHAPES = {"w": (3, 5), "b": (7,), "s": (2,)}
SKIP = {"s": {2, 5}}  # steps (0-based) at which the parameter has no gradient

CASES = [
    # name, beta1, beta2, eps, weight_decay, decoupled (AdamW) or coupled (Adam), dtypes
    ("adamw_default", 0.9, 0.999, 1e-8, 0.1, True, ("f64", "f32")),
    ("adamw_betas_095_no_decay", 0.8, 0.95, 1e-6, 0.0, True, ("f64",)),
    ("adam_coupled_decay", 0.9, 0.999, 1e-8, 0.05, False, ("f64", "f32")),
    ("adamw_large_lerp_weight", 0.3, 0.9, 1e-8, 0.01, True, ("f64",)),
]


def lr_at(t):
    return 0.05 * min(1.0, (t + 1) / 4.0) + 0.001 * t


def init_values(name, n):
    k = {"w": 0, "b": 1, "s": 2}[name]
    return [((i * 3 + k) % 7 - 3) / 2.0 for i in range(n)]


def target_values(name, n):
    k = {"w": 0, "b": 1, "s": 2}[name]
    return [((i * 5 + k) % 9 - 4) / 4.0 for i in range(n)]


def offset_values(name, t, n):
    k = {"w": 0, "b": 1, "s": 2}[name]
    return [((i * 7 + t * 3 + k) % 11 - 5) / 8.0 for i in range(n)]


def grad_f64(p, target, offset):
    # Computed in float64 from the (possibly float32) parameter; the C++ test does the same.
    return [2.0 * (float(pi) - ti) + oi for pi, ti, oi in zip(p, target, offset)]


def run_python_f64(beta1, beta2, eps, wd, decoupled):
    params = {n: init_values(n, math.prod(s)) for n, s in SHAPES.items()}
    m = {n: [0.0] * len(v) for n, v in params.items()}
    v = {n: [0.0] * len(x) for n, x in params.items()}
    step = {n: 0 for n in params}
    traj = []
    for t in range(STEPS):
        lr = lr_at(t)
        for n, p in params.items():
            if t in SKIP.get(n, ()):
                continue
            g = grad_f64(p, target_values(n, len(p)), offset_values(n, t, len(p)))
            step[n] += 1
            bc1 = 1 - beta1 ** step[n]
            bc2 = 1 - beta2 ** step[n]
            step_size = lr / bc1
            bc2_sqrt = math.sqrt(bc2)
            w = 1 - beta1
            for i in range(len(p)):
                pi, gi = p[i], g[i]
                if wd != 0:
                    if decoupled:
                        pi = pi * (1 - lr * wd)
                    else:
                        gi = gi + wd * pi
                diff = gi - m[n][i]
                m[n][i] = m[n][i] + w * diff if abs(w) < 0.5 else gi - diff * (1 - w)
                v[n][i] = v[n][i] * beta2 + (1 - beta2) * gi * gi
                denom = math.sqrt(v[n][i]) / bc2_sqrt + eps
                p[i] = pi + (-step_size) * m[n][i] / denom
        traj.append({n: list(p) for n, p in params.items()})
    return traj, m, v, step


def run_numpy_f32(beta1, beta2, eps, wd, decoupled):
    f = np.float32
    params = {n: np.array(init_values(n, math.prod(s)), dtype=f) for n, s in SHAPES.items()}
    m = {n: np.zeros_like(p) for n, p in params.items()}
    v = {n: np.zeros_like(p) for n, p in params.items()}
    step = {n: 0 for n in params}
    traj = []
    for t in range(STEPS):
        lr = lr_at(t)
        for n, p in params.items():
            if t in SKIP.get(n, ()):
                continue
            g = np.array(grad_f64(p, target_values(n, len(p)), offset_values(n, t, len(p))),
                         dtype=np.float64).astype(f)
            step[n] += 1
            bc1 = 1 - beta1 ** step[n]
            bc2 = 1 - beta2 ** step[n]
            step_size = lr / bc1
            bc2_sqrt = math.sqrt(bc2)
            w = f(1 - beta1)
            if wd != 0:
                if decoupled:
                    p = p * f(1 - lr * wd)
                else:
                    g = g + f(wd) * p
            diff = g - m[n]
            m[n] = m[n] + w * diff if abs(w) < f(0.5) else g - diff * (f(1) - w)
            v[n] = v[n] * f(beta2)
            v[n] = v[n] + f(1 - beta2) * g * g
            denom = np.sqrt(v[n]) / f(bc2_sqrt) + f(eps)
            p = p + f(-step_size) * m[n] / denom
            params[n] = p.astype(f)
        traj.append({n: [float(x) for x in p] for n, p in params.items()})
    return traj


def run_torch(torch, dtype, beta1, beta2, eps, wd, decoupled):
    tdtype = torch.float64 if dtype == "f64" else torch.float32
    params = {n: torch.tensor(init_values(n, math.prod(s)), dtype=tdtype, requires_grad=True)
              for n, s in SHAPES.items()}
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls(list(params.values()), lr=lr_at(0), betas=(beta1, beta2), eps=eps,
              weight_decay=wd, foreach=False)
    traj = []
    for t in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = lr_at(t)
        for n, p in params.items():
            if t in SKIP.get(n, ()):
                p.grad = None
                continue
            g = grad_f64(p.detach().tolist(), target_values(n, p.numel()),
                         offset_values(n, t, p.numel()))
            p.grad = torch.tensor(g, dtype=torch.float64).to(tdtype)
        opt.step()
        traj.append({n: p.detach().double().tolist() for n, p in params.items()})
    return traj


def c_array(values):
    return "{" + ", ".join(repr(float(x)) for x in values) + "}"


def main():
    try:
        import torch  # noqa: F401
        have_torch = True
    except Exception as e:  # torch missing or broken (e.g. missing CUDA libraries)
        print(f"torch unavailable ({e}); using the float64 formula and numpy float32",
              file=sys.stderr)
        have_torch = False
    reference = ("torch.optim.AdamW/Adam (foreach=False) " + torch.__version__ if have_torch
                 else "torch.optim.AdamW's single-tensor formula in Python float64 and numpy float32")

    out = []
    out.append("// Generated by tools/golden/make_adamw_golden.py; do not edit.")
    out.append(f"// AdamW/Adam reference trajectories. Reference: {reference}.")
    out.append("#pragma once")
    out.append("")
    out.append("namespace autotp::golden::adamw {")
    out.append("")
    out.append(f"constexpr int kSteps = {STEPS};")
    for n, s in SHAPES.items():
        numel = math.prod(s)
        out.append(f"constexpr double k_{n}_init[{numel}] = {c_array(init_values(n, numel))};")
        out.append(f"constexpr double k_{n}_target[{numel}] = {c_array(target_values(n, numel))};")
        offs = [x for t in range(STEPS) for x in offset_values(n, t, numel)]
        out.append(f"constexpr double k_{n}_offset[{STEPS}][{numel}] = {{")
        for t in range(STEPS):
            out.append("    " + c_array(offs[t * numel:(t + 1) * numel]) + ",")
        out.append("};")
    out.append(f"constexpr double kLr[{STEPS}] = {c_array([lr_at(t) for t in range(STEPS)])};")
    out.append("")

    for name, beta1, beta2, eps, wd, decoupled, dtypes in CASES:
        f64_traj, m, v, step = run_python_f64(beta1, beta2, eps, wd, decoupled)
        trajs = {"f64": f64_traj}
        if "f32" in dtypes:
            trajs["f32"] = run_numpy_f32(beta1, beta2, eps, wd, decoupled)
        if have_torch:
            for dt in dtypes:
                ref = run_torch(torch, dt, beta1, beta2, eps, wd, decoupled)
                tol = 1e-12 if dt == "f64" else 1e-5
                for a, b in zip(ref, trajs[dt]):
                    for n in SHAPES:
                        assert max(abs(x - y) for x, y in zip(a[n], b[n])) < tol, (name, dt, n)
                trajs[dt] = ref
        out.append(f"namespace {name} {{")
        out.append(f"constexpr double kBeta1 = {beta1!r}, kBeta2 = {beta2!r}, kEps = {eps!r}, "
                   f"kWeightDecay = {wd!r};")
        out.append(f"constexpr bool kDecoupled = {'true' if decoupled else 'false'};")
        for dt in dtypes:
            for n, s in SHAPES.items():
                numel = math.prod(s)
                out.append(f"constexpr double k_{n}_{dt}[{STEPS}][{numel}] = {{")
                for t in range(STEPS):
                    out.append("    " + c_array(trajs[dt][t][n]) + ",")
                out.append("};")
        if name == "adamw_default":
            for n, s in SHAPES.items():
                numel = math.prod(s)
                out.append(f"constexpr double k_{n}_exp_avg_f64[{numel}] = {c_array(m[n])};")
                out.append(f"constexpr double k_{n}_exp_avg_sq_f64[{numel}] = {c_array(v[n])};")
                out.append(f"constexpr long k_{n}_step = {step[n]};")
        out.append(f"}}  // namespace {name}")
        out.append("")
    out.append("}  // namespace autotp::golden::adamw")

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "tests", "engine", "adamw_golden.h")
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")
    print(f"wrote {path} (reference: {reference})")


if __name__ == "__main__":
    main()
