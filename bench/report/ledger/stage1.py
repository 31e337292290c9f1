"""REPORT.md's "ProbMCL: stage-1 budget" section (issue #20): ProbMCL at several contrastive
budgets with the probe fixed, the probe-only control (no contrastive stage), and the default
suite's baseline and equal-budget ProbMCL rows for reference; one plot of test mAP vs
contrastive epochs. Renders from whatever records exist; a missing sweep is a pending line
with its command."""
from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.evaluate import convergence, stats
from bench.report.collect.records import DASH, ReportData, fmt, md_table, test_metric

STAGE1_SUITE = "ablation-probmcl-stage1-cpu"
PROBE_SUITE = "ablation-probmcl-probe-only-cpu"
STAGE2_SUITE = "ablation-probmcl-stage2-cpu"  # its fine-tune point: the stage-2 control
MAIN_SUITE = "default"
FIGURE = "probmcl-stage1-budget.png"


def contrastive_epochs(record: Mapping[str, Any]) -> int:
    """Epochs of the record's contrastive stage (0 when it has none)."""
    for stage in record.get("stages") or []:
        if stage.get("name") == "contrastive":
            return int(stage.get("epochs") or 0)
    return 0


def _total_epochs(record: Mapping[str, Any]) -> int:
    return int(record.get("epochs") or record["job"]["budget"].get("epochs") or 0)


