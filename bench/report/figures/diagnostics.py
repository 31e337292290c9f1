"""Figures of what the verdicts rest on: the training loss of every stage without validation
(the curves the one convergence rule reads; ProbMCL's contrastive stage, IML-GCN's backbone
stage) and accuracy against cost (counted GMACs; wall-clock only for the rows made on the
suite's main machine). Two panels side by side, never a secondary axis."""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from bench.report.collect.records import ReportData
from bench.report.collect.configurations import machine, suite_machine

MAIN_SUITE = "default"
LOSS_FIGURE = "stage-losses-default.png"
COST_FIGURE = "accuracy-vs-cost-default.png"


def loss_figure(data: ReportData, path: Path, suite: str = MAIN_SUITE) -> bool:
    """Training loss of each stage without validation, relative to the stage's first epoch, one
    panel per row and one line per seed; the window the rule reads shaded, the drop in the title."""
    panels = []
    for label in data.labels(suite):
        stages = [(r, s) for r in data.runs(suite, label) for s in (data.health(r).assessment or {}).get("earlier") or []]
        if stages:
            panels.append((label, stages))
    if not panels:
        return False
    from bench.report.figures import plots

    plt = plots.plt
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.8), squeeze=False)
    threshold = data.loss_calibration.threshold
    for ax, (label, stages) in zip(axes[0], panels):
        drops = []
        for r, stage in stages:
            losses = [float(h["train_loss"]) for h in r.get("history") or []
                      if str(h.get("stage")) == stage["stage"] and h.get("train_loss") is not None]
            if not losses or not losses[0]:
                continue
            ax.plot(range(1, len(losses) + 1), [v / losses[0] for v in losses], marker=".", linewidth=1,
                    label=f"seed {r['job']['seed']}")
            if stage.get("window"):
                ax.axvspan(stage["window"][0] - 0.5, stage["window"][1] + 0.5, color="gray", alpha=0.08)
            if stage.get("value") is not None:
                drops.append(stage["value"])
        name = stages[0][1]["stage"]
        span = f"{min(drops):.1f}-{max(drops):.1f} %" if drops else "—"
        ax.set_title(f"{label}: {name} stage, drop {span}\n(rule < {threshold:.1f} %)", fontsize=8)
        ax.set_xlabel("epoch of the stage", fontsize=7)
        ax.set_ylabel("training loss / first epoch's", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    fig.suptitle(f"Stages without validation (`{suite}`): the loss the convergence rule reads", fontsize=9)
    fig.tight_layout()
    plots.save(fig, path)
    return True


def cost_figure(data: ReportData, path: Path, suite: str = MAIN_SUITE) -> bool:
    """mAP (mean, 95 % t-interval) against counted inference GMACs, and against the median train
    seconds per run for the rows made on the suite's main machine only."""
    rows = {r.get("label"): r for r in (data.costs.get(suite) or {}).get("rows") or []
            if r.get("mode", "inference") == "inference" and r.get("gmacs") is not None}
    points = []
    main = suite_machine(data, suite) if data.suites.get(suite) else ""
    for label in data.labels(suite):
        runs = data.runs(suite, label)
        ci = data.ci(suite, label)
        err = 0.0 if math.isnan(ci.half_width) else ci.half_width
        seconds = (statistics.median(r["timing"]["train_s"] for r in runs)
                   if {machine(r) for r in runs} == {main} else None)
        gmacs = float(rows[label]["gmacs"]) if label in rows else None
        points.append((label, ci.mean, err, gmacs, seconds))
    if not any(p[3] is not None for p in points):
        return False
    from bench.report.figures import plots

    plt = plots.plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.4), sharey=True)
    for ax, index, xlabel in ((left, 3, "counted inference GMACs per image (bench cost)"),
                              (right, 4, f"train s/run, median (only rows made on {main})")):
        for label, mean, err, *xs in points:
            x = xs[index - 3]
            if x is None:
                continue
            ax.errorbar([x], [mean], yerr=[err], marker="o", capsize=3, linestyle="none")
            ax.annotate(label, (x, mean), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(xlabel, fontsize=7)
        ax.tick_params(labelsize=6)
    left.set_ylabel("test mAP (%), mean and 95 % t-interval", fontsize=7)
    fig.suptitle(f"Accuracy against cost (`{suite}`); rows from another machine have no time", fontsize=9)
    fig.tight_layout()
    plots.save(fig, path)
    return True


def figures(data: ReportData, figures_dir: Path) -> list[tuple[str, Any]]:
    out = []
    if loss_figure(data, figures_dir / LOSS_FIGURE):
        out.append(("Training loss of the stages without validation (`default`)", figures_dir / LOSS_FIGURE))
    if cost_figure(data, figures_dir / COST_FIGURE):
        out.append(("Accuracy against cost (`default`): counted GMACs; time on one machine", figures_dir / COST_FIGURE))
    return out
