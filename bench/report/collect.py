"""`bench results --suite NAME [--by threads,machine]`: one row per finished job (DomainBed's
collect_results), with where it ran (threads, CPU) and whether it is stale (made by other code).
``--by`` groups the rows by those columns: mean test mAP per (row, group), the view that shows
the per-(thread count, CPU) determinism (README "What agreement to expect")."""
from __future__ import annotations

import argparse
import json

import pandas as pd

from bench.errors import BenchError
from bench.run.store import Store, record_fingerprint, staleness

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
        row["job_id"] = r["job_id"]
        rows.append(row)
    return pd.DataFrame(rows)


def main(args: argparse.Namespace) -> int:
    records = Store(args.results).records(args.suite)
    if not records:
        raise BenchError(f"no finished jobs for suite {args.suite!r} under {args.results}/; "
                         f"run `bench run --suite {args.suite}` first")
    df = records_frame(records)
    by = [c.strip() for c in (getattr(args, "by", None) or "").split(",") if c.strip()]
    if by:
        unknown = [c for c in by if c not in df.columns]
        if unknown:
            raise BenchError(f"--by {unknown[0]!r}: not a column; columns: {', '.join(df.columns)}")
        df = (df.groupby(["label", *by], dropna=False)
              .agg(seeds=("seed", "count"), test_mAP=("test_mAP", "mean"), test_mAP_sd=("test_mAP", "std"))
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
