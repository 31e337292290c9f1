"""`bench cost`: count every row of a suite (bench.cost.count), optionally time it (bench.cost.timing)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cost.count import MACS_NOTE, TRAIN_BATCH, configs_for, cost_rows, provenance, render, synthetic_targets
from bench.cost.timing import time_ratios

def main(args: argparse.Namespace) -> int:
    from bench.run.store import atomic_write_json

    log = (lambda s: print(f"bench cost: {s}", file=sys.stderr)) if not args.quiet else (lambda s: None)
    configs = configs_for(args.suite)
    rows = cost_rows(configs, log, all_stages=args.timing)
    if args.timing:
        ratios = time_ratios(configs, args.timing_batch, args.timing_reps, log)
        for r in rows:
            key = (r["label"], "inference" if r["mode"] == "inference" else r.get("stage", ""))
            if key in ratios:
                r["infer_ratio" if r["mode"] == "inference" else "train_step_ratio"] = ratios[key]
    for r in rows:
        if r.get("error"):
            print(f"bench cost: error: {r['label']} ({r['backbone']} @ {r['resolution']} px): "
                  f"{r['error']}", file=sys.stderr)
    name = Path(args.suite).stem if Path(args.suite).suffix else args.suite
    record = {"suite": name, "macs_convention": MACS_NOTE, "train_batch": TRAIN_BATCH,
              "synthetic_targets": synthetic_targets.__doc__.split("\n")[0].strip() + " ...",
              "timing": ({"batch": args.timing_batch, "reps": args.timing_reps} if args.timing else None),
              "provenance": provenance(), "rows": rows}
    if not args.no_save:
        atomic_write_json(Path(args.results) / "cost" / f"{name}.json", record)
    print(render(rows, args.format))
    return 1 if any(r.get("error") for r in rows) else 0