def _row(data: ReportData, where: str, label: str, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    maps = stats.mean_ci([test_metric(r) for r in runs])
    drops, ok, stage1_ok = [], 0, 0
    for r in runs:
        a = data.health(r).assessment or convergence.assess(r, data.loss_calibration.threshold)
        stage1 = [s for s in a["stages"] if s["stage"] == "contrastive"]
        drops += [s["value"] for s in stage1 if s["value"] is not None]
        stage1_ok += bool(stage1) and all(s["converged"] for s in stage1)
        ok += bool(a["converged"])
    return {"where": where, "label": label, "contrastive": contrastive_epochs(runs[0]),
            "total": _total_epochs(runs[0]), "map": maps,
            "seconds": statistics.median(r["timing"]["train_s"] for r in runs),
            "spread": max(r["timing"]["train_s"] for r in runs) / max(min(r["timing"]["train_s"] for r in runs), 1e-9),
            "drop": (sum(drops) / len(drops)) if drops else None, "converged": f"{ok}/{len(runs)}",
            "stage1_converged": stage1_ok, "seeds": len(runs),
            "series": _series(where, label, runs[0]), "recipe": _recipe(runs[0])}


def _series(where: str, label: str, record: Mapping[str, Any]) -> str:
    """'paper' = the budget line of the plot; 'shared' = the pre-#20 recipe; 'control' = a table-only row."""
    if where == MAIN_SUITE:
        return "reference"
    if "shared" in label:
        return "shared"
    hp = _hparams(record)
    control = hp.get("probe_input", "normalised") != "normalised" or hp.get("stage2", "linear-probe") != "linear-probe"
    return "control" if control else "paper"


def _hparams(record: Mapping[str, Any]) -> Mapping[str, Any]:
    return record.get("hparams_resolved") or record["job"].get("hparams") or {}


def _recipe(record: Mapping[str, Any]) -> str:
    """'<stage-1 recipe>, <stage 2>': what a row trains, beside its label."""
    hp = _hparams(record)
    # records made before budget.contrastive_recipe existed carry no key: they are the shared reading
    recipe = record["job"]["budget"].get("contrastive_recipe") or "shared"
    stage2 = str(hp.get("stage2", "linear-probe")).replace("-", " ")
    probe = ", raw h" if hp.get("probe_input", "normalised") != "normalised" else ""
    return f"{recipe}, {stage2}{probe}" if record["job"]["method"] == "probmcl" else DASH


def rows(data: ReportData) -> list[dict[str, Any]]:
    out = []
    for suite in (STAGE1_SUITE, PROBE_SUITE):
        for label in data.labels(suite):
            out.append(_row(data, suite, label, data.runs(suite, label)))
    for label in data.labels(STAGE2_SUITE):
        runs = data.runs(STAGE2_SUITE, label)
        if runs and _hparams(runs[0]).get("stage2") == "fine-tune":
            out.append(_row(data, STAGE2_SUITE, label, runs))
    order = {"paper": 0, "shared": 1, "control": 2}
    out.sort(key=lambda r: (order[r["series"]], r["contrastive"], r["label"]))
    for method in ("baseline", "probmcl"):
        label = data.label_for(MAIN_SUITE, method)
        if label is not None:
            out.append(_row(data, MAIN_SUITE, label, data.runs(MAIN_SUITE, label)))
    return out


def ledger_line(data: ReportData) -> str:
    """What the stage-1 budget sweep says about ProbMCL's converged evidence, for the ledger's
    ProbMCL lines: the shortest budget whose contrastive stage converged on every seed, or why
    none exists. Empty when the sweep has no records."""
    points = sorted((r for r in rows(data) if r["where"] == STAGE1_SUITE and r["series"] == "paper"),
                    key=lambda r: r["contrastive"])
    if not points:
        return ""
    budgets = " / ".join(str(r["contrastive"]) for r in points)
    where = f"stage-1 budget sweep `{STAGE1_SUITE}` ({budgets} contrastive epochs, probe 7; 'ProbMCL: stage-1 budget')"
    done = [r for r in points if r["seeds"] and r["stage1_converged"] == r["seeds"]]
    if done:
        r = done[0]
        return (f"{where}: stage 1 converges at {r['contrastive']} epochs on {r['seeds']} seeds, test mAP "
                f"{_cell_map(r['map'])}")
    last = points[-1]
    drop = DASH if last["drop"] is None else f"{fmt(last['drop'], 1)} %"
    return (f"{where}: no budget's stage 1 converged on every seed (the longest, {last['contrastive']} epochs: "
            f"{last['stage1_converged']}/{last['seeds']} seeds, mean drop {drop} over its last 25 %, rule < "
            f"{data.loss_calibration.threshold:.1f} %; test mAP {_cell_map(last['map'])}), so no ProbMCL evidence "
            "converged on every seed exists at this scale")


def _spread(found: Sequence[Mapping[str, Any]]) -> str:
    """How far one row's seeds disagree on seconds: a shared machine's load, not the method."""
    worst = max(found, key=lambda r: r["spread"], default=None)
    if worst is None or worst["spread"] < 1.5:
        return "seeds of a row agree within 1.5x"
    return (f"the seeds of '{worst['label']}' differ {worst['spread']:.1f}x in train seconds: the machine's load "
            "varied between runs, so read cost in epochs first")


def _cell_map(ci: stats.MeanCI) -> str:
    if ci.n == 0:
        return DASH
    return f"{ci.mean:.1f} ± {ci.sd:.2f} (sd, {ci.n} seeds)" if ci.n > 1 else f"{ci.mean:.1f} (1 seed)"


def section(data: ReportData, figures_dir: Path, link_dir: Path, output: Path) -> tuple[list[str], list[Path]]:
    found = rows(data)
    out = ["## ProbMCL: stage-1 budget", "",
           "Does ProbMCL's gap at CPU scale come from the method or from a contrastive stage cut off "
           "mid-descent? The paper trains 80 contrastive + 40 classification epochs (Sec. 4, Implementation "
           "Details); the default suite's equal budget gives 13 + 7. Here the probe stays at 7 epochs and stage 1 "
           "varies; the controls: the probe alone (no contrastive stage), the probe on the raw encoder output (the paper "
           f"reads unit-normalised h) and the encoder fine-tuned in stage 2 (`{STAGE2_SUITE}`, shared reading); "
           "'recipe' = budget.contrastive_recipe (method = the paper's RandAugment views and one lr; shared = the "
           "suite's views and backbone lr x0.1) and stage 2. 'stage-1 loss drop' = relative drop of the "
           "contrastive loss over the stage's last 25 % of epochs (at least "
           f"{convergence.MIN_WINDOW}); the stage converged when it is below {data.loss_calibration.threshold:.1f} % "
           "(the report's one loss rule, calibrated on the validated stages: see the legend of the methods table). "
           "'converged' = seeds whose every stage passes the rule. Seconds are the median over seeds "
           f"({_spread(found)}).", ""]
    for suite in (STAGE1_SUITE, PROBE_SUITE):
        if not data.suites.get(suite):
            out += [f"Pending: no `{suite}` records yet. Produce them with `bench sweep sweeps/{suite}.yaml`.", ""]
    sweep_rows = [r for r in found if r["where"] != MAIN_SUITE]
    if not found:
        return out, []
    table = [[f"{r['label']} (`{r['where']}`)" + (" — reference, equal budget" if r["where"] == MAIN_SUITE else ""),
              str(r["contrastive"]), str(r["total"]), _cell_map(r["map"]), fmt(r["seconds"], 1),
              DASH if r["drop"] is None else f"{fmt(r['drop'], 1)} %", r["converged"], r["recipe"]] for r in found]
    out += [md_table(["Row", "contrastive epochs", "total epochs", "test mAP (mean ± sd over seeds)",
                      "train s/run (median over seeds)", "stage-1 loss drop, last 25 %", "converged", "recipe"], table), ""]
    paths = []
    if sweep_rows and _figure(found, figures_dir / FIGURE):
        link = os.path.relpath(link_dir / FIGURE, output.parent).replace(os.sep, "/")
        out += ["**ProbMCL: test mAP vs contrastive epochs (probe fixed at 7 epochs)**", "",
                f"![ProbMCL: test mAP vs contrastive epochs]({link})", ""]
        paths.append(figures_dir / FIGURE)
    return out, paths


def _figure(found: Sequence[Mapping[str, Any]], path: Path) -> bool:
    from bench.report.figures import plots

    plt = plots.plt
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    span: list[float] = []
    styles = {"paper": ("o", "tab:blue", "ProbMCL, paper stage-1 recipe"),
              "shared": ("s", "tab:green", "ProbMCL, shared (pre-#20) recipe")}
    for series, (marker, color, name) in styles.items():
        pts = sorted((r for r in found if r["series"] == series and r["where"] != PROBE_SUITE),
                     key=lambda r: r["contrastive"])
        if not pts:
            continue
        xs = [r["contrastive"] for r in pts]
        means = [r["map"].mean for r in pts]
        errs = [0.0 if math.isnan(r["map"].half_width) else r["map"].half_width for r in pts]
        ax.errorbar(xs, means, yerr=errs, marker=marker, color=color, capsize=3, linestyle="-" if series == "paper"
                    else "none", label=f"{name} (mean, 95 % t-interval over seeds)")
        span += [m + e for m, e in zip(means, errs)] + [m - e for m, e in zip(means, errs)]
    for r, (marker, color) in zip([r for r in found if r["series"] == "control" or r["where"] == PROBE_SUITE],
                                  (("D", "tab:purple"), ("^", "tab:brown"), ("v", "tab:olive"), ("P", "tab:cyan"))):
        err = 0.0 if math.isnan(r["map"].half_width) else r["map"].half_width
        ax.errorbar([r["contrastive"]], [r["map"].mean], yerr=[err], marker=marker, color=color, capsize=3,
                    linestyle="none", label=f"control: {r['label']} ({r['recipe']})")
        span += [r["map"].mean - err, r["map"].mean + err]
    for r in found:
        if r["where"] == MAIN_SUITE and r["map"].n:
            color = "gray" if r["label"] == "baseline" else "tab:red"
            ax.axhline(r["map"].mean, linestyle=":", color=color,
                       label=f"reference: {r['label']} (`{MAIN_SUITE}`, {r['contrastive']} + "
                             f"{r['total'] - r['contrastive']} epochs)")
            span.append(r["map"].mean)
    if not span:
        plt.close(fig)
        return False
    ax.set_ylim(*plots.y_limits(span))
    ax.set_xlabel("contrastive (stage-1) epochs; probe 7 epochs")
    ax.set_ylabel("test mAP (%)")
    ax.set_title("ProbMCL: stage-1 budget", fontsize=9)
    plots.legend_below(fig, [ax])
    plots.save(fig, path)
    return True
