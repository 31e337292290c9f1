"""Images/s of the data path alone, of the full training step, and of ProbMCL's mixture similarity.

Ready for ONE run on a GPU machine (issue #12, item 6), from the repository root:

    .venv/bin/python benchmarks/bench_gpu_step.py --device cuda --out results/bench_gpu_step.json

(on the device machine of these sessions: ``--out "$OUT/bench_gpu_step.json"`` so the JSON comes
back). Estimated wall time on one H100 with the defaults: about 4-5 minutes (an ESTIMATE, not a
measurement -- no GPU was available when this was written): ~10 s of CUDA start-up, ~30 s for the
data path, 10-20 s per training-step row (8 rows), up to ~1 min for ``torch.compile`` of the
similarity. Give the command a 10-minute limit; the JSON is rewritten after every row, so a run
cut short keeps the rows it finished.

What is measured (each as images/s = batch / median step time over ``--steps`` timed steps after
``--warmup`` untimed ones; a step's time runs from asking for its batch to asking for the next,
and on CUDA ``torch.cuda.synchronize()`` precedes every time stamp):

1. **data**: the data path alone -- a synthetic in-memory uint8 ``Split`` (``--images`` random
   images at ``--resolution``, 80 classes) -> ``Feed.raw`` (DataLoader with ``workers``
   processes, pinned memory on CUDA, non-blocking copy) -> ``Feed.views`` (device augmentation),
   for augmentations ``flip-crop`` and ``cutout+randaugment`` x workers ``--workers`` (0 and 8).
   With workers, the warm-up also drops the workers x prefetch batches the loader made ahead
   while the first was awaited. Ratio: against workers 0 of the same augmentation.
2. **step**: the full training step of the plain baseline (GAP + linear + BCE, the method
   registry's ``baseline``, random init) through the project's own ``bench.train.loop.train_epoch``
   (``Feed``, ``Step``, Adam + onecycle from ``bench.train.optim``, ``grad_scaler``) for backbones
   ``--backbones`` (resnet101, tresnet_l) x precision fp32/bf16 x channels_last off/on, with
   augmentation ``--step-aug`` and ``--step-workers`` loader processes. bf16 is skipped (with the
   reason printed) where ``bench.train.precision.unsupported`` says so. Ratio: against the
   fp32 / channels_last-off row of the same backbone.
3. **similarity**: ``methods.losses.gmm_correlation`` of ProbMCL (log-softmax weights, symmetric
   a = b) forward + backward at the paper size (2N = 256 views, K = 80 components, n = 128
   dimensions; as ``benchmarks/bench_gmm_similarity.py``), eager vs ``torch.compile``;
   "images/s" here = views (rows of the 2N batch) per second. A failed compile prints its error
   line and the row is skipped. Ratio: compiled against eager.

``--tiny`` is the CPU-sized variant the tests run (seconds): backbone smallcnn at 48 px, batch 8,
3 timed steps, workers 0 and 1, similarity at 2N = 32, K = 8, n = 16::

    .venv/bin/python benchmarks/bench_gpu_step.py --tiny --device cpu --threads 1

Host syncs (``bench.train.syncs``): every data and step row also counts, in separate untimed
passes (the counter intercepts every op), the syncs of one step -- the places the host waits
for the device (``.item()``/``bool()``, value-sized outputs such as ``nonzero``, blocking copies)
-- as ``syncs_per_step`` beside images/s, with their kinds in ``syncs``. On the CPU it is the
proxy count the tests pin.

Output: a markdown table (device, torch version, one line per row) on stdout, and the same rows
in the JSON file with ``device``, ``torch``, ``when``. Every row has ``images_per_s`` > 0 or
``skipped`` = the reason. Exit status 1 when a row failed unexpectedly (its ``skipped`` starts
with "error:"); unsupported precisions, out-of-memory and a failed compile are not failures.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import methods  # noqa: E402
from bench.data.base import Split  # noqa: E402
from bench.spec.suites import OPTIMIZER_DEFAULTS  # noqa: E402
from bench.train.data import Feed  # noqa: E402
from bench.train.loop import NonFiniteError, Step, train_epoch  # noqa: E402
from bench.train.optim import build_optimizer, build_schedule, optimizer_groups  # noqa: E402
from bench.train.precision import grad_scaler, unsupported  # noqa: E402
from bench.train.settings import Runtime  # noqa: E402
from bench.train.syncs import HostSyncs, per_step  # noqa: E402
from methods.base import BuildContext  # noqa: E402

NUM_CLASSES = 80
DATA_AUGS = ("flip-crop", "cutout+randaugment")
PRECISIONS = ("fp32", "bf16")
#: The baseline's paper recipe (methods/baseline.py): Adam, lr 1e-4, coupled weight decay 1e-4.
OPTIMIZER = {**OPTIMIZER_DEFAULTS, "name": "adam", "lr": 1e-4, "weight_decay": 1e-4}

FULL = {"backbones": "resnet101,tresnet_l", "resolution": 448, "batch": 64, "steps": 20, "warmup": 5,
        "images": 512, "workers": "0,8", "step_workers": 8, "sim_size": 256, "sim_k": 80, "sim_dim": 128,
        "out": "results/bench_gpu_step.json"}
TINY = {"backbones": "smallcnn", "resolution": 48, "batch": 8, "steps": 3, "warmup": 1,
        "images": 64, "workers": "0,1", "step_workers": 0, "sim_size": 32, "sim_k": 8, "sim_dim": 16,
        "out": "results/bench_gpu_step_tiny.json"}


class Skip(Exception):
    """A row that cannot run here, with the reason (not a failure)."""


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------

def _sync_fn(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)


def stamped(source: Iterable, sync: Callable[[], None], stamps: list[float]) -> Iterator:
    """Yield ``source``'s items, appending a (synchronised) time stamp before each fetch and one
    after the last item was used: interval i = fetching item i + everything done with it."""
    it = iter(source)
    while True:
        sync()
        stamps.append(time.perf_counter())
        try:
            item = next(it)
        except StopIteration:
            return
        yield item


def step_seconds(stamps: list[float], warmup: int) -> list[float]:
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    return intervals[warmup:]


def rate(batch: int, seconds: list[float]) -> dict[str, Any]:
    med = statistics.median(seconds)
    return {"images_per_s": round(batch / med, 2), "median_step_ms": round(1000 * med, 3),
            "timed_steps": len(seconds)}


@contextlib.contextmanager
def peak_memory(device: str, out: dict[str, Any]):
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        yield
    finally:
        if cuda:
            out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)


def free(device: str) -> None:
    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------

def synthetic_split(n: int, side: int, seed: int = 0) -> Split:
    """n random uint8 RGB images (n, side, side, 3) and random multi-label targets (~3 positives)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    targets = (rng.random((n, NUM_CLASSES)) < 3 / NUM_CLASSES).astype(np.int8)
    return Split(images, targets, tuple(f"img{i:05d}" for i in range(n)))


