"""Report figures (PNG, Agg backend, byte-deterministic) that do not mislead:

* ablation curves: each swept value's mAP MINUS a reference (the first value, or the baseline
  row for CSRA's Lambda), seed-paired, with 95 % t-interval error bars AND every seed's
  difference as a dot; the paper's values minus the paper's own reference on the SAME axis
  (never a secondary axis: both are differences in mAP points), its chosen value marked where
  it prints none; a value with a not-converged run is marked; the y-axis includes every seed
  and interval and spans at least :data:`MIN_SPAN` points; a categorical axis is drawn as
  points in the paper's row order, never joined by a line;
* the training-free trick's gain vs Lambda, the paper's gains on the same axis by dataset;
* learning curves: validation mAP per epoch of every row and seed of a suite, one small panel
  per row (epochs of a non-selection stage have no validation mAP and are left blank)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from bench.report.collect import paper_values as pv  # noqa: E402
from bench.evaluate import stats  # noqa: E402
from bench.report.collect.records import SWEEP_AXES, Curve, ReportData, hparam_text, test_metric  # noqa: E402

#: PNG metadata without the matplotlib version or any timestamp: same inputs, same bytes.
PNG_METADATA = {"Software": None}
DPI = 90
#: The smallest y-span of an mAP axis (points): differences smaller than noise never fill a plot.
MIN_SPAN = 2.0


def seeds_text(cis: Sequence[stats.MeanCI]) -> str:
    """'1 seed, no interval' / 'mean ± 95 % CI over 3 seeds' / '... over 1-3 seeds'."""
    ns = sorted({c.n for c in cis if c.n})
    if not ns or ns == [1]:
        return "1 seed, no interval"
    seeds = f"{ns[0]} seeds" if len(ns) == 1 else f"{ns[0]}-{ns[-1]} seeds"
    return f"mean ± 95 % CI over {seeds}" + (" (1-seed points: no interval)" if ns[0] == 1 else "")


def y_limits(values: Sequence[float], min_span: float = MIN_SPAN) -> tuple[float, float]:
    """Limits covering ``values`` (seeds and interval ends) with a 10 % margin, at least min_span wide."""
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not finite:
        return (0.0, 1.0)
    low, high = min(finite), max(finite)
    pad = 0.1 * (high - low)
    low, high = low - pad, high + pad
    if high - low < min_span:
        mid = (high + low) / 2
        low, high = mid - min_span / 2, mid + min_span / 2
    return (low, high)


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, metadata=PNG_METADATA, bbox_inches="tight")
    plt.close(fig)


save = _save


def legend_below(fig: Any, axes: Sequence[Any]) -> Any:
    """ONE legend for every axis of the figure, in its own space below the plot:
    never drawn over a point, a line, a label or another legend."""
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.tight_layout()
    if not handles:
        return None
    return fig.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.0),
                      bbox_transform=fig.transFigure, frameon=True)


def wrapped_title(ax: Any, text: str, width: int = 58) -> None:
    """A title wrapped to the axes' width, so it never runs into a secondary axis's labels."""
    import textwrap

    ax.set_title("\n".join(textwrap.fill(line, width) for line in text.split("\n")), fontsize=9)


def remove_orphans(figures_dir: Path, made: Sequence[Path]) -> list[Path]:
    """Delete every PNG in ``figures_dir`` that this report run did not make (older code's figures)."""
    keep = {Path(p).resolve() for p in made}
    removed = []
    for path in sorted(Path(figures_dir).glob("*.png")) if Path(figures_dir).is_dir() else []:
        if path.resolve() not in keep:
            path.unlink()
            removed.append(path)
    return removed


def _errorbar(ax: Any, xs: Sequence[float], cis: Sequence[stats.MeanCI], label: str, line: bool,
              color: str = "tab:blue") -> None:
    means = [c.mean for c in cis]
    errs = [0.0 if math.isnan(c.half_width) else c.half_width for c in cis]
    ax.errorbar(xs, means, yerr=errs, marker="o", capsize=3, label=label, color=color,
                linestyle="-" if line else "none")


def _numeric(curve: Curve) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in curve.points)


def _span_values(cis: Sequence[stats.MeanCI], seeds: Sequence[Sequence[float]]) -> list[float]:
    out = [v for c in cis for v in (c.mean, c.low, c.high)]
    return out + [v for vs in seeds for v in vs]


