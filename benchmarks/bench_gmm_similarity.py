"""Time, peak memory and accuracy of ProbMCL's mixture similarity (forward + backward).

Compares, in one run and at the same thread count:
  * ``today``: the previous implementation, exp(L_ab - L_aa/2 - L_bb/2) with L_ab from
    ``gmm_log_inner_product`` (row-chunked logsumexp, backward by autograd on recomputed chunks);
  * ``blocked``: ``gmm_correlation`` now (cache-sized blocks of the shifted terms, hand-written
    backward that recomputes each block, only the upper triangle when a is b);
  * ``direct`` (small sizes only): the naive linear-space closed form, which underflows at
    dim = 128 ((2 pi * 2)^(-64) ~ 1e-70 is 0 in float32, so the correlation is 0/0 = NaN).
No torch.compile is used: the speed-up is from the formulation, in plain eager PyTorch.

Each measurement runs in its own subprocess: peak memory = ru_maxrss of that process after
the call minus its resident size just before the call (the ~0.3 GB torch import and the
inputs excluded). Accuracy: max relative error of the float32 correlation (elementwise) and of
each float32 gradient (max |diff| / max |ref|) against a float64 reference computed with the
same closed form in float64 (after the peak is read).

    .venv/bin/python benchmarks/bench_gmm_similarity.py                 # paper batch: 2N = 256, K = 80, n = 128
    .venv/bin/python benchmarks/bench_gmm_similarity.py --size 64 --threads 2
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import resource
import subprocess
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


def direct_correlation(pi, mu, var, dim: int) -> torch.Tensor:
    """Linear-space closed form, whole (A, A, K, K) tensor at once (the naive implementation)."""
    s = var[:, None, :, None] + var[None, :, None, :]
    d2 = (mu[:, None, :, None] - mu[None, :, None, :]).square()
    kern = (2 * math.pi * s) ** (-dim / 2) * torch.exp(-dim * d2 / (2 * s))
    inner = (pi[:, None, :, None] * pi[None, :, None, :] * kern).sum((2, 3))
    self_inner = inner.diagonal()
    return inner / torch.sqrt(self_inner[:, None] * self_inner[None, :])


def today_correlation(lp, mu, var, dim: int) -> torch.Tensor:
    """The implementation of gmm_correlation before the blocked one (same functions, same order)."""
    from methods.losses import gmm_log_inner_product, gmm_log_self_inner_product
    log_ab = gmm_log_inner_product(lp, mu, var, lp, mu, var, dim, log_weights=True)
    log_aa = gmm_log_self_inner_product(lp, mu, var, dim, log_weights=True)
    return torch.exp(log_ab - 0.5 * log_aa[:, None] - 0.5 * log_aa[None, :])


def blocked_correlation(lp, mu, var, dim: int) -> torch.Tensor:
    from methods.losses import gmm_correlation
    return gmm_correlation(lp, mu, var, lp, mu, var, dim, log_weights=True)


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**30


def _inputs(size: int, k: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(size, k, generator=g, dtype=torch.float64)
    mu = 0.3 * torch.randn(size, k, generator=g, dtype=torch.float64)
    var = 2.0 + torch.nn.functional.elu(torch.randn(size, k, generator=g, dtype=torch.float64))
    weights = torch.randn(size, size, generator=g, dtype=torch.float64)  # upstream gradient
    return [t.to(dtype).requires_grad_(i < 3) for i, t in enumerate((logits, mu, var, weights))]


def _run(kind: str, inputs, dim: int, backward: bool):
    logits, mu, var, weights = inputs
    if kind == "direct":
        return direct_correlation(torch.softmax(logits, 1), mu, var, dim), None
    fn = today_correlation if kind == "today" else blocked_correlation
    corr = fn(torch.log_softmax(logits, 1), mu, var, dim)
    grads = torch.autograd.grad((corr * weights).sum(), (logits, mu, var)) if backward else None
    return corr, grads


def measure(kind: str, size: int, k: int, dim: int, backward: bool, threads: int) -> dict:
    torch.set_num_threads(threads)
    inputs = _inputs(size, k, torch.float32)
    rss_before = _rss_gb()
    start = time.perf_counter()
    corr, grads = _run(kind, inputs, dim, backward)
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20 - rss_before
    result = {"kind": kind, "size": size, "K": k, "dim": dim, "threads": threads, "backward": backward,
              "seconds": round(total, 3), "peak_extra_gb": round(peak, 3),
              "nan_fraction": float(torch.isnan(corr).float().mean())}
    if kind != "direct":
        ref_corr, ref_grads = _run("blocked", _inputs(size, k, torch.float64), dim, backward)
        ref_corr = ref_corr.detach()
        result["corr_max_rel_err"] = float(((corr.detach().double() - ref_corr).abs() / ref_corr.abs()).max())
        result["corr_min"] = float(ref_corr.min())
        if backward:
            result["grad_max_rel_err"] = [float((a.double() - b).abs().max() / b.abs().max())
                                          for a, b in zip(grads, ref_grads)]
    return result


def run_child(kind: str, size: int, k: int, dim: int, backward: bool, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--size", str(size), "--k", str(k), "--dim", str(dim),
           "--threads", str(threads)]
    if backward:
        cmd.append("--backward")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=str(ROOT))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=("today", "blocked", "direct"))
    ap.add_argument("--size", type=int, default=256, help="A = B = 2N (paper: 256)")
    ap.add_argument("--k", type=int, default=80)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backward", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.size, args.k, args.dim, args.backward, args.threads)))
        return
    results = {}
    kinds = ["today", "blocked"] + (["direct"] if args.size <= 128 else [])  # direct: ~10 GB at 256
    for kind in kinds:
        results[kind] = run_child(kind, args.size, args.k, args.dim, kind != "direct", args.threads)
        print(json.dumps(results[kind]), flush=True)
    today, blocked = results["today"], results["blocked"]
    print(f"forward+backward at 2N={args.size}, K={args.k}, n={args.dim}, {args.threads} thread(s): "
          f"today {today['seconds']:.2f} s, blocked {blocked['seconds']:.2f} s, "
          f"speed-up {today['seconds'] / blocked['seconds']:.1f}x; peak extra memory today "
          f"{today['peak_extra_gb']:.3f} GB, blocked {blocked['peak_extra_gb']:.3f} GB; max relative error "
          f"vs float64: today {today['corr_max_rel_err']:.1e}, blocked {blocked['corr_max_rel_err']:.1e}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
