"""Per-class test AP of the main suite's rows (mean over seeds, from each record's predictions):
a table for docs/report-cells.md and a heatmap of each row's difference from the baseline row
for REPORT.md (a difference from a reference, no secondary axis). Which classes carry a
method's gain or deficit is invisible in mAP alone."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.evaluate.metrics import average_precision
from bench.report.collect.records import ReportData, fmt, fmt_signed, md_table

MAIN_SUITE = "default"
FIGURE = "per-class-ap-default.png"


def per_class(data: ReportData, suite: str = MAIN_SUITE) -> tuple[list[str], dict[str, np.ndarray]]:
    """(class names, {row label: per-class AP in percent, mean over its seeds}); rows without
    predictions are left out."""
    classes: list[str] = []
    out: dict[str, np.ndarray] = {}
    for label in data.labels(suite):
        aps = []
        for r in data.runs(suite, label):
            preds = data.predictions(suite, r)
            if preds is None:
                continue
            aps.append(100 * average_precision(preds[0], preds[1]))
            classes = classes or list((r.get("data") or {}).get("classes") or [])
        if aps:
            out[label] = np.nanmean(np.stack(aps), axis=0)
    if out and len(classes) != len(next(iter(out.values()))):
        classes = [str(i) for i in range(len(next(iter(out.values()))))]
    return classes, out


def section(data: ReportData, suite: str = MAIN_SUITE) -> list[str]:
    """The per-class AP table (classes as rows, the suite's rows as columns, then the largest
    difference from the baseline per row)."""
    classes, aps = per_class(data, suite)
    out = [f"## Per-class test AP (`{suite}`)", ""]
    if not aps:
        return out + [f"No predictions in the `{suite}` records (`bench run --suite {suite}` writes them).", ""]
    labels = sorted(aps)
    base = aps.get(data.label_for(suite, "baseline") or "")
    rows = [[name, *[fmt(aps[lab][i]) for lab in labels]] for i, name in enumerate(classes)]
    out += ["AP (%) per class, mean over seeds (test split, epoch selected on validation).", "",
            md_table(["class", *labels], rows), ""]
    if base is not None:
        notes = []
        for lab in labels:
            diff = aps[lab] - base
            if lab == data.label_for(suite, "baseline") or np.all(np.isnan(diff)):
                continue
            i, j = int(np.nanargmax(diff)), int(np.nanargmin(diff))
            n = int(np.sum(~np.isnan(diff)))
            notes.append(f"{lab} ({fmt_signed(float(np.nanmean(diff)))} mAP): largest gain '{classes[i]}' "
                         f"{fmt_signed(diff[i], 1)} AP ({fmt_signed(diff[i] / n)} mAP points), largest loss "
                         f"'{classes[j]}' {fmt_signed(diff[j], 1)} AP ({fmt_signed(diff[j] / n)})")
        out += ["Difference from the baseline row, per row: " + "; ".join(notes) + ".", ""]
    return out


def figure(data: ReportData, path: Path, suite: str = MAIN_SUITE) -> bool:
    """Heatmap: per-class AP of each row minus the baseline row's (points), diverging around 0."""
    from bench.report.figures import plots

    classes, aps = per_class(data, suite)
    base_label = data.label_for(suite, "baseline")
    if not aps or base_label not in aps:
        return False
    labels = [lab for lab in sorted(aps) if lab != base_label]
    diff = np.stack([aps[lab] - aps[base_label] for lab in labels])
    limit = float(np.nanmax(np.abs(diff))) or 1.0
    plt = plots.plt
    fig, ax = plt.subplots(figsize=(0.34 * len(classes) + 2.6, 0.32 * len(labels) + 1.6))
    image = ax.imshow(diff, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=60, fontsize=7, ha="right")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    cbar = fig.colorbar(image, ax=ax)
    cbar.set_label(f"AP - {base_label} AP (points)", fontsize=7)
    ax.set_title(f"Per-class test AP minus the baseline's (`{suite}`, mean over seeds)", fontsize=9)
    fig.tight_layout()
    plots.save(fig, path)
    return True


def caption() -> Any:
    return "Per-class test AP, difference from the baseline row (`default`)"