def cycled_batches(n: int, batch: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` sorted index batches of size ``batch`` over n images (re-shuffled each pass)."""
    if batch > n:
        raise ValueError(f"--batch {batch} exceeds --images {n}")
    g = torch.Generator().manual_seed(seed)
    out: list[np.ndarray] = []
    while len(out) < count:
        perm = torch.randperm(n, generator=g).numpy()
        out += [np.sort(perm[i * batch:(i + 1) * batch]) for i in range(n // batch)]
    return out[:count]


# ---------------------------------------------------------------------------------------------
# the three kinds of rows
# ---------------------------------------------------------------------------------------------

def data_row(split: Split, aug: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """Feed.raw -> Feed.views alone (one view, no model).

    With workers, the loader runs ahead by up to workers x prefetch batches (made while the
    first one was awaited); those are left out with the warm-up, so the timed steps see the
    steady state (the slower of loader and augmentation), not a drained backlog."""
    feed = Feed(args.device, "imagenet", workers, False, "fp32")
    warmup = args.warmup + (workers * feed.prefetch if workers else 0)
    batches = cycled_batches(len(split), args.batch, warmup + args.steps, seed=1)
    gen = torch.Generator().manual_seed(0)
    stamps: list[float] = []
    sink = torch.zeros((), device=args.device)
    for images, _targets in stamped(feed.raw(split, batches), _sync_fn(args.device), stamps):
        views = feed.views(images, 1, aug, gen)
        sink += views[0][:, :, 0, 0].sum()  # a use of the output (nothing is read to the host)
    images = next(iter(feed.raw(split, batches[:1])))[0]
    with HostSyncs(args.device).on_device(images) as counter:  # one batch's augmentation, untimed
        feed.views(images, 1, aug, gen)
    return {**rate(args.batch, step_seconds(stamps, warmup)), "warmup_steps": warmup,
            "syncs_per_step": counter.syncs, "syncs": counter.summary()}


def step_row(split: Split, backbone: str, precision: str, channels_last: bool,
             args: argparse.Namespace) -> dict[str, Any]:
    """``--warmup + --steps`` steps of the baseline through bench.train.loop.train_epoch."""
    problem = unsupported(precision, args.device)
    if problem:
        raise Skip(problem)
    device = args.device
    # never abort on skipped steps: a random-init network at a fixed lr times the same either way
    rt = Runtime(precision=precision, workers=args.step_workers, channels_last=channels_last,
                 max_nonfinite_steps=10**9)
    feed = Feed(device, "imagenet", rt.workers, rt.channels_last, rt.precision)
    spec = methods.get("baseline")
    torch.manual_seed(0)
    ctx = BuildContext(num_classes=NUM_CLASSES, class_names=tuple(f"c{i}" for i in range(NUM_CLASSES)),
                       train_targets=split.targets, backbone=backbone, backbone_options={},
                       resolution=args.resolution, in_chans=3, device=device)
    model = spec.build(ctx, spec.resolve({})).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    stage = model.stages[0]
    params = [p for p in model.trainable_parameters(stage) if p.requires_grad]
    opt = build_optimizer(optimizer_groups(model, stage, params, "paper-recipe", OPTIMIZER), OPTIMIZER)
    n_batches = args.warmup + args.steps
    sched = build_schedule(opt, OPTIMIZER, 1, n_batches + 4)  # + the 4 untimed steps of the sync count
    step = Step(opt, sched, grad_scaler(device, precision), None, params, None, rt)
    batches = cycled_batches(len(split), args.batch, n_batches, seed=2)
    gen = torch.Generator().manual_seed(0)
    stamps: list[float] = []
    sync = _sync_fn(device)
    out: dict[str, Any] = {}
    try:
        with peak_memory(device, out):
            try:
                result = train_epoch(model, stage, split, batches, feed=feed, step=step, aug=args.step_aug,
                                     n_views=model.views(stage), generator=gen,
                                     progress=lambda source: stamped(source, sync, stamps))
                out["loss"] = result.loss
                if result.nonfinite_steps:
                    out["note"] = f"{result.nonfinite_steps} non-finite step(s) skipped"
            except NonFiniteError as err:  # raised after the last step: the timings stand
                out["note"] = f"non-finite weights after the steps ({str(err)[:60]}...)"
        out.update(rate(args.batch, step_seconds(stamps, args.warmup)))
        out["warmup_steps"] = args.warmup
        counted, _ = per_step(lambda n: train_epoch(  # untimed: one step's host syncs
            model, stage, split, batches[:n], feed=feed, step=step, aug=args.step_aug,
            n_views=model.views(stage), generator=gen), device, [model])
        out.update(syncs_per_step=counted.syncs, syncs=counted.summary())
    finally:
        del model, opt, sched, step
        free(device)
    return out


def similarity_inputs(size: int, k: int, device: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(size, k, generator=g)
    mu = 0.3 * torch.randn(size, k, generator=g)
    var = 2.0 + torch.nn.functional.elu(torch.randn(size, k, generator=g))
    weights = torch.randn(size, size, generator=g)  # upstream gradient
    return [t.to(device).requires_grad_(i < 3) for i, t in enumerate((logits, mu, var, weights))]


def similarity_row(compiled: bool, args: argparse.Namespace) -> dict[str, Any]:
    """gmm_correlation (ProbMCL's Sim) forward + backward; eager or torch.compile'd."""
    from methods.losses import gmm_correlation

    dim = args.sim_dim

    def sim(logits: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        lp = torch.log_softmax(logits, 1)
        return gmm_correlation(lp, mu, var, lp, mu, var, dim, log_weights=True)

    fn = sim
    out: dict[str, Any] = {}
    if compiled:
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        fn = torch.compile(sim, backend=args.compile_backend)
    logits, mu, var, weights = similarity_inputs(args.sim_size, args.sim_k, args.device)
    sync = _sync_fn(args.device)

    def once() -> None:
        corr = fn(logits, mu, var)
        torch.autograd.grad((corr * weights).sum(), (logits, mu, var))

    if compiled:
        t0 = time.perf_counter()
        try:
            once()  # compiles
            sync()
        except Exception as err:  # noqa: BLE001 -- any compile failure: report it and go on
            line = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            print(f"torch.compile of gmm_correlation failed: {line}", file=sys.stderr, flush=True)
            raise Skip(f"compile failed: {line}") from None
        out["compile_s"] = round(time.perf_counter() - t0, 2)
        breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
        out["graph_breaks"] = int(breaks)
        out["note"] = (f"images/s = views (rows of 2N) per s; compile {out['compile_s']:.1f} s, "
                       f"{breaks} graph break(s)")
    seconds = []
    with peak_memory(args.device, out):
        for i in range(args.warmup + args.steps):
            sync()
            t0 = time.perf_counter()
            once()
            sync()
            if i >= args.warmup:
                seconds.append(time.perf_counter() - t0)
    out.update(rate(args.sim_size, seconds))
    return out


# ---------------------------------------------------------------------------------------------
# table, JSON, driver
# ---------------------------------------------------------------------------------------------

def device_name(device: str) -> str:
    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """ratio = images/s over that of the row named in ``ratio_vs`` (None when either is missing)."""
    by_key = {r["key"]: r for r in rows}
    for r in rows:
        ref = by_key.get(r.get("ratio_vs_key"))
        ok = ref is not None and r.get("images_per_s") and ref.get("images_per_s")
        r["ratio"] = round(r["images_per_s"] / ref["images_per_s"], 3) if ok else None


def table(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    lines = [f"# bench_gpu_step: device {header['device']}, torch {header['torch']}, {header['when']}",
             f"# batch {header['args']['batch']}, resolution {header['args']['resolution']}, "
             f"{header['args']['warmup']} warm-up (data rows with workers: + workers x prefetch) + "
             f"{header['args']['steps']} timed steps, median; "
             f"step aug {header['args']['step_aug']}, step workers {header['args']['step_workers']}",
             "",
             "| kind | config | images/s | syncs/step | ratio | ratio vs | ms/step | peak GiB | note |",
             "|---|---|---:|---:|---:|---|---:|---:|---|"]
    for r in rows:
        ips = f"{r['images_per_s']:.1f}" if r.get("images_per_s") else "-"
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-"
        ms = f"{r['median_step_ms']:.2f}" if r.get("median_step_ms") is not None else "-"
        peak = f"{r['peak_gib']:.2f}" if r.get("peak_gib") is not None else "-"
        note = f"skipped: {r['skipped']}" if r.get("skipped") else r.get("note", "")
        syncs = r.get("syncs_per_step")
        lines.append(f"| {r['kind']} | {r['config']} | {ips} | {'-' if syncs is None else syncs} | {ratio} | "
                     f"{r.get('ratio_vs') or '-'} | "
                     f"{ms} | {peak} | {note} |")
    return "\n".join(lines)


def write_json(path: Path, header: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**header, "rows": rows}, indent=2) + "\n")
    os.replace(tmp, path)


def planned_rows(args: argparse.Namespace) -> list[tuple[dict[str, Any], Callable[[], dict[str, Any]]]]:
    """(row identity, the function that measures it), in run order."""
    plan: list[tuple[dict[str, Any], Callable[[], dict[str, Any]]]] = []
    split_box: dict[str, Split] = {}

    def split() -> Split:
        if "s" not in split_box:
            split_box["s"] = synthetic_split(args.images, args.resolution)
        return split_box["s"]

    workers = [int(w) for w in args.workers.split(",")]
    for aug in DATA_AUGS:
        for w in workers:
            row = {"kind": "data", "key": f"data/{aug}/w{w}", "config": f"{aug}, workers {w}",
                   "aug": aug, "workers": w, "batch": args.batch, "resolution": args.resolution,
                   "ratio_vs_key": f"data/{aug}/w{workers[0]}", "ratio_vs": f"workers {workers[0]}"}
            plan.append((row, lambda aug=aug, w=w: data_row(split(), aug, w, args)))
    for bb in args.backbones.split(","):
        for prec in PRECISIONS:
            for cl in (False, True):
                row = {"kind": "step", "key": f"step/{bb}/{prec}/cl{int(cl)}",
                       "config": f"{bb}, {prec}, channels_last {'on' if cl else 'off'}",
                       "backbone": bb, "precision": prec, "channels_last": cl, "aug": args.step_aug,
                       "workers": args.step_workers, "batch": args.batch, "resolution": args.resolution,
                       "ratio_vs_key": f"step/{bb}/fp32/cl0", "ratio_vs": "fp32, channels_last off"}
                plan.append((row, lambda bb=bb, prec=prec, cl=cl: step_row(split(), bb, prec, cl, args)))
    for compiled in (False, True):
        mode = f"torch.compile ({args.compile_backend})" if compiled else "eager"
        row = {"kind": "similarity", "key": f"similarity/{'compiled' if compiled else 'eager'}",
               "config": f"gmm_correlation fwd+bwd, 2N={args.sim_size}, K={args.sim_k}, n={args.sim_dim}, {mode}",
               "compiled": compiled, "size": args.sim_size, "K": args.sim_k, "dim": args.sim_dim,
               "ratio_vs_key": "similarity/eager", "ratio_vs": "eager",
               "note": "images/s = views (rows of 2N) per s"}
        plan.append((row, lambda compiled=compiled: similarity_row(compiled, args)))
    return plan


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="CPU-sized variant (the tests run it)")
    ap.add_argument("--steps", type=int, help="timed steps per row (20; tiny 3)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (5; tiny 1)")
    ap.add_argument("--batch", type=int, help="images per step (64; tiny 8)")
    ap.add_argument("--resolution", type=int, help="image side (448; tiny 48)")
    ap.add_argument("--backbones", help="comma-separated (resnet101,tresnet_l; tiny smallcnn)")
    ap.add_argument("--images", type=int, help="images of the synthetic split (512; tiny 64)")
    ap.add_argument("--workers", help="loader processes of the data rows (0,8; tiny 0,1)")
    ap.add_argument("--step-workers", type=int, help="loader processes of the step rows (8; tiny 0)")
    ap.add_argument("--step-aug", default="cutout+randaugment", help="augmentation of the step rows")
    ap.add_argument("--sim-size", type=int, help="2N of the similarity (256; tiny 32)")
    ap.add_argument("--sim-k", type=int, help="mixture components K (80; tiny 8)")
    ap.add_argument("--sim-dim", type=int, help="dimension n (128; tiny 16)")
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the similarity")
    ap.add_argument("--only", help="comma-separated kinds to run: data,step,similarity (default all)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--out", help="JSON file (results/bench_gpu_step.json; tiny ..._tiny.json)")
    args = ap.parse_args(argv)
    for key, value in (TINY if args.tiny else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        ap.error("--steps must be >= 1, --warmup >= 0, --batch >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available here (use --tiny --device cpu)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        if torch.device(args.device).index is not None:
            torch.cuda.set_device(torch.device(args.device))
        torch.backends.cudnn.benchmark = Runtime().cudnn_benchmark  # as bench.run.runner sets it
    only = set(args.only.split(",")) if args.only else None
    out_path = Path(args.out) if os.path.isabs(args.out) else ROOT / args.out
    settings = {k: v for k, v in vars(args).items()}
    if args.device.startswith("cuda"):
        settings.update(cudnn_benchmark=torch.backends.cudnn.benchmark,
                        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                        matmul_precision=torch.get_float32_matmul_precision())
    header = {"device": device_name(args.device), "torch": torch.__version__,
              "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "args": settings}
    rows: list[dict[str, Any]] = []
    failed = 0
    t_all = time.perf_counter()
    for row, measure in planned_rows(args):
        if only and row["kind"] not in only:
            continue
        t0 = time.perf_counter()
        row.update(images_per_s=None, skipped=None)
        try:
            row.update(measure())
        except Skip as why:
            row["skipped"] = str(why)
        except torch.OutOfMemoryError as err:
            row["skipped"] = f"out of memory at batch {args.batch}: {str(err).splitlines()[0]}"
        except Exception as err:  # noqa: BLE001 -- record it, finish the other rows, exit 1
            traceback.print_exc()
            msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
            row["skipped"] = f"error: {type(err).__name__}: {msg}"
            failed += 1
        free(args.device)  # after the except clause: its traceback no longer holds the tensors
        row["wall_s"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        add_ratios(rows)
        write_json(out_path, header, rows)
        shown = f"{row['images_per_s']:.1f} images/s" if row["images_per_s"] else f"skipped: {row['skipped']}"
        if row.get("syncs") is not None:
            shown += f", {row['syncs']} per step"
        print(f"[{time.perf_counter() - t_all:6.1f} s] {row['kind']:10s} {row['config']}: {shown}",
              file=sys.stderr, flush=True)
    print(table(rows, header), flush=True)
    print(f"\nwrote {out_path} ({len(rows)} rows, {time.perf_counter() - t_all:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
