"""Report figures (PNG, Agg backend, byte-deterministic) that do not mislead:

* ablation curves: our mean test mAP with 95 % t-interval error bars AND every seed's value as
  a dot; the y-axis always includes every seed and interval and spans at least
  :data:`MIN_SPAN` mAP points (so noise never fills the axis); a categorical axis (modes,
  on/off, feature kinds) is drawn as points, never joined by a line; the legend says
  "1 seed, no interval" when there is one seed; the paper's values (bench.report.paper_values) are
  drawn beside ours on a secondary axis wherever the paper prints numbers, and its chosen
  value is marked where it prints none;
* the training-free trick's gain vs Lambda, with the same rules;
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

from bench.report import paper_values as pv  # noqa: E402
from bench.evaluate import stats  # noqa: E402
from bench.report.common import SWEEP_AXES, Curve, ReportData, hparam_text  # noqa: E402

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
    """ONE legend for every axis (ours and the paper's twin), in its own space below the plot:
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


def align_zero(ax: Any, twin: Any) -> None:
    """Secondary-axis limits so that its 0 sits at the same height as the primary axis's 0."""
    lo, hi = ax.get_ylim()
    t_lo, t_hi = twin.get_ylim()
    if not (lo < 0 < hi):
        return
    frac = -lo / (hi - lo)  # the height of 0 on the primary axis
    # the smallest twin range containing its data with 0 at ``frac``
    scale = max(t_hi / (1 - frac) if t_hi > 0 else 0.0, -t_lo / frac if t_lo < 0 else 0.0) or 1.0
    twin.set_ylim(-frac * scale, (1 - frac) * scale)


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


def sweep_figure(curve: Curve, path: Path, note: str = "") -> None:
    points = curve.ci()
    cis = [c for _, c in points]
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    numeric = _numeric(curve)
    xs = [float(v) for v, _ in points] if numeric else list(range(len(points)))
    _errorbar(ax, xs, cis, f"ours ({curve.suite}), {seeds_text(cis)}", line=numeric)
    for x, (_, maps) in zip(xs, curve.points):
        if len(maps) > 1:
            ax.scatter([x] * len(maps), maps, s=9, color="tab:blue", alpha=0.45, zorder=3)
    if any(len(maps) > 1 for _, maps in curve.points):
        ax.scatter([], [], s=9, color="tab:blue", alpha=0.45, label="ours, each seed")
    if not numeric:
        ax.set_xticks(xs, [hparam_text(v) for v, _ in points])
        ax.set_xlim(-0.5, len(xs) - 0.5 + PAPER_OFFSET * 2)
    ax.set_ylim(*y_limits(_span_values(cis, [m for _, m in curve.points])))
    ax.set_xlabel(f"{curve.method} {curve.hparam}")
    ax.set_ylabel("test mAP (%), ours")
    twin = _overlay_paper(ax, curve, numeric, xs)
    wrapped_title(ax, f"{curve.method}: mAP vs {curve.axis} ({curve.reference}){note}")
    legend_below(fig, [ax] + ([twin] if twin is not None else []))
    _save(fig, path)


#: Our categorical sweep values -> the paper's row of the same table (value, paper table, row).
_PAPER_POINTS: dict[tuple[str, str], tuple[Any, dict[Any, str], str]] = {
    ("csra", "mode"): (pv.CSRA_T6, {"average": "average only", "spatial": "spatial only", "both": "average + spatial"},
                       "paper Table 6 (MS-COCO, ResNet-cut)"),
    ("imlgcn", "nodes"): (pv.IMLGCN_T3, {"word": "Word embeddings F_W", "image": "Image features F_I",
                                          "pca": "Image features F_PCA"}, "paper Table 3 (MS-COCO)"),
    ("probmcl", "overlap"): (pv.PROBMCL_OVERLAP, {"jaccard": "Jaccard", "cosine": "cosine"},
                             "paper Sec. 3.2 (MS-COCO, TResNet-L)"),
}
#: Paper points on a categorical axis sit this far right of ours, so neither hides the other.
PAPER_OFFSET = 0.18


def _paper_twin(ax: Any, xs: Sequence[float], values: Sequence[float | None], label: str,
                color: str = "tab:orange", marker: str = "s", twin: Any = None) -> Any:
    """The paper's numbers at our x positions on a secondary axis (their scale differs)."""
    twin = twin or ax.twinx()
    pts = [(x, v) for x, v in zip(xs, values) if v is not None]
    if pts:
        twin.scatter([x for x, _ in pts], [v for _, v in pts], marker=marker, color=color, label=label, zorder=4)
        twin.set_ylim(*y_limits([v for _, v in pts]))
    twin.set_ylabel("paper mAP (%), MS-COCO")
    return twin


def _overlay_paper(ax: Any, curve: Curve, numeric: bool, xs: Sequence[float]) -> Any:
    """Draw the paper's values (secondary axis, returned) or its chosen value (None)."""
    chosen = pv.CHOSEN_HPARAMS.get((curve.method, curve.axis))
    values = [v for v, _ in curve.points]
    if curve.method == "csra" and curve.axis == "heads":
        twin = ax.twinx()
        heads = [float(c.split("=")[1]) for c in pv.CSRA_T7.columns]
        for (row, paper), color in zip(pv.CSRA_T7.rows, ("tab:orange", "tab:green")):
            twin.plot(heads, paper, linestyle="--", marker="s", color=color, label=f"paper Table 7, {row}")
        twin.set_ylim(*y_limits([v for _, paper in pv.CSRA_T7.rows for v in paper]))
        twin.set_ylabel("paper mAP (%), MS-COCO")
        return twin
    elif curve.method == "csra" and curve.axis == "normalisation":
        twin = None
        with_n = dict(pv.CSRA_T8.rows)
        for col, (marker, color) in zip(pv.CSRA_T8.columns, (("s", "tab:orange"), ("D", "tab:green"))):
            i = pv.CSRA_T8.columns.index(col)
            paper = [with_n["with normalisation" if v else "without normalisation"][i] for v in values]
            twin = _paper_twin(ax, [x + PAPER_OFFSET * (i + 1) for x in xs], paper,
                               f"paper Table 8 (MS-COCO, ResNet-101 {col})", color, marker, twin)
        return twin
    elif (curve.method, curve.axis) in _PAPER_POINTS:
        table, names, label = _PAPER_POINTS[(curve.method, curve.axis)]
        rows = dict(table.rows)
        paper = [rows[names[v]][0] if v in names and names[v] in rows else None for v in values]
        return _paper_twin(ax, [x + (0 if numeric else PAPER_OFFSET) for x in xs], paper, label)
    elif curve.method == "csra" and curve.axis == "lambda" and numeric:
        for lam, who in ((0.1, "ResNet-cut"), (1.0, "VIT-L16")):
            ax.axvline(lam, linestyle=":", color="gray")
            ax.annotate(f"paper peak: {who}", (lam, ax.get_ylim()[0]), fontsize=6, rotation=90,
                        va="bottom", ha="right")
    elif chosen is not None and numeric:
        ax.axvline(chosen, linestyle=":", color="gray", label=f"paper's choice {chosen:g} (Fig. 2 gives no numbers)")
    return None


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
    ax.set_ylim(*y_limits(span))
    ax.set_xlabel("Lambda (score = avg + Lambda * max)")
    ax.set_ylabel("test mAP gain (points), ours")
    twin = ax.twinx()
    lams = [values[1] for _, values in pv.CSRA_T1.rows]
    paper_gains = [values[2] - values[0] for _, values in pv.CSRA_T1.rows]
    twin.scatter(lams, paper_gains, marker="x", color="gray", label="paper Table 1 (tuned Lambda, gain)")
    twin.set_ylim(*y_limits(paper_gains + [0.0]))
    align_zero(ax, twin)  # the paper's 0 at the height of ours
    twin.set_ylabel("paper gain (points)")
    wrapped_title(ax, f"Training-free trick vs Lambda ({suite})")
    legend_below(fig, [ax, twin])
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
            sweep_figure(curve, path, f"\n{failed}/{len(runs)} runs failed to train: no evidence" if failed else "")
            out.append((f"{reference}: {method} mAP vs {axis} (`{curve.suite}`)", path))
    for suite in sorted(data.suites):
        trick = figures_dir / f"training-free-lambda-{suite}.png"
        if trick_figure(data, suite, trick):
            out.append((f"CSRA Table 1 / Fig. 1: training-free trick gain vs Lambda (`{suite}`)", trick))
    return out
