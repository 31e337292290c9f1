"""KMCL's pairwise anisotropic Bhattacharyya distance: broadcast formula vs the chunked forward +
analytic backward of methods/bhattacharyya.py, fwd+bwd at the default suite's size (M=64
samples, K=20 classes, n=128 dims) and at KMCL's COCO batch (M=64, K=80). Ratios within one run.

    .venv/bin/python benchmarks/bench_bhattacharyya.py [--threads 2] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from methods.bhattacharyya import pairwise_bhattacharyya


def broadcast(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    m_i, m_j, v_i, v_j = mu[:, None], mu[None, :], var[:, None], var[None, :]
    s = v_i + v_j
    return (0.25 * (m_i - m_j).square() / s
            + 0.5 * (torch.log(s / 2) - 0.5 * (torch.log(v_i) + torch.log(v_j)))).sum(3)


def seconds(fn, mu, var, weight, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        t = time.perf_counter()
        (fn(mu, var) * weight).sum().backward()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}, fwd+bwd")
    for m, k, n in ((64, 20, 128), (64, 80, 128)):
        g = torch.Generator().manual_seed(0)
        mu = torch.randn(m, k, n, generator=g).requires_grad_()
        var = (torch.rand(m, k, n, generator=g) + 0.1).requires_grad_()
        weight = torch.randn(m, m, k, generator=g)
        old = seconds(broadcast, mu, var, weight, args.repeats)
        new = seconds(pairwise_bhattacharyya, mu, var, weight, args.repeats)
        err = (pairwise_bhattacharyya(mu, var) - broadcast(mu.double(), var.double())).abs().max().item()
        print(f"M={m} K={k} n={n}: broadcast {old * 1e3:.1f} ms, chunked {new * 1e3:.1f} ms, "
              f"{old / new:.1f}x; max |diff| vs float64 {err:.2e}")


if __name__ == "__main__":
    main()
