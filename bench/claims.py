"""The claims ledger: every numeric claim of the three papers, with a status decided by code.

Text claims are listed in :data:`TEXT_CLAIMS` (paper, where, claim, check); every table cell
of :mod:`bench.paper_values` is a claim too (:func:`table_cell_claims`). A check reads the
records and returns (what we measured, status). Statuses and their thresholds:

* ``reproduced`` -- a scale-independent fact holds: an architecture fact (parameter counts
  equal within ``PARAM_TOLERANCE``), a cost count within ``COST_TOLERANCE`` of the paper's,
  or the paper's own arithmetic; or a direction holds significantly on paper-scale data.
* ``reproduced in direction at CPU scale`` -- the claimed direction holds on the embedded
  data with the seed-paired t-test p < ``stats.ALPHA`` and (when predictions exist) the
  paired image bootstrap 95 % CI excluding 0.
* ``not reproduced`` -- the opposite holds significantly, no significant difference was
  found, or a measured value is outside its tolerance (the measured column says which).
* ``needs data or hardware not available here`` -- with the command that would settle it.
* ``pending: no records yet`` -- the records this suite should produce are missing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from bench import paper_values as pv
from bench import stats
from bench.report_common import (ReportData, fmt, fmt_p, fmt_signed, hparam_text, is_cpu_scale)

REPRODUCED = "reproduced"
DIRECTION = "reproduced in direction at CPU scale"
NOT_REPRODUCED = "not reproduced"
NEEDS = "needs data or hardware not available here"
PENDING = "pending: no records yet"
STATUSES = (REPRODUCED, DIRECTION, NOT_REPRODUCED, NEEDS, PENDING)

PARAM_TOLERANCE = 0.005  # relative: "same parameters"
COST_TOLERANCE = 0.02  # relative: a params/GMAC count matches the paper's
RATIO_TOLERANCE = 5.0  # percentage points: a claimed "x % less parameters" matches
SMALL_OVERHEAD = 10.0  # percent: a "negligible/small" time overhead at CPU scale
ROBUST_LAMBDA = 0.5  # mAP points: varying vs fixed Lambda "insensitive to the hyperparameter"
MAIN_SUITE = "default"
RUN_MAIN = "bench run --suite default"
COST_CMD = pv.DATA_COMMANDS["cost"]

Check = Callable[[ReportData], tuple[str, str]]


@dataclass(frozen=True)
class Claim:
    paper: str
    where: str
    claim: str
    measured: str
    status: str


# ----------------------------------------------------------------------------- checks

def _direction_status(diff: float, significant: bool, cpu: bool) -> str:
    if significant and diff > 0:
        return DIRECTION if cpu else REPRODUCED
    return NOT_REPRODUCED


def greater(a: str, b: str) -> Check:
    """mAP of method a > method b in the main suite (paired over seeds and images)."""
    def check(data: ReportData) -> tuple[str, str]:
        la, lb = data.label_for(MAIN_SUITE, a), data.label_for(MAIN_SUITE, b)
        if la is None or lb is None:
            return f"missing rows ({a if la is None else b}); run `{RUN_MAIN}`", PENDING
        c = data.compare(MAIN_SUITE, la, lb)
        boot = "" if c.bootstrap is None else (f", image bootstrap 95 % CI [{fmt_signed(c.bootstrap.low)}, "
                                               f"{fmt_signed(c.bootstrap.high)}]")
        text = (f"{la} - {lb}: {fmt_signed(c.paired.mean_diff)} mAP over {c.paired.n} seeds "
                f"(paired t p {fmt_p(c.paired.p)}{boot}): {c.verdict()}")
        return text, _direction_status(c.paired.mean_diff, c.significant, is_cpu_scale(data.suites[MAIN_SUITE]))
    return check


def best_of(a: str, others: tuple[str, ...]) -> Check:
    """Method a has the highest mAP of {a} + others present in the main suite, significantly
    above the runner-up."""
    def check(data: ReportData) -> tuple[str, str]:
        la = data.label_for(MAIN_SUITE, a)
        present = [(m, data.label_for(MAIN_SUITE, m)) for m in others]
        present = [(m, lab) for m, lab in present if lab is not None]
        if la is None or not present:
            return f"missing rows; run `{RUN_MAIN}`", PENDING
        runner_up = max(present, key=lambda ml: (data.ci(MAIN_SUITE, ml[1]).mean, ml[0]))
        measured, status = greater(a, runner_up[0])(data)
        return f"best alternative here: {runner_up[1]}; {measured}", status
    return check


def trick_gain(kind: str) -> Check:
    """Every model with a linear classifier gains from the training-free trick (varying = the
    validation-selected Lambda, fixed = the backbone's fixed Lambda)."""
    def check(data: ReportData) -> tuple[str, str]:
        runs = [r for r in data.suites.get(MAIN_SUITE, []) if r.get("training_free")]
        if not runs:
            return f"no training-free records; run `{RUN_MAIN}`", PENDING
        parts, ok = [], True
        for label in sorted({r["job"]["label"] for r in runs}):
            mine = [r["training_free"] for r in runs if r["job"]["label"] == label]
            lam = [t["val_selected_lambda"] if kind == "varying" else t["fixed_lambda"] for t in mine]
            gains = [_trick_map(t, x) for t, x in zip(mine, lam)]
            test = stats.paired_t(gains, [t["baseline_test_mAP"] for t in mine])
            ok &= test.mean_diff > 0 and test.significant
            parts.append(f"{label} {fmt_signed(test.mean_diff)} (p {fmt_p(test.p)})")
        return "; ".join(parts), (DIRECTION if ok else NOT_REPRODUCED)
    return check


def _trick_map(trick: Mapping[str, Any], lam: float) -> float:
    return next(v for k, v in trick["test_mAP"].items() if float(k) == float(lam))


def trick_robust(data: ReportData) -> tuple[str, str]:
    runs = [r for r in data.suites.get(MAIN_SUITE, []) if r.get("training_free")]
    if not runs:
        return f"no training-free records; run `{RUN_MAIN}`", PENDING
    gaps = {}
    for label in sorted({r["job"]["label"] for r in runs}):
        mine = [r["training_free"] for r in runs if r["job"]["label"] == label]
        gaps[label] = stats.mean_ci([_trick_map(t, t["val_selected_lambda"]) - _trick_map(t, t["fixed_lambda"])
                                     for t in mine]).mean
    text = "; ".join(f"{k}: varying - fixed {fmt_signed(v)}" for k, v in gaps.items())
    return text + f" (threshold {ROBUST_LAMBDA} points)", (
        DIRECTION if all(abs(v) <= ROBUST_LAMBDA for v in gaps.values()) else NOT_REPRODUCED)


def curve_check(method: str, axis: str, rule: str, at: float | None = None) -> Check:
    """A sweep claim: 'argmax' (best value == at), 'low_better' (mAP at the smallest value >
    at the largest), 'high_better' (largest > smallest), 'increasing' (Kendall tau > 0 and
    last > first), 'all_above_baseline', 'flat' (no paired difference significant)."""
    def check(data: ReportData) -> tuple[str, str]:
        from bench.report_common import SWEEP_AXES, SWEEP_SUITES
        names = next(n for m, n, a, _ in SWEEP_AXES if m == method and a == axis)
        curves = data.curves(method, names, axis, "")
        if not curves:
            suite = SWEEP_SUITES.get((method, axis))
            how = f"run `bench sweep sweeps/{suite}.yaml`" if suite else "no sweep file varies it yet"
            return f"no {method} {axis} sweep records; {how}", PENDING
        curve = curves[0]
        points = curve.ci()
        means = [ci.mean for _, ci in points]
        values = [v for v, _ in points]
        shown = ", ".join(f"{hparam_text(v)}: {fmt(ci.mean)}" for v, ci in points)
        if rule == "argmax":
            best = values[max(range(len(means)), key=lambda i: means[i])]
            ok = at in values and best == at
            verdict = f"best at {hparam_text(best)}"
        elif rule in ("low_better", "high_better"):
            first, last = curve.points[0][1], curve.points[-1][1]
            test = stats.paired_t(first, last) if len(first) == len(last) else stats.paired_t([means[0]], [means[-1]])
            sign = 1 if rule == "low_better" else -1
            ok = sign * test.mean_diff > 0 and test.significant
            verdict = f"smallest - largest {fmt_signed(test.mean_diff)} (p {fmt_p(test.p)})"
        elif rule == "increasing":
            tau = stats.kendall_tau([float(v) for v in values], means)
            ok = tau > 0 and means[-1] > means[0]
            verdict = f"Kendall tau {fmt(tau, 2)}"
        elif rule == "all_above_baseline":
            base = data.label_for(curve.suite, "baseline") or data.label_for(MAIN_SUITE, "baseline")
            suite = curve.suite if data.label_for(curve.suite, "baseline") else MAIN_SUITE
            if base is None:
                return f"{shown}; no baseline row", PENDING
            b = data.ci(suite, base).mean
            ok = all(m > b for m in means)
            verdict = f"baseline {fmt(b)}"
        else:  # flat
            first, last = curve.points[0][1], curve.points[-1][1]
            test = stats.paired_t(first, last) if len(first) == len(last) else stats.paired_t([0.0], [0.0])
            ok = not test.significant
            verdict = f"difference {fmt_signed(test.mean_diff)} (p {fmt_p(test.p)})"
        cpu = is_cpu_scale(data.suites[curve.suite])
        status = (DIRECTION if cpu else REPRODUCED) if ok else NOT_REPRODUCED
        return f"`{curve.suite}` {curve.hparam}: {shown}; {verdict}", status
    return check


def params_equal(a: str, b: str, a_match: Callable[[Mapping[str, Any]], bool] | None = None) -> Check:
    """Parameter counts (from the records) of a and b agree within PARAM_TOLERANCE."""
    def check(data: ReportData) -> tuple[str, str]:
        pa = _params(data, a, a_match)
        pb = _params(data, b, None)
        if pa is None or pb is None:
            return f"missing rows; run `{RUN_MAIN}`", PENDING
        rel = abs(pa - pb) / pb
        return (f"{a} {fmt(pa, 4)} M vs {b} {fmt(pb, 4)} M (relative difference {fmt(100 * rel, 2)} %)",
                REPRODUCED if rel <= PARAM_TOLERANCE else NOT_REPRODUCED)
    return check


def _params(data: ReportData, method: str, match: Callable[[Mapping[str, Any]], bool] | None) -> float | None:
    for r in data.all_records():
        if r["job"]["method"] == method and (match is None or match(r["job"].get("hparams") or {})):
            return float(r.get("model", {}).get("params_m"))
    return None


def _cost(data: ReportData, method: str, key: str, source: str = "") -> tuple[float, str] | None:
    """The inference cost row of ``method``: preferably the one whose ``paper_source`` names
    ``source`` (the configuration the paper measured), else the first one."""
    candidates = []
    for name in sorted(data.costs):
        for row in data.costs[name].get("rows") or []:
            if row.get("method") == method and row.get("mode", "inference") == "inference" and row.get(key) is not None:
                preferred = bool(source) and source in str(row.get("paper_source") or "")
                candidates.append((not preferred, float(row[key]), f"{row.get('backbone')} @ {row.get('resolution')} px"))
    if not candidates:
        return None
    _, value, model = min(candidates, key=lambda c: c[0])
    return value, model


def cost_match(method: str, key: str, paper_value: float, source: str = "ProbMCL") -> Check:
    def check(data: ReportData) -> tuple[str, str]:
        found = _cost(data, method, key, source)
        if found is None:
            return f"no cost record for {method}; run `{COST_CMD}`", PENDING
        value, model = found
        rel = abs(value - paper_value) / paper_value
        return (f"{fmt(value, 2)} ({model}; {fmt(100 * rel, 1)} % from the paper)",
                REPRODUCED if rel <= COST_TOLERANCE else NOT_REPRODUCED)
    return check


def cost_fewer(method: str, other: str, claimed_percent: float, source: str, other_source: str) -> Check:
    """``method`` has ``claimed_percent`` % fewer parameters than ``other`` (cost records of the
    configurations whose paper_source contains ``source`` / ``other_source``)."""
    def check(data: ReportData) -> tuple[str, str]:
        a, b = _cost(data, method, "params_m", source), _cost(data, other, "params_m", other_source)
        if a is None or b is None:
            return f"no cost records for {method} / {other}; run `{COST_CMD}`", PENDING
        fewer = 100 * (1 - a[0] / b[0])
        return (f"{method} {fmt(a[0], 2)} M ({a[1]}) vs {other} {fmt(b[0], 2)} M ({b[1]}): {fmt(fewer, 1)} % fewer",
                REPRODUCED if abs(fewer - claimed_percent) <= RATIO_TOLERANCE else NOT_REPRODUCED)
    return check


def time_overhead(a: str, b: str, key: str, a_match: Callable[[Mapping[str, Any]], bool] | None = None) -> Check:
    """Timing overhead of a over b (records' timing[key], mean over seeds) below SMALL_OVERHEAD %."""
    def check(data: ReportData) -> tuple[str, str]:
        ta = [r["timing"][key] for r in data.all_records() if r["job"]["method"] == a
              and (a_match is None or a_match(r["job"].get("hparams") or {}))]
        tb = [r["timing"][key] for r in data.suites.get(MAIN_SUITE, []) if r["job"]["method"] == b]
        if not ta or not tb:
            return f"missing {a} or {b} records", PENDING
        over = 100 * (sum(ta) / len(ta) / (sum(tb) / len(tb)) - 1)
        return (f"{key}: {a} {fmt(sum(ta) / len(ta), 1)} s vs {b} {fmt(sum(tb) / len(tb), 1)} s: "
                f"{fmt_signed(over, 1)} % (separate runs; wall time varies about 15 %; threshold {SMALL_OVERHEAD:g} %)",
                DIRECTION if over <= SMALL_OVERHEAD else NOT_REPRODUCED)
    return check


def arithmetic(expression: str, computed: float, claimed: float, tolerance: float = 0.05) -> Check:
    def check(data: ReportData) -> tuple[str, str]:
        ok = abs(computed - claimed) <= tolerance
        text = f"paper's own numbers: {expression} = {fmt(computed, 2)}"
        return (text + ("" if ok else f", not {fmt(claimed, 2)} (paper-internal inconsistency)"),
                REPRODUCED if ok else NOT_REPRODUCED)
    return check


def needs(dataset: str) -> Check:
    def check(data: ReportData) -> tuple[str, str]:
        return f"`{pv.DATA_COMMANDS[dataset]}`", NEEDS
    return check


def both(*checks: Check) -> Check:
    """All parts must hold; the weakest status wins."""
    def check(data: ReportData) -> tuple[str, str]:
        results = [c(data) for c in checks]
        order = {s: i for i, s in enumerate((PENDING, NOT_REPRODUCED, NEEDS, DIRECTION, REPRODUCED))}
        status = min((s for _, s in results), key=lambda s: order[s])
        return " / ".join(m for m, _ in results), status
    return check


from bench.claims_text import TEXT_CLAIMS  # noqa: E402  (the data uses the checks above)


def text_claims(data: ReportData) -> list[Claim]:
    out = []
    for paper, where, claim, check in TEXT_CLAIMS:
        measured, status = check(data)
        out.append(Claim(paper, where, claim, measured, status))
    return out


def table_cell_claims(data: ReportData) -> list[Claim]:
    """One claim per paper table cell: cost cells checked against the cost records, the rest
    need the paper's data (commands in paper_values.DATA_COMMANDS)."""
    methods = {"ML-GCN": "mlgcn", "CSRA": "csra", "ProbMCL": "probmcl", "TDRG": "tdrg"}
    out = []
    for v in pv.all_values():
        if v.dataset == "cost":
            measured, status = cost_match(methods[v.row], v.column, v.value)(data)
        else:
            measured, status = f"`{pv.DATA_COMMANDS[v.dataset]}`", NEEDS
        out.append(Claim(v.paper, f"{v.table}, row {v.row}, column {v.column}", f"{v.value:g}", measured, status))
    return out
