"""`bench results --suite NAME [--by threads,machine]`: one row per finished job (DomainBed's
collect_results), with where it ran (threads, CPU) and whether it is stale (made by other code).
``--by`` groups the rows by those columns: mean test mAP per (row, group), the view that shows
the per-(thread count, CPU) determinism (README "What agreement to expect")."""
from __future__ import annotations

import argparse
import json

import pandas as pd

import sys

from bench.errors import BenchError
from bench.run.store import Store, record_fingerprint, staleness
from bench.report.collect.configurations import config_of, shared_labels  # noqa: F401  (bench compare uses them too)

METRICS = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")


def records_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        job, sel, last = r["job"], r["metrics"]["selected"]["test"], r["metrics"]["last"]["test"]
        row = {"label": job["label"], "method": job["method"],
               "hparams": json.dumps(job["hparams"], sort_keys=True, separators=(",", ":")),
               "seed": job["seed"], "selected_epoch": r["selected_epoch"], "epochs": r["epochs"]}
        row.update({f"test_{k}": round(sel[k], 2) for k in METRICS})
        row["last_test_mAP"] = round(last["mAP"], 2)
        row["val_mAP"] = round(r["metrics"]["selected"]["val"]["mAP"], 2)
        row["wall_s"] = r["timing"]["wall_s"]
        prov = r.get("provenance") or {}
        row["threads"] = prov.get("threads")
        row["machine"] = prov.get("machine")
        row["code"] = record_fingerprint(r) or "none"
        row["state"] = "stale" if staleness(r) else "done"
        row["config"] = config_of(r)
        row["job_id"] = r["job_id"]
        rows.append(row)
    return pd.DataFrame(rows)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.run.roots import resolve_root
    from bench.spec.yaml_io import variant_name

    sets = getattr(args, "sets", None) or ()
    suite = variant_name(Path(args.suite).stem if Path(args.suite).suffix else args.suite, sets)
    args.results = resolve_root(args.results, suite)
    store = Store(args.results)
    records = store.records(suite)
    bad = store.unreadable(suite)
    if bad:
        print(f"bench results: {len(bad)} record(s) unreadable (corrupt record.json, e.g. {bad[0]}): "
              "left out; `bench run` retrains them", file=sys.stderr)
    if not records:
        flags = "".join(f" --set {s}" for s in sets)
        raise BenchError(f"no finished jobs for suite {suite!r} under {args.results}/; "
                         f"run `bench run --suite {args.suite}{flags}` first")
    shared = shared_labels(records)
    for label, configs in shared.items():
        print(f"bench results: row {label!r} holds {len(configs)} configurations ({', '.join(configs)}): "
              "listed and grouped apart by the config column, never averaged together", file=sys.stderr)
    df = records_frame(records)
    by = [c.strip() for c in (getattr(args, "by", None) or "").split(",") if c.strip()]
    if by:
        unknown = [c for c in by if c not in df.columns]
        if unknown:
            raise BenchError(f"--by {unknown[0]!r}: not a column; columns: {', '.join(df.columns)}")
        df = (df.groupby(["label", "config", *by], dropna=False)
              .agg(seeds=("seed", "nunique"), test_mAP=("test_mAP", "mean"), test_mAP_sd=("test_mAP", "std"))
              .round(2).reset_index())
    if args.format == "csv":
        print(df.to_csv(index=False), end="")
    elif args.format == "json":
        print(df.to_json(orient="records", indent=1))
    else:
        print(df.drop(columns=[c for c in ("hparams", "job_id") if c in df.columns]).to_markdown(index=False)
              if _has_tabulate() else df.to_string(index=False))
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401  (pandas.to_markdown needs it; fvcore depends on it)
        return True
    except ImportError:
        return False
