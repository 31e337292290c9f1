"""Ablation figures (PNG, Agg backend, byte-deterministic): our mAP over seeds with 95 % CI
error bars, the paper's values on a secondary axis or marked where the paper gives them."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench import paper_values as pv  # noqa: E402
from bench import stats  # noqa: E402
from bench.report_common import SWEEP_AXES, Curve, ReportData, hparam_text  # noqa: E402

#: PNG metadata without the matplotlib version or any timestamp: same inputs, same bytes.
PNG_METADATA = {"Software": None}
DPI = 90


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, metadata=PNG_METADATA, bbox_inches="tight")
    plt.close(fig)


def _errorbar(ax: Any, xs: Sequence[float], cis: Sequence[stats.MeanCI], label: str) -> None:
    means = [c.mean for c in cis]
    errs = [0.0 if math.isnan(c.half_width) else c.half_width for c in cis]
    ax.errorbar(xs, means, yerr=errs, marker="o", capsize=3, label=label, color="tab:blue")


def _numeric(curve: Curve) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in curve.points)


def sweep_figure(curve: Curve, path: Path) -> None:
    points = curve.ci()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    numeric = _numeric(curve)
    xs = [float(v) for v, _ in points] if numeric else list(range(len(points)))
    _errorbar(ax, xs, [c for _, c in points], f"ours ({curve.suite}), mean ± 95 % CI")
    if not numeric:
        ax.set_xticks(xs, [hparam_text(v) for v, _ in points])
    ax.set_xlabel(f"{curve.method} {curve.hparam}")
    ax.set_ylabel("test mAP (%), ours")
    _overlay_paper(ax, curve, numeric)
    ax.set_title(f"{curve.method}: mAP vs {curve.axis} ({curve.reference})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.28))  # below: never hides a point
    fig.tight_layout()
    _save(fig, path)


def _overlay_paper(ax: Any, curve: Curve, numeric: bool) -> None:
    chosen = pv.CHOSEN_HPARAMS.get((curve.method, curve.axis))
    if curve.method == "csra" and curve.axis == "heads":
        twin = ax.twinx()
        for (row, values), color in zip(pv.CSRA_T7.rows, ("tab:orange", "tab:green")):
            heads = [float(c.split("=")[1]) for c in pv.CSRA_T7.columns]
            twin.plot(heads, values, linestyle="--", marker="s", color=color, label=f"paper Table 7, {row}")
        twin.set_ylabel("paper mAP (%), MS-COCO")
        twin.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.44))
    elif curve.method == "csra" and curve.axis == "lambda" and numeric:
        for lam, who in ((0.1, "ResNet-cut"), (1.0, "VIT-L16")):
            ax.axvline(lam, linestyle=":", color="gray")
            ax.annotate(f"paper peak: {who}", (lam, ax.get_ylim()[0]), fontsize=6, rotation=90,
                        va="bottom", ha="right")
    elif chosen is not None and numeric:
        ax.axvline(chosen, linestyle=":", color="gray", label=f"paper's choice {chosen:g} (Fig. 2 gives no numbers)")
    elif curve.axis == "overlap":
        ax.annotate("paper: Jaccard 89.1, cosine 88.9 (MS-COCO)", (0.02, 0.95), xycoords="axes fraction",
                    fontsize=7, va="top")


def trick_figure(data: ReportData, suite: str, path: Path) -> bool:
    """Training-free trick: mAP gain over the same model vs Lambda, one line per model; the
    paper's Table 1 (varying-Lambda gain) as points on a secondary axis."""
    runs = [r for r in data.suites.get(suite, []) if r.get("training_free")]
    if not runs:
        return False
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    for label in sorted({r["job"]["label"] for r in runs}):
        mine = [r["training_free"] for r in runs if r["job"]["label"] == label]
        lambdas = sorted({float(k) for t in mine for k in t["test_mAP"]})
        cis = [stats.mean_ci([v - t["baseline_test_mAP"] for t in mine for k, v in t["test_mAP"].items()
                              if float(k) == lam]) for lam in lambdas]
        means = [c.mean for c in cis]
        errs = [0.0 if math.isnan(c.half_width) else c.half_width for c in cis]
        ax.errorbar(lambdas, means, yerr=errs, marker="o", capsize=3, label=f"ours: {label}")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("Lambda (score = avg + Lambda * max)")
    ax.set_ylabel("test mAP gain (points), ours")
    twin = ax.twinx()
    lams = [values[1] for _, values in pv.CSRA_T1.rows]
    gains = [values[2] - values[0] for _, values in pv.CSRA_T1.rows]
    twin.scatter(lams, gains, marker="x", color="gray", label="paper Table 1 (tuned Lambda, gain)")
    twin.set_ylabel("paper gain (points)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.28))
    twin.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.45, -0.28))
    ax.set_title(f"Training-free trick vs Lambda ({suite})", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return True


def all_figures(data: ReportData, figures_dir: Path) -> list[tuple[str, Path]]:
    """Write every figure; return (caption, path) in a fixed order."""
    out = []
    for method, names, axis, reference in SWEEP_AXES:
        for curve in data.curves(method, names, axis, reference):
            path = figures_dir / f"{method}-{axis}-{curve.suite}.png"
            sweep_figure(curve, path)
            out.append((f"{reference}: {method} mAP vs {axis} (`{curve.suite}`)", path))
    for suite in sorted(data.suites):
        trick = figures_dir / f"training-free-lambda-{suite}.png"
        if trick_figure(data, suite, trick):
            out.append((f"CSRA Table 1 / Fig. 1: training-free trick gain vs Lambda (`{suite}`)", trick))
    return out