def _ordered(curve: Curve) -> list[Any]:
    """The sweep's values: numeric ascending, categorical in the paper's row order when known."""
    values = [v for v, _ in curve.points]
    names = _PAPER_POINTS.get((curve.method, curve.axis), (None, {}, ""))[1]
    order = list(names)
    return sorted(values, key=lambda v: order.index(v) if v in order else len(order)) if order else values


def _paired_diffs(runs: Sequence[Any], ref: Sequence[Any]) -> list[float]:
    by_ref = {r["job"]["seed"]: test_metric(r) for r in ref}
    return [test_metric(r) - by_ref[r["job"]["seed"]] for r in runs if r["job"]["seed"] in by_ref]


def sweep_figure(curve: Curve, path: Path, note: str = "", reference: tuple[str, Sequence[Any]] | None = None,
                 slow: Sequence[Any] = ()) -> None:
    """mAP of every swept value minus a reference (the first value, or ``reference`` = (name, runs),
    e.g. the baseline row), seed-paired with its 95 % t-interval; the paper's values minus the
    paper's own reference on the SAME axis (no secondary axis); values in ``slow`` (a run not
    converged) marked."""
    values = _ordered(curve)
    ref_name, ref_runs = reference or (hparam_text(values[0]), curve.records_at(values[0]))
    diffs = [_paired_diffs(curve.records_at(v), ref_runs) for v in values]
    cis = [stats.mean_ci(d) for d in diffs]
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    numeric = _numeric(curve)
    xs = [float(v) for v in values] if numeric else list(range(len(values)))
    _errorbar(ax, xs, cis, f"ours ({curve.suite}), {seeds_text(cis)}", line=numeric)
    for x, d in zip(xs, diffs):
        if len(d) > 1:
            ax.scatter([x] * len(d), d, s=9, color="tab:blue", alpha=0.45, zorder=3)
    ax.scatter([], [], s=9, color="tab:blue", alpha=0.45, label="ours, each seed")
    ax.axhline(0.0, color="black", linewidth=0.6)
    span = _span_values(cis, diffs) + [0.0] + _overlay_paper(ax, curve, numeric, xs, values)
    ax.set_ylim(*y_limits(span))
    for x, v, ci in zip(xs, values, cis):
        if v in slow:
            ax.annotate("not converged", (x, ci.mean), fontsize=6, color="tab:red", xytext=(4, -10),
                        textcoords="offset points")
    if not numeric:
        ax.set_xticks(xs, [hparam_text(v) for v in values])
        ax.set_xlim(-0.5, len(xs) - 0.5 + PAPER_OFFSET * 2)
    ax.set_xlabel(f"{curve.method} {curve.hparam}")
    ax.set_ylabel("mAP - reference (points)")
    wrapped_title(ax, f"{curve.method}: mAP vs {curve.axis}, difference from {ref_name} ({curve.reference}){note}")
    legend_below(fig, [ax])
    _save(fig, path)


#: Our categorical sweep values -> the paper's row of the same table (value, paper table, row).
_PAPER_POINTS: dict[tuple[str, str], tuple[Any, dict[Any, str], str]] = {
    ("csra", "mode"): (pv.CSRA_T6, {"average": "average only", "spatial": "spatial only", "both": "average + spatial"},
                       "paper Table 6 (MS-COCO, ResNet-cut)"),
    ("imlgcn", "nodes"): (pv.IMLGCN_T3, {"word": "Word embeddings F_W", "image": "Image features F_I",
                                          "pca": "Image features F_PCA"}, "paper Table 3 (MS-COCO)"),
    ("probmcl", "overlap"): (pv.PROBMCL_OVERLAP, {"cosine": "cosine", "jaccard": "Jaccard"},
                             "paper Sec. 3.2 (MS-COCO, TResNet-L)"),
}
#: Paper points on a categorical axis sit this far right of ours, so neither hides the other.
PAPER_OFFSET = 0.18


def _paper_diffs(ax: Any, xs: Sequence[float], values: Sequence[float | None], label: str,
                 color: str = "tab:orange", marker: str = "s") -> list[float]:
    """The paper's numbers minus its value at our reference (the first x), on our axis."""
    if not values or values[0] is None:
        return []
    pts = [(x, v - values[0]) for x, v in zip(xs, values) if v is not None]
    ax.scatter([x for x, _ in pts], [v for _, v in pts], marker=marker, color=color, label=label, zorder=4)
    return [v for _, v in pts]


