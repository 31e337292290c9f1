"""Why the smoke-gpu-path suite (bf16 autocast, EMA, 2 workers, cutout+randaugment) is slow on a
CPU: each suspect timed alone, in one process, against the plain path (fp32, no EMA, no workers,
no augmentation) -- issue #28.

Suspects, each as images/s of one training step or seconds per pass, same model and batch:
  bf16      smallcnn forward+backward under ``torch.autocast("cpu", bfloat16)`` vs fp32;
            ``--no-native-bf16`` disables oneDNN (``torch.backends.mkldnn``), which is what a
            CPU without bf16 instructions gets for bf16 (mkldnn_bf16_device_check fails there:
            convolutions fall back to slow_conv2d with a scalar bf16 GEMM); fp32 keeps oneDNN.
  workers   one pass over the 256-image split through a FRESH DataLoader with 2 workers (what
            bench.train.data.Feed.raw builds for every epoch and every evaluation pass) vs 0.
  augment   cutout+randaugment of one batch (bench.train.augment, batched) vs none.
  ema       one EMA update (decay 0.99) of the model.
  threads   the step with torch threads = 2 (the runner's default, cpu_count) while 2 DataLoader
            workers exist vs 1.

    .venv/bin/python benchmarks/bench_gpu_path_cpu.py            # this CPU as it is
    .venv/bin/python benchmarks/bench_gpu_path_cpu.py --no-native-bf16

Prints one line per suspect: the time and its ratio to the plain path's time for the same work.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-native-bf16", action="store_true",
                   help="disable oneDNN for the bf16 step (a CPU without bf16 instructions)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from bench.cost.count import CostConfig, build_model
    from bench.data.base import Split
    from bench.train.augment import augment, to_float
    from bench.train.data import Feed, epoch_batches
    from bench.train.ema import make_ema

    b, r = args.batch, args.resolution
    cfg = CostConfig("baseline", "smallcnn", r, 20, in_chans=1)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    gen = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (b, r, r, 1), dtype=torch.uint8, generator=gen)
    targets = (torch.rand(b, 20, generator=gen) < 0.2).float()
    x = to_float(raw)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(precision: str) -> None:
        opt.zero_grad(set_to_none=True)
        if precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model.loss([x], targets, "train")
        else:
            loss = model.loss([x], targets, "train")
        loss.backward()
        opt.step()

    out = []
    plain = _median_time(lambda: step("fp32"), args.reps)
    out.append(("step fp32 (plain path)", plain, b / plain, 1.0))
    with torch.backends.mkldnn.flags(enabled=not args.no_native_bf16):
        t = _median_time(lambda: step("bf16"), args.reps)
    label = "step bf16 autocast" + (" (oneDNN off: no native bf16)" if args.no_native_bf16 else "")
    out.append((label, t, b / t, t / plain))

    aug_none = _median_time(lambda: augment(raw, "none", torch.Generator().manual_seed(1)), args.reps)
    aug = _median_time(lambda: augment(raw, "cutout+randaugment", torch.Generator().manual_seed(1)), args.reps)
    out.append(("augment none", aug_none, b / aug_none, aug_none / plain))
    out.append(("augment cutout+randaugment", aug, b / aug, aug / plain))

    ema = make_ema(model, 0.99)
    t = _median_time(lambda: ema.update(model), args.reps)
    out.append(("ema update (0.99)", t, b / t, t / plain))

    n = 256
    split = Split(images=np.random.default_rng(0).integers(0, 256, (n, r, r, 1), dtype=np.uint8),
                  targets=np.zeros((n, 20), dtype=np.int8), ids=tuple(str(i) for i in range(n)))
    batches = epoch_batches(n, b, torch.Generator().manual_seed(0))
    for workers in (0, 2):
        feed = Feed("cpu", workers=workers)
        t = _median_time(lambda: sum(1 for _ in feed.raw(split, batches)), args.reps)
        out.append((f"fresh loader pass, workers {workers} ({n} images)", t, n / t, t / (plain * n / b)))

    for threads in (1, 2):
        torch.set_num_threads(threads)
        t = _median_time(lambda: step("fp32"), args.reps)
        out.append((f"step fp32, {threads} torch threads, no workers", t, b / t, t / plain))
        loader = iter(torch.utils.data.DataLoader(list(range(10 ** 6)), num_workers=2, batch_size=None,
                                                  prefetch_factor=2))
        next(loader)  # the workers exist and wait
        t = _median_time(lambda: step("fp32"), args.reps)
        del loader
        out.append((f"step fp32, {threads} torch threads, 2 workers alive", t, b / t, t / plain))
    torch.set_num_threads(args.threads)

    print(f"# smallcnn {r} px, batch {b}, 1 channel, 20 classes, {args.threads} thread(s), median of "
          f"{args.reps}; torch {torch.__version__}, "
          f"oneDNN bf16 supported here: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    print(f"{'what':58s} {'seconds':>9s} {'images/s':>9s} {'x plain':>8s}")
    for what, secs, ips, ratio in out:
        print(f"{what:58s} {secs:9.4f} {ips:9.1f} {ratio:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
