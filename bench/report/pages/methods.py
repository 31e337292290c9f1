"""The methods tables of REPORT.md (one per main suite): every row's metrics over seeds, its
convergence figures and flags, the machine it was made on, and the seeds-and-significance table
(seed-paired t-test and image bootstrap, Holm-corrected over the table's pairs like the ledger).
The legend of each table kind is written once (:func:`legend`)."""
from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

from bench.evaluate import convergence, stats
from bench.report.collect.configurations import machine, suite_machine  # noqa: F401 (re-exported)
from bench.report.ledger import claims
from bench.report.collect.records import (CONVERGED_GAIN, STALE_MARK, ReportData, fmt, fmt_ci, fmt_p, fmt_signed, md_table,
                                 setting_text, test_metric)

SUMMARY_METRICS = ("mAP", "CF1", "OF1")
TUNED_RULES = (("global", "val-tuned global"), ("per_class", "val-tuned per class"))
TUNED_METRICS = ("CP", "CR", "CF1", "OP", "OR", "OF1")


def tuned_metric(record: dict, rule: str, key: str) -> float:
    """A threshold-tuned test metric (record["metrics"]["selected"]["test_tuned"][rule][key]); NaN if absent."""
    tuned = (record["metrics"]["selected"].get("test_tuned") or {}).get(rule) or {}
    value = tuned.get(key)
    return float("nan") if value is None else float(value)


def _flags(data: ReportData, runs: list[dict]) -> str:
    """Failed / collapsed / not-converged / stale, with the seeds concerned."""
    parts = []
    failed = [r for r in runs if data.health(r).is_failed]
    if failed:
        reasons = sorted({reason.split(" (")[0] for r in failed for reason in data.health(r).failed})
        parts.append(f"**failed run** ({len(failed)}/{len(runs)} seeds: {'; '.join(reasons)})")
    collapsed = [r for r in runs if isinstance(r.get("collapse"), dict) and r["collapse"].get("collapsed")]
    if collapsed and not failed:
        parts.append(f"collapsed ({len(collapsed)}/{len(runs)} seeds)")
    degenerate = [r for r in runs if data.health(r).degenerate_at_threshold and not data.health(r).is_failed]
    if degenerate:
        parts.append(f"0.5-threshold metrics uninformative ({len(degenerate)}/{len(runs)} seeds: "
                     f"{data.health(degenerate[0]).degenerate_at_threshold[0].split(' (')[0]})")
    earlier = [r for r in runs if data.health(r).earlier_not_converged]
    if earlier:
        parts.append(f"**earlier stage not converged** ({len(earlier)}/{len(runs)} seeds: "
                     f"{data.health(earlier[0]).earlier_not_converged[0].split(':')[0]})")
    slow = [r for r in runs if data.health(r).not_converged]
    if slow:
        parts.append(f"not converged ({len(slow)}/{len(runs)} seeds)")
    if len(runs) == 1:
        parts.append("1 seed: no test")
    words = claims.word_vector_note(runs[0])
    if words:
        parts.append(words)
    stale = [r for r in runs if data.health(r).stale]
    if stale and len(stale) < len(runs):  # all stale: the row's mark says it
        parts.append(f"stale {STALE_MARK} ({len(stale)}/{len(runs)} seeds)")
    return "; ".join(parts) or "—"


def _earlier(data: ReportData, runs: list[dict]) -> str:
    """The earlier stages' convergence figure (training-loss drop, %) over seeds; '—' for one-stage rows."""
    drops = [s["value"] for r in runs for s in ((data.health(r).assessment or {}).get("earlier") or [])
             if s.get("value") is not None]
    if not drops:
        return "—"
    return f"{fmt(sum(drops) / len(drops), 1)} % (max {fmt(max(drops), 1)})"


def _gain(data: ReportData, runs: list[dict]) -> str:
    gains = [data.health(r).last_quarter_gain for r in runs]
    gains = [g for g in gains if g is not None]
    if not gains:
        return "—"
    mean = sum(gains) / len(gains)
    return fmt(mean, 2) + ("" if fmt(max(gains), 2) == fmt(mean, 2) else f" (max {fmt(max(gains), 2)})")


def _seconds(data: ReportData, suite: str, runs: Sequence[Mapping[str, Any]]) -> str:
    """Median train seconds over seeds, only for rows made on the suite's main machine."""
    if {machine(r) for r in runs} != {suite_machine(data, suite)}:
        return "— (other machine)"
    return fmt(statistics.median(r["timing"]["train_s"] for r in runs), 1)