def _overlay_paper(ax: Any, curve: Curve, numeric: bool, xs: Sequence[float], values: Sequence[Any]) -> list[float]:
    """Draw the paper's differences (returned, for the y-range) or its chosen value."""
    chosen = pv.CHOSEN_HPARAMS.get((curve.method, curve.axis))
    shift = 0 if numeric else PAPER_OFFSET
    if curve.method == "csra" and curve.axis == "heads":
        out = []
        heads = {float(c.split("=")[1]): i for i, c in enumerate(pv.CSRA_T7.columns)}
        for (row, paper), color in zip(pv.CSRA_T7.rows, ("tab:orange", "tab:green")):
            out += _paper_diffs(ax, xs, [paper[heads[float(v)]] if float(v) in heads else None for v in values],
                                f"paper Table 7, {row} (MS-COCO)", color)
        return out
    if curve.method == "csra" and curve.axis == "normalisation":
        out, rows = [], dict(pv.CSRA_T8.rows)
        for i, (col, marker, color) in enumerate(zip(pv.CSRA_T8.columns, "sD", ("tab:orange", "tab:green"))):
            paper = [rows["with normalisation" if v else "without normalisation"][i] for v in values]
            out += _paper_diffs(ax, [x + PAPER_OFFSET * (i + 1) for x in xs], paper,
                                f"paper Table 8 (MS-COCO, ResNet-101 {col})", color, marker)
        return out
    if (curve.method, curve.axis) in _PAPER_POINTS:
        table, names, label = _PAPER_POINTS[(curve.method, curve.axis)]
        rows = dict(table.rows)
        paper = [rows[names[v]][0] if v in names and names[v] in rows else None for v in values]
        return _paper_diffs(ax, [x + shift for x in xs], paper, label)
    if curve.method == "csra" and curve.axis == "lambda" and numeric:
        for lam, who in ((0.1, "ResNet-cut, VOC2007, H = 1"), (1.0, "VIT-L16")):
            ax.axvline(lam, linestyle=":", color="gray")
            ax.annotate(f"paper peak: {who}", (lam, 0.0), fontsize=6, rotation=90, va="bottom", ha="right")
    elif chosen is not None and numeric:
        ax.axvline(chosen, linestyle=":", color="gray", label=f"paper's choice {chosen:g} (Fig. 2 gives no numbers)")
    return []


def trick_figure(data: ReportData, suite: str, path: Path) -> bool:
    """Training-free trick: mAP gain over the same model vs Lambda, one line per model (Lambda
    is numeric); the paper's Table 1 (varying-Lambda gain) as points on a secondary axis."""
    runs = [r for r in data.suites.get(suite, []) if r.get("training_free")]
    if not runs:
        return False
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    span: list[float] = [0.0]
    for label in sorted({r["job"]["label"] for r in runs}):
        mine = [r["training_free"] for r in runs if r["job"]["label"] == label]
        lambdas = sorted({float(k) for t in mine for k in t["test_mAP"]})
        gains = [[v - t["baseline_test_mAP"] for t in mine for k, v in t["test_mAP"].items() if float(k) == lam]
                 for lam in lambdas]
        cis = [stats.mean_ci(g) for g in gains]
        means = [c.mean for c in cis]
        errs = [0.0 if math.isnan(c.half_width) else c.half_width for c in cis]
        failed = any(data.health(r).is_failed for r in runs if r["job"]["label"] == label)
        ax.errorbar(lambdas, means, yerr=errs, marker="o", capsize=3,
                    label=f"ours: {label} ({seeds_text(cis)}){', failed run: no evidence' if failed else ''}")
        span += _span_values(cis, gains)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("Lambda (score = avg + Lambda * max)")
    ax.set_ylabel("test mAP gain over the same model (points)")
    for dataset, marker in (("MS-COCO", "x"), ("VOC2007", "+"), ("WIDER", "1"), ("ImageNet", "2")):
        rows = [values for row, values in pv.CSRA_T1.rows if row.startswith(dataset)]
        if rows:
            gains = [v[2] - v[0] for v in rows]
            ax.scatter([v[1] for v in rows], gains, marker=marker, color="gray",
                       label=f"paper Table 1, {dataset} (its tuned Lambda, gain)")
            span += gains
    ax.set_ylim(*y_limits(span))
    wrapped_title(ax, f"Training-free trick vs Lambda ({suite})")
    legend_below(fig, [ax])
    _save(fig, path)
    return True


