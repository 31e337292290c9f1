"""The rules of the claims ledger and the checks that apply them (bench.report.claims assembles the ledger).

Text claims are listed in :data:`bench.report.claims_text.TEXT_CLAIMS` (paper, where, claim, check);
every table cell of :mod:`bench.report.paper_values` is a claim too (:func:`table_cell_claims`). A
check reads the records and returns a :class:`Verdict` (what we measured, status).

The rules, written once here and applied to every claim:

1. **Matching evidence.** A claim is decided by the comparison the paper made: an ablation
   claim by the sweep that varies that axis of that method (:data:`report_common.SWEEP_AXES`),
   a method-vs-method claim by the two rows of the main suite. When the matching ablation has
   no records the claim is pending with the command that makes them; a proxy across
   different methods is never used instead.
2. **Seeds and a test.** "reproduced" in any form needs at least :data:`MIN_SEEDS` seeds per
   side and a paired test passing the report's thresholds: a difference holds when the
   seed-paired t-test has p < ``stats.ALPHA`` and (when predictions exist) the paired image
   bootstrap 95 % CI excludes 0; "no difference" holds when the 95 % CIs of the difference lie
   within +-:data:`EQUIVALENCE_MARGIN` mAP. With one seed the verdict is at most
   ``indicative`` (holds / does not hold), never reproduced or not reproduced.
3. **Inference costs.** A claim about the inference model uses the inference-time parameters
   and MACs of the cost records (``results/cost/*.json``, mode ``inference``), not the
   parameters of the trained model (which may include training-only parts such as ProbMCL's MDN).
4. **Failed runs are no evidence.** A verdict resting on a run that failed to train
   (:meth:`report_common.ReportData.health`: test mAP within ``chance_margin`` of chance, or a
   collapse flagged by the method) is ``no evidence: failed run``, never ``not reproduced``.
   All predictions positive or negative at 0.5 makes that row's 0.5-threshold metrics no
   evidence (its ranking, mAP, still is). A run that did not
   converge (``record["convergence"]["converged"]`` false) is a weaker flag: the verdict
   stands and says it rests on it.
5. **Numbers and command.** Every verdict shows the numbers it rests on and the command that
   produced them.

Statuses (:data:`STATUSES`):

* ``reproduced`` -- a scale-independent fact holds (parameter counts equal within
  ``PARAM_TOLERANCE``, a cost count within ``COST_TOLERANCE`` of the paper's, the paper's own
  arithmetic), or a direction holds by rule 2 on paper-scale data;
* ``reproduced in direction at CPU scale`` -- rule 2 holds on the embedded data;
* ``indicative (1 seed, no test): holds`` / ``... does not hold`` -- one seed only;
* ``not reproduced`` -- with >= 2 seeds the claim fails rule 2 (the opposite, no significant
  difference, an inconclusive equivalence), or a value is outside its tolerance;
* ``no evidence: failed run`` -- rule 4;
* ``needs data or hardware not available here`` -- with the command that would settle it;
* ``pending: no records yet`` -- the records this project's suites produce are missing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence


from bench.report import paper_values as pv
from bench.evaluate import stats
from bench.report.common import (SWEEP_AXES, SWEEP_SUITES, ReportData, command_for, fmt, fmt_p, fmt_signed,
                                 hparam_text, is_cpu_scale)

REPRODUCED = "reproduced"
DIRECTION = "reproduced in direction at CPU scale"
INDICATIVE = "indicative (1 seed, no test): holds"
INDICATIVE_NOT = "indicative (1 seed, no test): does not hold"
NOT_REPRODUCED = "not reproduced"
FAILED = "no evidence: failed run"
NEEDS = "needs data or hardware not available here"
PENDING = "pending: no records yet"
STATUSES = (REPRODUCED, DIRECTION, INDICATIVE, INDICATIVE_NOT, NOT_REPRODUCED, FAILED, NEEDS, PENDING)
#: ``both``: the least supportive status wins, in this order (first = weakest).
STRENGTH = (PENDING, NOT_REPRODUCED, FAILED, INDICATIVE_NOT, NEEDS, INDICATIVE, DIRECTION, REPRODUCED)

MIN_SEEDS = 2  # seeds per side for any "reproduced"
EQUIVALENCE_MARGIN = 0.5  # mAP points: "no difference" when the 95 % CIs lie within +- this
PARAM_TOLERANCE = 0.005  # relative: "same parameters"
COST_TOLERANCE = 0.02  # relative: a params/GMAC count matches the paper's
RATIO_TOLERANCE = 5.0  # percentage points: a claimed "x % less parameters" matches
SMALL_OVERHEAD = 10.0  # percent: a "negligible/small" time overhead at CPU scale
ROBUST_LAMBDA = EQUIVALENCE_MARGIN  # varying vs fixed Lambda "insensitive to the hyperparameter"
MAIN_SUITE = "default"
RUN_MAIN = "bench run --suite default"
COST_CMD = pv.DATA_COMMANDS["cost"]
NOT_CONVERGED = "rests on not-converged run(s)"


class Verdict(tuple):
    """(measured, status) -- unpacks as a pair -- plus ``flag`` (e.g. the not-converged runs)."""

    flag: str

    def __new__(cls, measured: str, status: str, flag: str = "") -> "Verdict":
        obj = super().__new__(cls, (measured, status))
        obj.flag = flag
        return obj

    measured = property(lambda self: self[0])
    status = property(lambda self: self[1])


Check = Callable[[ReportData], Verdict]


@dataclass(frozen=True)
class Claim:
    paper: str
    where: str
    claim: str
    measured: str
    status: str
    flag: str = ""


# ----------------------------------------------------------------------------- the rules

def _who(record: Mapping[str, Any]) -> str:
    return f"{record['job']['label']} seed {record['job']['seed']}"


def failed_runs(data: ReportData, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Rule 4: 'row seed s: reason' for every record of the evidence that failed to train."""
    return [f"{_who(r)}: {'; '.join(data.health(r).failed)}" for r in records if data.health(r).is_failed]


