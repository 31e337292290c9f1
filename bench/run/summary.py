"""The summary every `bench run` ends with: per row the seeds done, test mAP, flags (collapsed,
not converged, non-finite steps, failed), where the records are, and the next commands with the
same --results/--set flags. Reads the records the run left; changes nothing."""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

REPO = Path(__file__).resolve().parents[2]


def collapse_line(collapse: Mapping[str, Any]) -> str:
    """One line saying what COLLAPSED means and which of the record's figures tripped the rule."""
    rule = collapse.get("rule") or {}
    tripped = []
    if collapse.get("dead_fraction", 0) > rule.get("dead_fraction_above", 1):
        tripped.append(f"{collapse['dead_fraction']:.0%} of the projection's dimensions dead "
                       f"(> {rule['dead_fraction_above']:.0%})")
    if collapse.get("similarity_std", 1) < rule.get("similarity_std_below", 0):
        tripped.append(f"similarity sd {collapse['similarity_std']:.4f} between images "
                       f"(< {rule['similarity_std_below']}: every image embeds alike)")
    if collapse.get("effective_rank", 1e9) < rule.get("effective_rank_below", 0):
        tripped.append(f"effective rank {collapse['effective_rank']:.1f} of the features "
                       f"(< {rule['effective_rank_below']}: they span almost one direction)")
    return ("COLLAPSED = the contrastive stage left a degenerate encoder, judged on "
            f"{collapse.get('images', '?')} unaugmented training images: " + "; ".join(tripped or ["see the rule"])
            + "; the classifier on top cannot do better than its features (record.json: collapse)")


def record_flags(record: Mapping[str, Any]) -> list[str]:
    from bench.evaluate.convergence import assess

    flags = []
    collapse = record.get("collapse")
    if isinstance(collapse, Mapping) and collapse.get("collapsed"):
        flags.append("COLLAPSED")
    verdict = assess(record)
    if verdict["stages"] and not verdict["converged"]:
        stages = [s for s in verdict["stages"] if not s["converged"]]
        flags.append(f"not converged ({', '.join(s['stage'] for s in stages)})")
    if record.get("nonfinite_steps"):
        flags.append(f"{record['nonfinite_steps']} non-finite step(s) skipped")
    return flags


def _flags_text(args: argparse.Namespace) -> str:
    return "".join(f" --set {s}" for s in getattr(args, "sets", None) or ())


def next_commands(args: argparse.Namespace, suite: str, root: str, default_root: str) -> list[str]:
    """The commands to read what the run made, with the flags that find the same folder
    (``suite`` is the folder: ``<suite>+<hash>`` for a --set variant)."""
    results = "" if root == default_root else f" --results {root}"
    sets = _flags_text(args)
    out = [f"bench results --suite {args.suite}{results}{sets}"]
    if sets:
        pass  # bench report leaves --set variants out
    elif root == "results":
        out.append("bench report")
    else:
        out.append(f"bench report --results {root} --output {root}/REPORT.md")
    if (REPO / "results" / suite).is_dir() and Path(root).resolve() != (REPO / "results").resolve():
        out.append(f"bench compare --suite {args.suite} --new {root}{sets}")
    return out


def label_of(job: Any) -> str:
    return str(job.display_name)


def print_summary(args: argparse.Namespace, jobs: Sequence[Any], store: Any, failed: Sequence[Any] = (),
                  out: TextIO | None = None) -> None:
    """The end-of-run summary of ``jobs`` (read back from ``store``)."""
    from bench.run.roots import resolve_root

    rows: dict[str, dict[str, Any]] = {}
    collapses: list[Mapping[str, Any]] = []
    unconverged: list[str] = []
    failed_ids = {getattr(j, "job_id", j) for j in failed}
    for job in jobs:
        row = rows.setdefault(job.display_name, {"seeds": [], "maps": [], "flags": [], "failed": 0})
        record = store.job_dir(job).record()
        if record is None:
            row["failed"] += job.job_id in failed_ids
            continue
        row["seeds"].append(job.seed)
        test_map = ((record.get("metrics") or {}).get("selected") or {}).get("test", {}).get("mAP")
        if test_map is not None:
            row["maps"].append(float(test_map))
        flags = record_flags(record)
        row["flags"] += flags
        if "COLLAPSED" in flags:
            collapses.append(record["collapse"])
        if any(f.startswith("not converged") for f in flags) and not unconverged:
            from bench.evaluate.convergence import assess, describe

            unconverged.append(f"{label_of(job)} seed {job.seed}: " + "; ".join(
                describe(s) for s in assess(record)["stages"] if not s["converged"]))
    suite = jobs[0].suite if jobs else str(args.suite)
    width = max([len(r) for r in rows] + [5])
    lines = [f"\nsummary: {suite}, {len(jobs)} job(s) in {len(rows)} row(s)",
             f"  {'row':<{width}}  seeds  test mAP (selected)  flags"]
    for label, row in rows.items():
        maps = row["maps"]
        value = ("-" if not maps else f"{maps[0]:.2f}" if len(maps) == 1 else
                 f"{statistics.mean(maps):.2f} +- {statistics.stdev(maps):.2f}")
        n = len(row["seeds"])
        flags = [f"{f} ({k}/{n} seeds)" if n > 1 else f for f, k in Counter(row["flags"]).items()]
        flags += [f"{row['failed']} failed"] if row["failed"] else []
        lines.append(f"  {label:<{width}}  {len(row['seeds']):>5}  {value:<19}  {'; '.join(flags) or '-'}")
    if collapses:
        lines.append("  " + collapse_line(collapses[0]))
    if unconverged:
        lines.append("  not converged = still improving at the end, or too short to judge, by the rule in "
                     f"REPORT.md (record.json: convergence); e.g. {unconverged[0]}")
    root = str(store.root)
    lines.append(f"records: {Path(root) / suite}/<job_id>/record.json (summary.csv: per-epoch curves)")
    lines.append("next:")
    lines += [f"  {c}" for c in next_commands(args, suite, root, str(resolve_root(None, suite.split("+")[0])))]
    print("\n".join(lines), file=out or sys.stdout, flush=True)