def learning_curves_figure(data: ReportData, suite: str, path: Path) -> bool:
    """Validation mAP per epoch (record["history"][i]["val_mAP"]) of every row and seed of
    ``suite``: one small panel per row, all panels on ONE shared y-range, one line per seed
    (same colour per seed in every panel, one legend for the figure), x = epoch over all stages
    (a stage without validation -- e.g. ProbMCL's contrastive stage -- is blank); the
    convergence window of the selection stage (recomputed from the history) shaded."""
    labels = data.labels(suite)
    if not labels:
        return False
    cols = min(3, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.2 * rows), squeeze=False, sharey=True)
    finite = [float(h["val_mAP"]) for label in labels for r in data.runs(suite, label)
              for h in (r.get("history") or []) if h.get("val_mAP") is not None]
    limits = y_limits(finite)
    colours = {}
    for ax, label in zip([a for row in axes for a in row], labels):
        runs = data.runs(suite, label)
        for r in runs:
            history = r.get("history") or []
            seed = r["job"]["seed"]
            colour = colours.setdefault(seed, f"C{len(colours)}")
            xs = list(range(1, len(history) + 1))
            ys = [float("nan") if h.get("val_mAP") is None else float(h["val_mAP"]) for h in history]
            ax.plot(xs, ys, marker=".", linewidth=1, color=colour, label=f"seed {seed}")
            sel = (data.health(r).assessment or {}).get("selection")
            if sel and sel.get("window"):
                offset = next((i for i, h in enumerate(history) if str(h.get("stage")) == sel["stage"]), 0)
                ax.axvspan(offset + sel["window"][0] - 0.5, offset + sel["window"][1] + 0.5, color="gray", alpha=0.08)
        health = [data.health(r) for r in runs]
        flag = " (failed run)" if any(h.is_failed for h in health) else (
            " (earlier stage not converged)" if any(h.earlier_not_converged for h in health) else (
                " (not converged)" if any(h.not_converged for h in health) else ""))
        ax.set_title(f"{label}{flag}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_ylim(*limits)
        total = max((len(r.get("history") or []) for r in runs), default=1)
        ax.set_xlim(0.5, total + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (all stages)", fontsize=7)
        ax.set_ylabel("val mAP (%)", fontsize=7)
    for ax in [a for row in axes for a in row][len(labels):]:
        ax.set_visible(False)
    fig.suptitle(f"Validation mAP per epoch, every row and seed of `{suite}` (shared y-axis)", fontsize=9)
    first = axes[0][0]
    handles, names = first.get_legend_handles_labels()
    fig.tight_layout()
    if handles:
        fig.legend(handles, names, fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.0), ncol=len(handles))
    _save(fig, path)
    return True


def all_figures(data: ReportData, figures_dir: Path,
                main_suites: Sequence[str] = ("default", "imagenet-lite0")) -> list[tuple[str, Path]]:
    """Write every figure; return (caption, path) in a fixed order."""
    out = []
    for main_suite in main_suites:
        if main_suite not in data.suites:
            continue
        path = figures_dir / f"learning-curves-{main_suite}.png"
        if learning_curves_figure(data, main_suite, path):
            out.append((f"Learning curves: validation mAP per epoch, every row and seed (`{main_suite}`)", path))
    for method, names, axis, reference in SWEEP_AXES:
        for curve in data.curves(method, names, axis, reference):
            path = figures_dir / f"{method}-{axis}-{curve.suite}.png"
            runs = [r for _, rs in curve.runs for r in rs]
            failed = sum(data.health(r).is_failed for r in runs)
            slow = [v for v, rs in curve.runs if any(data.health(r).not_converged or data.health(r).earlier_not_converged
                                                      for r in rs)]
            reference = None
            if (method, axis) == ("csra", "lambda"):
                suite = curve.suite if data.label_for(curve.suite, "baseline") else "default"
                label = data.label_for(suite, "baseline")
                reference = (f"the baseline row (`{suite}`)", data.runs(suite, label)) if label else None
            sweep_figure(curve, path, f"\n{failed}/{len(runs)} runs failed to train: no evidence" if failed else "",
                         reference, slow)
            out.append((f"{reference}: {method} mAP vs {axis} (`{curve.suite}`)", path))
    for suite in [s for s in main_suites if s in data.suites]:  # the suites the trick claims use
        trick = figures_dir / f"training-free-lambda-{suite}.png"
        if trick_figure(data, suite, trick):
            out.append((f"CSRA Table 1 / Fig. 1: training-free trick gain vs Lambda (`{suite}`)", trick))
    return out