def not_converged_runs(data: ReportData, records: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for r in records:
        h = data.health(r)
        if h.not_converged:
            out.append(f"{_who(r)} (last-quarter val gain {fmt(h.last_quarter_gain, 2)})")
    return out


def decide(kind: str, diff: float, n: int, significant: bool, ci: tuple[float, float], cpu: bool,
           extra_holds: bool = True) -> str:
    """Rule 2. kind 'greater': the claimed side is higher (diff = claimed - other); kind
    'equal': no difference (|diff| inside EQUIVALENCE_MARGIN, judged on the CI ``ci``)."""
    if kind == "greater":
        holds = diff > 0 and extra_holds
        if n < MIN_SEEDS:
            return INDICATIVE if holds else INDICATIVE_NOT
        return (DIRECTION if cpu else REPRODUCED) if holds and significant else NOT_REPRODUCED
    if n < MIN_SEEDS:
        return INDICATIVE if abs(diff) < EQUIVALENCE_MARGIN else INDICATIVE_NOT
    low, high = ci
    holds = -EQUIVALENCE_MARGIN < low and high < EQUIVALENCE_MARGIN
    return (DIRECTION if cpu else REPRODUCED) if holds else NOT_REPRODUCED


def judge(data: ReportData, records: Sequence[Mapping[str, Any]], text: str, command: str,
          status: Callable[[], str]) -> Verdict:
    """Rules 4 and 5 around a status: failed runs first, then the numbers, the command and the
    not-converged flag."""
    failed = failed_runs(data, records)
    if failed:
        return Verdict(f"{text}; no evidence: {'; '.join(failed)} (from `{command}`)", FAILED)
    flag = not_converged_runs(data, records)
    flag_text = f"{NOT_CONVERGED}: {', '.join(flag)}" if flag else ""
    measured = f"{text} (from `{command}`)" + (f"; {flag_text}" if flag_text else "")
    return Verdict(measured, status(), flag_text)


@dataclass(frozen=True)
class PairEvidence:
    """Seed-paired evidence of mAP(a) - mAP(b): the t-test, the image bootstrap, the records."""

    paired: stats.PairedTest
    bootstrap: stats.BootstrapResult | None
    records: tuple[Mapping[str, Any], ...]

    @property
    def significant(self) -> bool:
        boot_ok = self.bootstrap is None or self.bootstrap.significant
        return self.paired.significant and boot_ok

    @property
    def ci(self) -> tuple[float, float]:
        """The widest of the t and bootstrap 95 % CIs of the difference."""
        lows, highs = [self.paired.low], [self.paired.high]
        if self.bootstrap is not None:
            lows.append(self.bootstrap.low)
            highs.append(self.bootstrap.high)
        if any(math.isnan(x) for x in lows + highs):
            return (math.nan, math.nan)
        return (min(lows), max(highs))

    def text(self, a: str, b: str) -> str:
        p = self.paired
        boot = "" if self.bootstrap is None else (f", image bootstrap 95 % CI [{fmt_signed(self.bootstrap.low)}, "
                                                  f"{fmt_signed(self.bootstrap.high)}]")
        test = f"paired t p {fmt_p(p.p)}{boot}" if p.n >= MIN_SEEDS else "1 seed: no test"
        return f"{a} - {b}: {fmt_signed(p.mean_diff)} mAP over {p.n} seed(s) ({test})"


def pair_evidence(data: ReportData, suite: str, runs_a: Sequence[Mapping[str, Any]],
                  runs_b: Sequence[Mapping[str, Any]]) -> PairEvidence | None:
    """Pair two sets of records of one suite by seed; None when no seed is shared."""
    found = data.paired(suite, runs_a, runs_b)
    if found is None:
        return None
    seeds, paired, boot = found
    by_a = {r["job"]["seed"]: r for r in runs_a}
    by_b = {r["job"]["seed"]: r for r in runs_b}
    return PairEvidence(paired, boot, tuple(by_a[s] for s in seeds) + tuple(by_b[s] for s in seeds))


def row_evidence(data: ReportData, suite: str, a: str, b: str) -> PairEvidence | None:
    c = data.compare(suite, a, b)  # cached: the same numbers as the report's significance table
    if c is None:
        return None
    seeds = set(c.seeds)
    records = tuple(r for label in (a, b) for r in data.runs(suite, label) if r["job"]["seed"] in seeds)
    return PairEvidence(c.paired, c.bootstrap, records)


# ----------------------------------------------------------------------------- checks

def greater(a: str, b: str) -> Check:
    """mAP of method a > method b in the main suite (the two rows, paired over seeds and images)."""
    def check(data: ReportData) -> Verdict:
        la, lb = data.label_for(MAIN_SUITE, a), data.label_for(MAIN_SUITE, b)
        if la is None or lb is None:
            return Verdict(f"missing rows ({a if la is None else b}); run `{RUN_MAIN}`", PENDING)
        ev = row_evidence(data, MAIN_SUITE, la, lb)
        if ev is None:
            return Verdict(f"{la} and {lb} share no seed; run `{RUN_MAIN}`", PENDING)
        cpu = is_cpu_scale(data.suites[MAIN_SUITE])
        return judge(data, ev.records, ev.text(la, lb), RUN_MAIN,
                     lambda: decide("greater", ev.paired.mean_diff, ev.paired.n, ev.significant, ev.ci, cpu))
    return check


def best_of(a: str, others: tuple[str, ...]) -> Check:
    """Method a has the highest mAP of {a} + others present in the main suite, significantly
    above the runner-up. Alternatives that failed to train are no valid runner-up."""
    def check(data: ReportData) -> Verdict:
        la = data.label_for(MAIN_SUITE, a)
        present = [(m, data.label_for(MAIN_SUITE, m)) for m in others]
        present = [(m, lab) for m, lab in present if lab is not None]
        if la is None or not present:
            return Verdict(f"missing rows; run `{RUN_MAIN}`", PENDING)
        trained = [(m, lab) for m, lab in present
                   if not failed_runs(data, data.runs(MAIN_SUITE, lab))] or present
        runner_up = max(trained, key=lambda ml: (data.ci(MAIN_SUITE, ml[1]).mean, ml[0]))
        v = greater(a, runner_up[0])(data)
        return Verdict(f"best alternative here: {runner_up[1]}; {v.measured}", v.status, v.flag)
    return check


def _trick_map(trick: Mapping[str, Any], lam: float) -> float:
    return next(v for k, v in trick["test_mAP"].items() if float(k) == float(lam))


def _weakest(statuses: Sequence[str]) -> str:
    return min(statuses, key=STRENGTH.index)


def _per_label(data: ReportData, kind: str, value: Callable[[Mapping[str, Any]], tuple[float, float]],
               threshold_text: str) -> Verdict:
    """A claim about every model with the training-free trick: one paired decision per row of
    the main suite; rows that failed to train are excluded (no evidence), all failed = FAILED."""
    runs = [r for r in data.suites.get(MAIN_SUITE, []) if r.get("training_free")]
    if not runs:
        return Verdict(f"no training-free records; run `{RUN_MAIN}`", PENDING)
    cpu = is_cpu_scale(data.suites[MAIN_SUITE])
    parts, statuses, excluded, flags = [], [], [], []
    for label in sorted({r["job"]["label"] for r in runs}):
        mine = [r for r in runs if r["job"]["label"] == label]
        failed = failed_runs(data, mine)
        if failed:
            excluded.append(f"{label} (failed run: {failed[0]})")
            continue
        pairs = [value(r["training_free"]) for r in mine]
        test = stats.paired_t([p[0] for p in pairs], [p[1] for p in pairs])
        statuses.append(decide(kind, test.mean_diff, test.n, test.significant, (test.low, test.high), cpu))
        ci = "" if test.n < MIN_SEEDS else f", 95 % CI [{fmt_signed(test.low)}, {fmt_signed(test.high)}]"
        parts.append(f"{label} {fmt_signed(test.mean_diff)} ({test.n} seeds, p {fmt_p(test.p)}{ci})")
        flags += not_converged_runs(data, mine)
    text = "; ".join(parts) + threshold_text + (f"; excluded, no evidence: {', '.join(excluded)}" if excluded else "")
    if not statuses:
        return Verdict(f"{text} (from `{RUN_MAIN}`)", FAILED)
    flag = f"{NOT_CONVERGED}: {', '.join(flags)}" if flags else ""
    return Verdict(f"{text} (from `{RUN_MAIN}`)" + (f"; {flag}" if flag else ""), _weakest(statuses), flag)


def trick_gain(kind: str) -> Check:
    """Every trained model with a linear classifier gains from the training-free trick
    (varying = the validation-selected Lambda, fixed = the backbone's fixed Lambda)."""
    def check(data: ReportData) -> Verdict:
        def gain(t: Mapping[str, Any]) -> tuple[float, float]:
            lam = t["val_selected_lambda"] if kind == "varying" else t["fixed_lambda"]
            return _trick_map(t, lam), t["baseline_test_mAP"]
        return _per_label(data, "greater", gain, "")
    return check


def trick_robust(data: ReportData) -> Verdict:
    def gap(t: Mapping[str, Any]) -> tuple[float, float]:
        return _trick_map(t, t["val_selected_lambda"]), _trick_map(t, t["fixed_lambda"])
    return _per_label(data, "equal", gap, f" (varying - fixed; equivalence margin +-{EQUIVALENCE_MARGIN:g} points)")


def curve_check(method: str, axis: str, rule: str, at: Any = None) -> Check:
    """An ablation claim, decided on the sweep that varies ``axis`` of ``method`` (rule 1):
    'argmax' (the value ``at`` is best, significantly above the runner-up), 'low_better'
    (smallest value > largest), 'high_better' (largest > smallest), 'increasing' (Kendall tau
    of the means > 0 and largest > smallest), 'all_above_baseline' (the lowest point above the
    baseline row), 'flat' (first vs last within the equivalence margin)."""
    def check(data: ReportData) -> Verdict:
        names = next(n for m, n, a, _ in SWEEP_AXES if m == method and a == axis)
        curves = data.curves(method, names, axis, "")
        if not curves:
            suite = SWEEP_SUITES.get((method, axis))
            how = f"run `bench sweep sweeps/{suite}.yaml`" if suite else "no sweep file varies it yet"
            return Verdict(f"no {method} {axis} sweep records; {how}", PENDING)
        curve = curves[0]
        command = command_for(curve.suite)
        cpu = is_cpu_scale(data.suites[curve.suite])
        points = curve.ci()
        means = {v: ci.mean for v, ci in points}
        values = [v for v, _ in points]
        shown = ", ".join(f"{hparam_text(v)}: {fmt(ci.mean)} ({ci.n} seed{'s' if ci.n != 1 else ''})"
                          for v, ci in points)
        prefix = f"`{curve.suite}` {curve.hparam}: {shown}"
        every = [r for _, rs in curve.runs for r in rs]

        def pair(x: Any, y: Any) -> PairEvidence | None:
            return pair_evidence(data, curve.suite, curve.records_at(x), curve.records_at(y))

        if rule == "all_above_baseline":
            base_suite = curve.suite if data.label_for(curve.suite, "baseline") else MAIN_SUITE
            base = data.label_for(base_suite, "baseline")
            if base is None:
                return Verdict(f"{prefix}; no baseline row", PENDING)
            b = data.ci(base_suite, base)
            low = min(values, key=lambda v: means[v])
            lo_ci = dict(points)[low]
            n = min(lo_ci.n, b.n)
            sig = n >= MIN_SEEDS and lo_ci.low > b.high  # 95 % intervals do not overlap
            text = (f"{prefix}; lowest {hparam_text(low)} {fmt(lo_ci.mean)} vs baseline ({base_suite}) "
                    f"{fmt(b.mean)} ({b.n} seeds; above when the 95 % intervals do not overlap)")
            records = every + data.runs(base_suite, base)
            return judge(data, records, text, f"{command}; {command_for(base_suite)}",
                         lambda: decide("greater", lo_ci.mean - b.mean, n, sig, (math.nan, math.nan), cpu))
        if rule == "argmax":
            if at not in values:
                return Verdict(f"{prefix}; the paper's value {hparam_text(at)} was not swept", PENDING)
            best = max(values, key=lambda v: means[v])
            other = max((v for v in values if v != at), key=lambda v: means[v]) if best == at else best
            kind, (x, y), extra = "greater", (at, other), True
            what = f"best at {hparam_text(best)}; {hparam_text(at)} vs {'runner-up' if best == at else 'best'}"
        elif rule in ("low_better", "high_better", "increasing"):
            first, last = values[0], values[-1]
            x, y = (first, last) if rule == "low_better" else (last, first)
            kind, extra = "greater", True
            what = f"{hparam_text(x)} vs {hparam_text(y)}"
            if rule == "increasing":
                tau = stats.kendall_tau([float(v) for v in values], [means[v] for v in values])
                extra = tau > 0
                what = f"Kendall tau {fmt(tau, 2)}; {what}"
        else:  # flat
            x, y, kind, extra = values[0], values[-1], "equal", True
            what = (f"{hparam_text(x)} vs {hparam_text(y)} (no difference when the 95 % CIs lie within "
                    f"+-{EQUIVALENCE_MARGIN:g})")
        ev = pair(x, y)
        if ev is None:
            return Verdict(f"{prefix}; {hparam_text(x)} and {hparam_text(y)} share no seed", PENDING)
        text = f"{prefix}; {what}: {ev.text(hparam_text(x), hparam_text(y))}"
        return judge(data, every, text, command,
                     lambda: decide(kind, ev.paired.mean_diff, ev.paired.n, ev.significant, ev.ci, cpu, extra))
    return check


def ablation_greater(method: str, axis: str, better: Any, worse: Any) -> Check:
    """mAP at ``better`` > at ``worse`` on the sweep that varies ``axis`` of ``method`` (rule 1)."""
    def check(data: ReportData) -> Verdict:
        names = next(n for m, n, a, _ in SWEEP_AXES if m == method and a == axis)
        curves = data.curves(method, names, axis, "")
        suite = SWEEP_SUITES.get((method, axis), "")
        if not curves or not curves[0].records_at(better) or not curves[0].records_at(worse):
            return Verdict(f"no {method} {axis} ablation records for {hparam_text(better)} and {hparam_text(worse)}; "
                           f"run `bench sweep sweeps/{suite}.yaml`", PENDING)
        curve = curves[0]
        ev = pair_evidence(data, curve.suite, curve.records_at(better), curve.records_at(worse))
        if ev is None:
            return Verdict(f"`{curve.suite}`: {hparam_text(better)} and {hparam_text(worse)} share no seed", PENDING)
        cpu = is_cpu_scale(data.suites[curve.suite])
        text = f"`{curve.suite}` {curve.hparam}: {ev.text(hparam_text(better), hparam_text(worse))}"
        return judge(data, ev.records, text, command_for(curve.suite),
                     lambda: decide("greater", ev.paired.mean_diff, ev.paired.n, ev.significant, ev.ci, cpu))
    return check


def node_features(better: str, worse: str) -> Check:
    """IML-GCN Table 3: GCN input features ``better`` > ``worse`` on the node-feature ablation."""
    return ablation_greater("imlgcn", "nodes", better, worse)


def _resolved(method: str, hp: Mapping[str, Any]) -> dict[str, Any]:
    try:
        import methods

        return {**methods.get(method).defaults, **dict(hp or {})}
    except Exception:  # noqa: BLE001  (an unknown method: its own hparams only)
        return dict(hp or {})


def _inference_rows(data: ReportData, method: str,
                    match: Callable[[Mapping[str, Any]], bool] | None) -> list[tuple[str, Mapping[str, Any]]]:
    out = []
    for name in sorted(data.costs):
        for row in data.costs[name].get("rows") or []:
            if (isinstance(row, Mapping) and row.get("method") == method and row.get("mode", "inference") == "inference"
                    and row.get("params_m") is not None and not row.get("error")
                    and (match is None or match(_resolved(method, row.get("hparams") or {})))):
                out.append((name, row))
    return out


def params_equal(a: str, b: str, a_match: Callable[[Mapping[str, Any]], bool] | None = None) -> Check:
    """Rule 3: the INFERENCE parameter counts of a and b (cost records, same cost file, backbone
    and resolution) agree within PARAM_TOLERANCE. Without an inference cost row for a, the
    trained model's parameters from the records are used and the verdict says so."""
    def check(data: ReportData) -> Verdict:
        pairs = []
        for name, ra in _inference_rows(data, a, a_match):
            for name_b, rb in _inference_rows(data, b, None):
                if name_b == name and (rb.get("backbone"), rb.get("resolution")) == (ra.get("backbone"), ra.get("resolution")):
                    pairs.append((name, ra, rb))
                    break
        if pairs:
            parts, ok = [], True
            for name, ra, rb in pairs:
                pa, pb = float(ra["params_m"]), float(rb["params_m"])
                rel = abs(pa - pb) / pb
                ok &= rel <= PARAM_TOLERANCE
                parts.append(f"{ra.get('backbone')} @ {ra.get('resolution')} px: {a} {fmt(pa, 4)} M vs {b} "
                             f"{fmt(pb, 4)} M ({fmt(100 * rel, 2)} %; `bench cost --suite {name}`)")
            return Verdict("inference-time parameters: " + "; ".join(parts),
                           REPRODUCED if ok else NOT_REPRODUCED)
        ra = _record_with(data, a, a_match)
        rb = _record_with(data, b, None)
        if ra is None or rb is None:
            return Verdict(f"no inference cost rows or records for {a} / {b}; run `{COST_CMD}`", PENDING)
        pa, pb = float(ra["model"]["params_m"]), float(rb["model"]["params_m"])
        rel = abs(pa - pb) / pb
        return Verdict(f"no inference cost row for this {a} configuration: trained-model parameters from the "
                       f"records, {a} {fmt(pa, 4)} M vs {b} {fmt(pb, 4)} M ({fmt(100 * rel, 2)} %; from "
                       f"`{command_for(data.suite_of(ra))}`)", REPRODUCED if rel <= PARAM_TOLERANCE else NOT_REPRODUCED)
    return check


def _record_with(data: ReportData, method: str, match: Callable[[Mapping[str, Any]], bool] | None):
    for r in data.all_records():
        if (r["job"]["method"] == method and (r.get("model") or {}).get("params_m") is not None
                and (match is None or match(_resolved(method, r["job"].get("hparams") or {})))):
            return r
    return None


def _cost(data: ReportData, method: str, key: str, source: str = "") -> tuple[float, str, str] | None:
    """The inference cost row of ``method``: preferably the one whose ``paper_source`` names
    ``source`` (the configuration the paper measured), else the first one."""
    candidates = []
    for name in sorted(data.costs):
        for row in data.costs[name].get("rows") or []:
            if row.get("method") == method and row.get("mode", "inference") == "inference" and row.get(key) is not None:
                preferred = bool(source) and source in str(row.get("paper_source") or "")
                candidates.append((not preferred, float(row[key]), f"{row.get('backbone')} @ {row.get('resolution')} px",
                                   name))
    if not candidates:
        return None
    _, value, model, name = min(candidates, key=lambda c: c[0])
    return value, model, name


def cost_match(method: str, key: str, paper_value: float, source: str = "ProbMCL") -> Check:
    def check(data: ReportData) -> Verdict:
        found = _cost(data, method, key, source)
        if found is None:
            return Verdict(f"no cost record for {method}; run `{COST_CMD}`", PENDING)
        value, model, name = found
        rel = abs(value - paper_value) / paper_value
        return Verdict(f"{fmt(value, 2)} ({model}, inference; {fmt(100 * rel, 1)} % from the paper; "
                       f"`bench cost --suite {name}`)", REPRODUCED if rel <= COST_TOLERANCE else NOT_REPRODUCED)
    return check


def cost_fewer(method: str, other: str, claimed_percent: float, source: str, other_source: str) -> Check:
    """``method`` has ``claimed_percent`` % fewer parameters than ``other`` (cost records of the
    configurations whose paper_source contains ``source`` / ``other_source``)."""
    def check(data: ReportData) -> Verdict:
        a, b = _cost(data, method, "params_m", source), _cost(data, other, "params_m", other_source)
        if a is None or b is None:
            return Verdict(f"no cost records for {method} / {other}; run `{COST_CMD}`", PENDING)
        fewer = 100 * (1 - a[0] / b[0])
        return Verdict(f"{method} {fmt(a[0], 2)} M ({a[1]}) vs {other} {fmt(b[0], 2)} M ({b[1]}), inference: "
                       f"{fmt(fewer, 1)} % fewer (`bench cost --suite {a[2]}`)",
                       REPRODUCED if abs(fewer - claimed_percent) <= RATIO_TOLERANCE else NOT_REPRODUCED)
    return check


def time_overhead(a: str, b: str, key: str, a_match: Callable[[Mapping[str, Any]], bool] | None = None,
                  sweep: str = "") -> Check:
    """Timing overhead of a over the main suite's b (records' timing[key]) below SMALL_OVERHEAD %:
    holds when the 95 % t-interval of a's per-run overhead over b's mean lies below it
    (>= MIN_SEEDS runs per side; separate runs, so wall-time noise is in the interval)."""
    def check(data: ReportData) -> Verdict:
        ra = [r for r in data.all_records() if r["job"]["method"] == a
              and (a_match is None or a_match(r["job"].get("hparams") or {}))]
        rb = [r for r in data.suites.get(MAIN_SUITE, []) if r["job"]["method"] == b]
        if not ra or not rb:
            how = f"`bench sweep sweeps/{sweep}.yaml` and `{RUN_MAIN}`" if sweep else f"`{RUN_MAIN}`"
            return Verdict(f"missing {a} or {b} records; run {how}", PENDING)
        mean_b = sum(r["timing"][key] for r in rb) / len(rb)
        over = stats.mean_ci([100 * (r["timing"][key] / mean_b - 1) for r in ra])
        n = min(len(ra), len(rb))
        text = (f"{key}: {a} {fmt(sum(r['timing'][key] for r in ra) / len(ra), 1)} s ({len(ra)} runs) vs {b} "
                f"{fmt(mean_b, 1)} s ({len(rb)} runs): {fmt_signed(over.mean, 1)} %"
                + ("" if over.n < 2 else f" (95 % CI [{fmt_signed(over.low, 1)}, {fmt_signed(over.high, 1)}])")
                + f"; threshold {SMALL_OVERHEAD:g} %")
        cpu = True
        command = "; ".join(sorted({command_for(data.suite_of(r)) for r in ra + rb}))
        return judge(data, [], text, command, lambda: decide(
            "greater", SMALL_OVERHEAD - over.mean, n, n >= MIN_SEEDS and over.high < SMALL_OVERHEAD,
            (math.nan, math.nan), cpu))
    return check


def arithmetic(expression: str, computed: float, claimed: float, tolerance: float = 0.05) -> Check:
    def check(data: ReportData) -> Verdict:
        ok = abs(computed - claimed) <= tolerance
        text = f"paper's own numbers: {expression} = {fmt(computed, 2)}"
        return Verdict(text + ("" if ok else f", not {fmt(claimed, 2)} (paper-internal inconsistency)"),
                       REPRODUCED if ok else NOT_REPRODUCED)
    return check


def needs(dataset: str) -> Check:
    def check(data: ReportData) -> Verdict:
        return Verdict(f"`{pv.DATA_COMMANDS[dataset]}`", NEEDS)
    return check


def both(*checks: Check) -> Check:
    """All parts must hold; the least supportive status wins (:data:`STRENGTH`)."""
    def check(data: ReportData) -> Verdict:
        results = [c(data) for c in checks]
        status = _weakest([r[1] for r in results])
        flags = "; ".join(getattr(r, "flag", "") for r in results if getattr(r, "flag", ""))
        return Verdict(" / ".join(r[0] for r in results), status, flags)
    return check