def _machine_flag(data: ReportData, suite: str, runs: Sequence[Mapping[str, Any]]) -> str:
    other = sorted({machine(r) for r in runs} - {suite_machine(data, suite)})
    if not other:
        return ""
    return (f"made on {', '.join(other)} (the suite's other rows: {suite_machine(data, suite)}): mAP compared, "
            f"its {fmt(statistics.median(r['timing']['train_s'] for r in runs), 1)} train s/run not")


def section(data: ReportData, suite: str, with_legend: bool) -> list[str]:
    """One suite's methods table (+ the threshold table and the significance table)."""
    out = [f"## Methods under one budget (`{suite}`)", ""]
    if suite not in data.suites:
        return out + [f"No records yet. Produce them with `bench run --suite {suite}`.", ""]
    out += [setting_text(data.suites[suite]) + ".", ""]
    rows, tuned_rows, rule_text = [], [], ""
    for label in data.labels(suite):
        runs = data.runs(suite, label)
        stale = any(data.health(r).stale for r in runs)
        name = f"{label} {STALE_MARK}" if stale else label
        cells = [fmt_ci(data.ci(suite, label, "mAP"))]
        for key in ("CF1", "OF1"):
            cells.append(fmt_ci(data.ci(suite, label, key)))
            cells += [fmt_ci(stats.mean_ci([tuned_metric(r, rule, key) for r in runs])) for rule, _ in TUNED_RULES]
        last = stats.mean_ci([test_metric(r, "mAP", "last") for r in runs])
        flags = "; ".join(x for x in (_machine_flag(data, suite, runs), _flags(data, runs)) if x and x != "—")
        rows.append([name, runs[0]["job"]["method"], str(len(runs)), *cells, fmt_ci(last), _gain(data, runs),
                     _earlier(data, runs), fmt(runs[0].get("model", {}).get("params_m"), 3),
                     _seconds(data, suite, runs), flags or "—"])
        for rule, rule_name in TUNED_RULES:
            values = [fmt_ci(stats.mean_ci([tuned_metric(r, rule, k) for r in runs])) for k in TUNED_METRICS]
            if any(v != "—" for v in values):
                tuned_rows.append([name, rule_name, *values])
        rule_text = rule_text or next((str((r["metrics"]["selected"].get("test_tuned") or {}).get("rule") or "")
                                       for r in runs if r["metrics"]["selected"].get("test_tuned")), "")
    header = ["Row", "method", "seeds", "mAP"]
    for key in ("CF1", "OF1"):
        header += [f"{key} @0.5"] + [f"{key} {name}" for _, name in TUNED_RULES]
    out += [md_table(header + ["mAP (last epoch)", "val gain, last 25 % (points)",
                               "stage without validation: training-loss drop, last 25 %", "params (M, trained model)",
                               f"train s/run (median; {suite_machine(data, suite)} only)", "flags"], rows), ""]
    out += [legend(data, rule_text) if with_legend else "Legend: as for the `default` methods table above.", ""]
    if tuned_rows:
        out += ["Threshold-dependent test metrics at thresholds chosen on validation:", "",
                md_table(["Row", "threshold rule", *TUNED_METRICS], tuned_rows), ""]
    return out + _significance(data, suite, with_legend)


def legend(data: ReportData, rule_text: str = "") -> str:
    """The methods table's legend, defined once (convergence, flags, columns)."""
    cal = data.loss_calibration
    return ("Legend (methods tables): mean ± half-width of the 95 % t-interval over seeds (test split, epoch selected "
            "on validation; 'last epoch' = no selection). Thresholds: '@0.5' = the fixed 0.5 threshold; 'val-tuned "
            "global' = one threshold for all classes maximising validation CF1; 'val-tuned per class' = one "
            "threshold per class maximising its validation F1 (chosen on validation, applied to test"
            + (f"; the records: {rule_text}" if rule_text else "") + "). 'params' = the trained model's parameters "
            "(training-time heads included: ProbMCL's MDN, KMCL's decoder; the ledger's parameter claims use the "
            "inference model's counts from `results/cost/`); train s/run = wall-clock, shown only for rows made on "
            "the suite's main machine (another CPU moves time and, by float order, mAP slightly). "
            f"**Convergence**, recomputed from each record's history, one rule for every stage of every method: "
            f"{cal.rule()}. Power of the rule: {convergence.RULE_POWER}; {cal.power_text()}. "
            "Flags: **failed run** = no evidence (test mAP within "
            f"{_margin()} of chance, or collapse flagged by the method); '0.5-threshold metrics uninformative' = "
            "all predictions positive (or negative) at 0.5, so that row's CP/CR/CF1/OP/OR/OF1 @0.5 say nothing "
            f"(its mAP and val-tuned metrics stand); not converged = gain or trend at or above {CONVERGED_GAIN:g}; "
            "**earlier stage not converged** = a stage without validation fails the loss rule: the ledger "
            "withholds or qualifies verdicts on the row; word vectors = the measured cosine similarity of the "
            f"label vectors the row's GCN used; stale {STALE_MARK} = made by other code than the current one.")


