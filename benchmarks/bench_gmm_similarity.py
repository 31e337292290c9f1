"""Time and peak memory of ProbMCL's mixture similarity: chunked log space vs direct linear space.

Each measurement runs in its own subprocess and reports ru_maxrss (peak resident
memory of that process, including the ~0.3 GB torch import). The direct version
materialises the whole (A, B, K, K) tensor in linear space and, at dim = 128,
underflows: (2 pi * 2)^(-64) ~ 1e-70 is 0 in float32, so the correlation is 0/0 = NaN.

    .venv/bin/python benchmarks/bench_gmm_similarity.py            # paper size + a smaller one
    .venv/bin/python benchmarks/bench_gmm_similarity.py --size 64  # one size only
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch


def direct_correlation(pi, mu, var, dim: int) -> torch.Tensor:
    """Linear-space closed form, whole (A, A, K, K) tensor at once (the naive implementation)."""
    s = var[:, None, :, None] + var[None, :, None, :]
    d2 = (mu[:, None, :, None] - mu[None, :, None, :]).square()
    kern = (2 * math.pi * s) ** (-dim / 2) * torch.exp(-dim * d2 / (2 * s))
    inner = (pi[:, None, :, None] * pi[None, :, None, :] * kern).sum((2, 3))
    self_inner = inner.diagonal()
    return inner / torch.sqrt(self_inner[:, None] * self_inner[None, :])


def measure(kind: str, size: int, k: int, dim: int, backward: bool) -> dict:
    from methods.losses import gmm_correlation

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(size, k, generator=g, requires_grad=backward)
    mu = (0.3 * torch.randn(size, k, generator=g)).requires_grad_(backward)
    var = (2.0 + torch.nn.functional.elu(torch.randn(size, k, generator=g))).detach().requires_grad_(backward)
    start = time.perf_counter()
    if kind == "log":
        corr = gmm_correlation(torch.log_softmax(logits, 1), mu, var, torch.log_softmax(logits, 1), mu, var,
                               dim, log_weights=True)
    else:
        corr = direct_correlation(torch.softmax(logits, 1), mu, var, dim)
    forward = time.perf_counter() - start
    grad_finite = None
    if backward:
        corr.sum().backward()
        grad_finite = bool(torch.isfinite(mu.grad).all() and torch.isfinite(var.grad).all())
    total = time.perf_counter() - start
    return {"kind": kind, "size": size, "K": k, "dim": dim, "backward": backward,
            "forward_s": round(forward, 2), "total_s": round(total, 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "finite": bool(torch.isfinite(corr).all()), "nan_fraction": float(torch.isnan(corr).float().mean()),
            "diag_mean": float(corr.diagonal().nan_to_num(-1).mean()), "grad_finite": grad_finite}


def run_child(kind: str, size: int, k: int, dim: int, backward: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--size", str(size), "--k", str(k), "--dim", str(dim)]
    if backward:
        cmd.append("--backward")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=("log", "direct"))
    ap.add_argument("--size", type=int, default=None, help="A = B = 2N (paper: 256)")
    ap.add_argument("--k", type=int, default=80)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--backward", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.size, args.k, args.dim, args.backward)))
        return
    sizes = [args.size] if args.size else [64, 256]
    for size in sizes:
        for kind, backward in (("direct", False), ("log", False), ("log", True)):
            if kind == "direct" and size > 128:
                continue  # 4.2e8 x 4 B per intermediate: ~10 GB on a shared 2-core box
            print(json.dumps(run_child(kind, size, args.k, args.dim, backward)), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    main()
