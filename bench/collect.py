"""`bench results --suite NAME`: one row per finished job (DomainBed's collect_results)."""
from __future__ import annotations

import argparse
import json

import pandas as pd

from bench.errors import BenchError
from bench.store import Store

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
        row["job_id"] = r["job_id"]
        rows.append(row)
    return pd.DataFrame(rows)


def main(args: argparse.Namespace) -> int:
    records = Store(args.results).records(args.suite)
    if not records:
        raise BenchError(f"no finished jobs for suite {args.suite!r} under {args.results}/; "
                         f"run `bench run --suite {args.suite}` first")
    df = records_frame(records)
    if args.format == "csv":
        print(df.to_csv(index=False), end="")
    elif args.format == "json":
        print(df.to_json(orient="records", indent=1))
    else:
        print(df.drop(columns=["hparams", "job_id"]).to_markdown(index=False)
              if _has_tabulate() else df.to_string(index=False))
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401  (pandas.to_markdown needs it; fvcore depends on it)
        return True
    except ImportError:
        return False