def _margin() -> str:
    from bench.report.collect.records import CHANCE_FRACTION, CHANCE_MARGIN
    return f"max({CHANCE_MARGIN:g}, {CHANCE_FRACTION:g} x (100 - chance)) points"


def _pairs(labels: Sequence[str], data: ReportData, suite: str) -> list[tuple[str, str]]:
    """Each row vs the baseline row, and the ProbMCL row vs every other row."""
    base = data.label_for(suite, "baseline")
    prob = data.label_for(suite, "probmcl")
    pairs = [(label, base) for label in labels if base and label != base]
    pairs += [(prob, label) for label in labels if prob and label not in (prob, base)]
    return pairs


def _significance(data: ReportData, suite: str, with_legend: bool) -> list[str]:
    out = ["### Seeds and significance", ""]
    if with_legend:
        out += [f"Legend (significance tables): paired t-test over seeds (same seed = same data order and "
                f"initialisation) and a paired bootstrap over test images ({data.resamples} resamples, RNG seed "
                f"{stats.BOOTSTRAP_SEED}, the same resampled images for both rows and every seed pair). The t-test "
                "p-values of one table are Holm-corrected together (the ledger's procedure); a difference is called "
                f"significant when the Holm p < {stats.ALPHA} and the bootstrap 95 % CI excludes 0, otherwise the "
                "row says **no significant difference**.", ""]
    found = [c for a, b in _pairs(data.labels(suite), data, suite) if (c := data.compare(suite, a, b)) is not None]
    if not found:
        return out + ["Only one row: nothing to compare.", ""]
    holm = stats.holm([c.paired.p if c.paired.n >= 2 else float("nan") for c in found])
    rows = []
    for c, p_holm in zip(found, holm):
        boot = c.bootstrap
        rows.append([f"{c.a} - {c.b}", str(c.paired.n), fmt_signed(c.paired.mean_diff),
                     f"[{fmt_signed(c.paired.low)}, {fmt_signed(c.paired.high)}]", fmt_p(c.paired.p), fmt_p(p_holm),
                     DASH_IF(boot is None, lambda: f"[{fmt_signed(boot.low)}, {fmt_signed(boot.high)}]"),
                     _pair_verdict(data, suite, c, p_holm), _pair_flags(data, suite, c)])
    m = sum(c.paired.n >= 2 for c in found)
    return out + [md_table(["mAP difference", "seeds", "mean", "t 95 % CI", "t p", f"Holm p ({m} pairs)",
                            "bootstrap 95 % CI", "verdict", "flags"], rows), ""]


def _pair_flags(data: ReportData, suite: str, c: Any) -> str:
    """1 seed / not converged / earlier stage not converged, per side: the verdict's caveats."""
    parts = []
    if c.paired.n < 2:
        parts.append("**1 seed: no test, indicative only**")
    for label in (c.a, c.b):
        runs = data.runs(suite, label)
        slow = sum(data.health(r).not_converged for r in runs)
        early = sum(bool(data.health(r).earlier_not_converged) for r in runs)
        if slow:
            parts.append(f"**{label} not converged** ({slow}/{len(runs)})")
        if early:
            parts.append(f"**{label} earlier stage not converged** ({early}/{len(runs)})")
    return "; ".join(parts) or "—"


def _pair_verdict(data: ReportData, suite: str, c: Any, p_holm: float) -> str:
    """The comparison's verdict on the Holm p; a row that failed to train makes it no evidence (ledger rule 4)."""
    failed = [label for label in (c.a, c.b) if any(data.health(r).is_failed for r in data.runs(suite, label))]
    if failed:
        return f"no evidence: failed run ({', '.join(failed)})"
    if c.paired.n < 2:
        return c.verdict()
    boot_ok = c.bootstrap is None or c.bootstrap.significant
    if p_holm < stats.ALPHA and boot_ok:
        return f"{c.a if c.paired.mean_diff > 0 else c.b} higher"
    return "**no significant difference**"


def DASH_IF(missing: bool, text: Any) -> str:  # noqa: N802 (reads as a table cell)
    return "—" if missing else text()


