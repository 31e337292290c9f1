"""The rules of the claims ledger and the machinery every check shares (the checks themselves:
:mod:`bench.report.ledger.rows` for mAP claims, :mod:`bench.report.ledger.costs` for costs and
times; bench.report.ledger.claims assembles the ledger).

The rules, written once here and applied to every claim:

1. **Matching evidence.** A claim is decided by the comparison the paper made: an ablation
   claim by the sweep that varies that axis of that method (:data:`report_common.SWEEP_AXES`),
   a method-vs-method claim by the two rows of the main suite. Missing records = pending with
   the command that makes them; never a proxy across methods. Every other suite with evidence
   for the claim (imagenet-lite0: real ImageNet weights) is listed under it as a regime check.
2. **One test.** Every empirical verdict rests on the seed-paired t-test, with the paired image
   bootstrap beside it where predictions exist (or the verdict says why there is none). The
   ledger's deciding p-values are Holm-corrected together (:func:`holm_pass`). A difference
   holds when the Holm p < ``stats.ALPHA``, the sign is the claimed one and the bootstrap CI
   excludes 0. "No difference" holds when the TOST p against the claim's OWN margin (written
   once per claim) is below ALPHA after Holm. A non-significant result is
   ``inconclusive (underpowered)`` when the minimum detectable effect (80 % power) exceeds the
   paper's effect (or the claim states none), else ``not reproduced``. One seed = indicative.
3. **Inference costs** use the cost records' inference-time counts; training costs their
   training-mode (per stage) counts; times are compared like for like or are at most indicative.
4. **Failed runs are no evidence** (``no evidence: failed run``). A run whose EARLIER stage (e.g.
   ProbMCL's contrastive stage) did not converge makes the verdict ``inconclusive: earlier stage
   not converged``; a not-converged selection stage is a flag beside the verdict. Convergence
   is recomputed from each record's history (bench.evaluate.convergence.assess).
5. **Numbers and command** in every verdict; the paper's own arithmetic is a separate status.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from bench.evaluate import stats
from bench.report.collect import paper_values as pv
from bench.report.ledger import stage1
from bench.report.collect.records import ReportData, fmt, fmt_p, fmt_signed

REPRODUCED = "reproduced"
DIRECTION = "reproduced in direction at CPU scale"
INDICATIVE = "indicative (1 seed or single timings, no test): holds"
INDICATIVE_NOT = "indicative (1 seed or single timings, no test): does not hold"
#: not significant after Holm, the estimate in the claimed direction (the MDE at the Holm level shown)
LEANS = "as claimed in direction, not significant after Holm"
#: not significant after Holm, the estimate against the claim (e.g. a monotone opposite trend)
AGAINST = "against the claim in direction, not significant after Holm"
#: significant after Holm, in the opposite direction: the data contradict the claim
CONTRADICTED = "contradicted: significant in the opposite direction"
INCONCLUSIVE = "inconclusive (underpowered)"
STAGE_INCONCLUSIVE = "inconclusive: earlier stage not converged"
#: significant opposite result on runs whose earlier stage did not converge: measured, at this budget
STAGE_CONTRADICTED = "contradicted at the budgets run (earlier stage not converged)"
NOT_REPRODUCED = "not reproduced"
FAILED = "no evidence: failed run"
ARITH_OK = "paper arithmetic: consistent"
ARITH_BAD = "paper arithmetic: inconsistent"
NEEDS = "needs data or hardware not available here"
OUT_OF_SCOPE = "out of scope"
PENDING = "pending: no records yet"
#: the claim's configuration (e.g. the paper's H) was not run; the command that would run it is given
NOT_RUN = "not run at the paper's configuration"
STATUSES = (REPRODUCED, DIRECTION, INDICATIVE, INDICATIVE_NOT, LEANS, AGAINST, CONTRADICTED, INCONCLUSIVE,
            STAGE_INCONCLUSIVE, STAGE_CONTRADICTED, NOT_REPRODUCED, FAILED, ARITH_OK, ARITH_BAD, NEEDS, OUT_OF_SCOPE,
            PENDING, NOT_RUN)
#: ``both``: the least supportive status wins, in this order (first = weakest).
STRENGTH = (PENDING, NOT_RUN, CONTRADICTED, NOT_REPRODUCED, STAGE_CONTRADICTED, FAILED, STAGE_INCONCLUSIVE, AGAINST,
            INCONCLUSIVE, LEANS, INDICATIVE_NOT, NEEDS, OUT_OF_SCOPE, INDICATIVE, DIRECTION, REPRODUCED)
ARITHMETIC = (ARITH_OK, ARITH_BAD)
EMPIRICAL = (REPRODUCED, DIRECTION, INDICATIVE, INDICATIVE_NOT, LEANS, AGAINST, CONTRADICTED, INCONCLUSIVE,
             NOT_REPRODUCED)

MIN_SEEDS = 2  # seeds per side for any "reproduced"
PARAM_TOLERANCE = 0.005  # relative: "same parameters"
COST_TOLERANCE = 0.02  # relative: a params/GMAC count matches the paper's
RATIO_TOLERANCE = 5.0  # percentage points: a claimed "x % less parameters" matches
SMALL_OVERHEAD = 10.0  # percent: a "small" time overhead
MAIN_SUITE = "default"
REGIME_SUITES = ("imagenet-lite0",)  # suites listed under a claim as regime checks
RUN_MAIN = "bench run --suite default"
COST_CMD = pv.DATA_COMMANDS["cost"]
NOT_CONVERGED = "rests on not-converged run(s)"


class Verdict(tuple):
    """(measured, status) -- unpacks as a pair -- plus ``flag`` (e.g. the not-converged runs)
    and ``arith`` (the paper-arithmetic status of the claim's own numbers, '' if none)."""

    flag: str
    arith: str
    tests: tuple
    ours: str
    records: tuple

    def __new__(cls, measured: str, status: str, flag: str = "", arith: str = "", tests: Sequence["Test"] = (),
                ours: str = "", records: Sequence[Mapping[str, Any]] = ()) -> "Verdict":
        obj = super().__new__(cls, (measured, status))
        obj.flag, obj.arith, obj.tests, obj.ours, obj.records = flag, arith, tuple(tests), ours, tuple(records)
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
    arith: str = ""
    tests: tuple = ()
    ours: str = ""  # the measured value in one cell, for checks without a paired test (costs)
    records: tuple = ()  # the records the verdict rests on


# ----------------------------------------------------------------------------- records

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


def earlier_stage_runs(data: ReportData, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """'row seed s (contrastive: training-loss drop 11.7 % ...)' for records whose earlier stage did not converge."""
    return [f"{_who(r)} ({'; '.join(data.health(r).earlier_not_converged)})" for r in records
            if data.health(r).earlier_not_converged]


# ----------------------------------------------------------------------------- the test

@dataclass(frozen=True)
class Test:
    """One deciding test of the ledger. kind 'greater': diff = claimed side - other; 'equal': no
    difference within ``margin``. ``effect`` = the paper's effect (for the power rule)."""

    key: str
    kind: str
    diff: float
    n: int
    sd: float
    low: float
    high: float
    p: float  # two-sided t p ('greater') or TOST p ('equal')
    boot: stats.BootstrapResult | None = None
    effect: float | None = None
    margin: float | None = None
    extra_holds: bool = True
    no_boot: str = ""  # why there is no image bootstrap

    @classmethod
    def from_paired(cls, key: str, kind: str, paired: stats.PairedTest, boot: stats.BootstrapResult | None,
                    effect: float | None = None, margin: float | None = None, extra_holds: bool = True,
                    no_boot: str = "") -> "Test":
        sd = stats.mean_ci([paired.mean_diff]).sd
        if paired.n >= 2 and not math.isnan(paired.high):
            t = stats.scipy_stats.t.ppf(0.5 + stats.CONFIDENCE / 2, paired.n - 1)
            sd = (paired.high - paired.mean_diff) * math.sqrt(paired.n) / t
        p = paired.p
        if kind == "equal":
            p = stats.equivalence_p(paired.mean_diff, sd, paired.n, float(margin))
        return cls(key, kind, paired.mean_diff, paired.n, sd, paired.low, paired.high, p, boot, effect, margin,
                   extra_holds, no_boot)

    @property
    def mde(self) -> float:
        """At the uncorrected level (kept for the ``Test`` alone); the ledger uses :func:`mde_at`."""
        return stats.min_detectable_effect(self.sd, self.n)


def holm_level(data: ReportData, test: Test) -> float:
    """The level Holm compares this test's raw p with: ALPHA / (m - rank), rank = its 0-based
    place among the ledger's m raw p-values (ALPHA before the Holm pass has run)."""
    levels = getattr(data, "holm_levels", None) or {}
    return levels.get(test.key, stats.ALPHA)


def mde_at(data: ReportData, test: Test) -> float:
    """The minimum detectable effect (80 % power) at the level the decision uses (:func:`holm_level`)."""
    return stats.min_detectable_effect(test.sd, test.n, alpha=holm_level(data, test))


def adjusted_p(data: ReportData, test: Test) -> float:
    """The Holm-adjusted p of ``test`` once :func:`holm_pass` ran; else its raw p (registered)."""
    holm = getattr(data, "holm_adjusted", None)
    if holm is not None and test.key in holm:
        return holm[test.key]
    if test.n >= MIN_SEEDS and not math.isnan(test.p):
        data.__dict__.setdefault("ledger_tests", {})[test.key] = test.p
    return test.p


def holm_pass(data: ReportData, run: Callable[[], Any]) -> Any:
    """Run the ledger twice: once to collect every deciding test, then with Holm-adjusted p's."""
    data.holm_adjusted = None
    data.ledger_tests = {}
    run()
    keys = sorted(data.ledger_tests)
    adjusted = stats.holm([data.ledger_tests[k] for k in keys])
    data.holm_adjusted = dict(zip(keys, adjusted))
    data.holm_levels = stats.holm_levels({k: data.ledger_tests[k] for k in keys})
    return run()


def claimed_direction(test: Test) -> bool:
    """The estimate points the way the claim says (and the claim's extra condition, e.g. a
    positive Kendall tau for 'increasing', holds)."""
    return test.diff > 0 and test.extra_holds


def decide(data: ReportData, test: Test, cpu: bool) -> str:
    """Rule 2 on one test (Holm-adjusted p and the Holm-level MDE once the ledger's pass has run)."""
    won = DIRECTION if cpu else REPRODUCED
    if test.kind == "greater":
        if test.n < MIN_SEEDS:
            return INDICATIVE if claimed_direction(test) else INDICATIVE_NOT
        p = adjusted_p(data, test)
        boot_ok = test.boot is None or test.boot.significant
        if p < stats.ALPHA and boot_ok:
            return won if claimed_direction(test) else CONTRADICTED
        effect = None if test.effect is None else abs(test.effect)
        if effect is not None and mde_at(data, test) <= effect:
            return NOT_REPRODUCED  # powered for the paper's effect at the Holm level, and not finding it
        return LEANS if claimed_direction(test) else AGAINST
    margin = float(test.margin)
    if test.n < MIN_SEEDS:
        return INDICATIVE if abs(test.diff) < margin else INDICATIVE_NOT
    p = adjusted_p(data, test)
    boot_inside = test.boot is None or (-margin < test.boot.low and test.boot.high < margin)
    if p < stats.ALPHA and boot_inside:
        return won
    if test.low > margin or test.high < -margin:  # significantly outside the margin
        return NOT_REPRODUCED
    return INCONCLUSIVE


def test_text(data: ReportData, test: Test) -> str:
    """The test's figures beyond the difference: Holm p, the power, the margin."""
    if test.n < MIN_SEEDS:
        return ""
    holm = getattr(data, "holm_adjusted", None)
    m = len(holm) if holm else 0
    parts = [f"Holm p {fmt_p(adjusted_p(data, test))} over {m} ledger tests" if m else f"p {fmt_p(test.p)}"]
    if test.kind == "equal":
        parts.append(f"equivalence margin +-{test.margin:g} (the claim's own), TOST")
    level = holm_level(data, test)
    parts.append(f"minimum detectable effect {fmt(mde_at(data, test), 2)} (80 % power at the Holm level "
                 f"{fmt_p(level) if level >= 0.001 else f'{level:.1e}'}, {test.n} seeds)"
                 + ("" if test.effect is None else f" vs the paper's {test.effect:g}"))
    if test.boot is None and test.no_boot:
        parts.append(f"no image bootstrap: {test.no_boot}")
    return "; ".join(parts)


def judge(data: ReportData, records: Sequence[Mapping[str, Any]], text: str, command: str,
          tests: Sequence[Test], cpu: bool, regime: str = "") -> Verdict:
    """Rules 2, 4 and 5 around the tests: failed runs first, then the numbers, the command, the
    earlier-stage and not-converged flags, the regime checks."""
    records = list({r["job_id"]: r for r in records}.values())
    failed = failed_runs(data, records)
    if failed:
        return Verdict(f"{text}; no evidence: {'; '.join(failed)} (from `{command}`)", FAILED)
    status = weakest([decide(data, t, cpu) for t in tests]) if tests else PENDING
    named = len(tests) > 1
    extra = "; ".join(f"{t.key.split(':')[-1]}: {x}" if named else x for t in tests if (x := test_text(data, t)))
    flags = []
    earlier = earlier_stage_runs(data, records)
    if earlier:
        flags.append(f"earlier stage not converged: {', '.join(earlier)}")
        if any(r["job"]["method"] == "probmcl" for r in records) and (sweep := stage1.ledger_line(data)):
            flags.append(sweep)
        if status == CONTRADICTED:
            status = STAGE_CONTRADICTED
        elif status in EMPIRICAL:
            status = STAGE_INCONCLUSIVE
    slow = not_converged_runs(data, records)
    if slow:
        flags.append(f"{NOT_CONVERGED}: {', '.join(slow)}")
    flag = "; ".join(flags)
    measured = (f"{text}" + (f" [{extra}]" if extra else "") + f" (from `{command}`)"
                + (f"; {flag}" if flag else "") + (f"; {regime}" if regime else ""))
    return Verdict(measured, status, flag, tests=tests, records=records)


# ----------------------------------------------------------------------------- paired evidence

@dataclass(frozen=True)
class PairEvidence:
    """Seed-paired evidence of mAP(a) - mAP(b): the t-test, the image bootstrap, the records."""

    paired: stats.PairedTest
    bootstrap: stats.BootstrapResult | None
    records: tuple[Mapping[str, Any], ...]

    def test(self, key: str, kind: str = "greater", effect: float | None = None, margin: float | None = None,
             extra_holds: bool = True) -> Test:
        why = "" if self.bootstrap is not None else "predictions missing or on different test sets"
        return Test.from_paired(key, kind, self.paired, self.bootstrap, effect, margin, extra_holds, why)

    def text(self, a: str, b: str) -> str:
        p = self.paired
        boot = "" if self.bootstrap is None else (f", image bootstrap 95 % CI [{fmt_signed(self.bootstrap.low)}, "
                                                  f"{fmt_signed(self.bootstrap.high)}]")
        ci = f", t 95 % CI [{fmt_signed(p.low)}, {fmt_signed(p.high)}]" if p.n >= MIN_SEEDS else ""
        test = f"paired t p {fmt_p(p.p)}{ci}{boot}" if p.n >= MIN_SEEDS else "1 seed: no test"
        return f"{a} - {b}: {fmt_signed(p.mean_diff)} mAP over {p.n} seed(s) ({test})"


def pair_evidence(data: ReportData, suite: str, runs_a: Sequence[Mapping[str, Any]],
                  runs_b: Sequence[Mapping[str, Any]]) -> PairEvidence | None:
    """Pair two sets of records by seed; None when no seed is shared."""
    found = data.paired(suite, runs_a, runs_b)
    if found is None:
        return None
    seeds, paired, boot = found
    by_a = {r["job"]["seed"]: r for r in runs_a}
    by_b = {r["job"]["seed"]: r for r in runs_b}
    return PairEvidence(paired, boot, tuple(by_a[s] for s in seeds) + tuple(by_b[s] for s in seeds))


def row_evidence(data: ReportData, suite: str, a: str, b: str) -> PairEvidence | None:
    return pair_evidence(data, suite, data.runs(suite, a), data.runs(suite, b))


def regime_checks(data: ReportData, method_a: str, method_b: str) -> str:
    """The same comparison on every regime suite (listed, never deciding)."""
    parts = []
    for suite in REGIME_SUITES:
        la, lb = data.label_for(suite, method_a), data.label_for(suite, method_b)
        ev = row_evidence(data, suite, la, lb) if la and lb else None
        if ev is None:
            continue
        flags = [f for f in (f"{len(not_converged_runs(data, ev.records))}/{len(ev.records)} runs not converged"
                             if not_converged_runs(data, ev.records) else "",) if f]
        parts.append(f"`{suite}` regime check (ImageNet-pretrained weights; listed, not deciding): "
                     f"{ev.text(la, lb)}" + (f", {', '.join(flags)}" if flags else ""))
    return "; ".join(parts)


# ----------------------------------------------------------------------------- combinators

def weakest(statuses: Sequence[str]) -> str:
    return min(statuses, key=STRENGTH.index)


def arithmetic(expression: str, computed: float, claimed: float, tolerance: float = 0.05) -> Check:
    """The paper's own arithmetic: its own status (ARITH_OK / ARITH_BAD), never an empirical one."""
    def check(data: ReportData) -> Verdict:
        ok = abs(computed - claimed) <= tolerance
        text = f"paper's own numbers: {expression} = {fmt(computed, 2)}"
        status = ARITH_OK if ok else ARITH_BAD
        return Verdict(text + ("" if ok else f", not {fmt(claimed, 2)} (paper-internal inconsistency)"),
                       status, arith=status)
    return check


def needs(dataset: str) -> Check:
    def check(data: ReportData) -> Verdict:
        return Verdict(f"`{pv.DATA_COMMANDS[dataset]}`", NEEDS)
    return check


def out_of_scope(why: str) -> Check:
    def check(data: ReportData) -> Verdict:
        return Verdict(f"{OUT_OF_SCOPE}: {why}", OUT_OF_SCOPE)
    return check


def both(*checks: Check) -> Check:
    """All parts must hold; the least supportive EMPIRICAL status wins (:data:`STRENGTH`); the
    paper-arithmetic parts give the claim's separate ``arith`` status."""
    def check(data: ReportData) -> Verdict:
        results = [c(data) for c in checks]
        empirical = [r[1] for r in results if r[1] not in ARITHMETIC]
        arith = [r[1] for r in results if r[1] in ARITHMETIC]
        arith_status = (ARITH_BAD if ARITH_BAD in arith else ARITH_OK) if arith else ""
        status = weakest(empirical) if empirical else arith_status
        flags = "; ".join(getattr(r, "flag", "") for r in results if getattr(r, "flag", ""))
        tests = tuple(t for r in results for t in getattr(r, "tests", ()))
        ours = "; ".join(o for r in results if (o := getattr(r, "ours", "")))
        records = tuple(x for r in results for x in getattr(r, "records", ()))
        return Verdict(" / ".join(r[0] for r in results), status, flags, arith_status, tests, ours, records)
    return check
