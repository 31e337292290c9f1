"""The ledger's mAP checks: method vs method (main suite), the training-free trick, ablation
curves; and the word-vector similarity flag of ML-GCN-style rows. Rules: bench.report.ledger.rules."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Mapping

import numpy as np

from bench.evaluate import stats
from bench.report.ledger.rules import (NOT_RUN, CONTRADICTED, STAGE_CONTRADICTED, EMPIRICAL, FAILED, STAGE_INCONCLUSIVE, MAIN_SUITE, MIN_SEEDS, PENDING, REGIME_SUITES, RUN_MAIN, Check,
                                 PairEvidence, Test, Verdict, decide, failed_runs, judge, not_converged_runs,
                                 pair_evidence, regime_checks, row_evidence, test_text, weakest, earlier_stage_runs)
from bench.report.collect.records import (SWEEP_AXES, SWEEP_SUITES, ReportData, command_for, fmt, fmt_p, fmt_signed, hparam_text,
                                 hparams, is_cpu_scale)

#: Two class names whose label vectors have at least this cosine count as near-synonyms for the
#: GCN: their node features barely differ, so the graph input carries little class identity.
NEAR_SYNONYM_COSINE = 0.9
WORD_SOURCES = ("glove50", "minilm")


# ----------------------------------------------------------------------------- word vectors

@lru_cache(maxsize=8)
def _similarity(source: str, classes: tuple[str, ...]) -> tuple[float, float, str, int] | str:
    try:
        from methods.embeddings import label_embeddings

        e = np.asarray(label_embeddings(source, list(classes), None), dtype=np.float64)
    except Exception as err:  # noqa: BLE001  (package missing: say what is missing)
        return f"label vectors `{source}` not loadable here ({type(err).__name__}: {str(err)[:80]})"
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = unit @ unit.T
    iu = np.triu_indices(len(classes), 1)
    pairs = sim[iu]
    top = int(np.argmax(pairs))
    pair = f"'{classes[iu[0][top]]}'/'{classes[iu[1][top]]}'"
    return float(pairs.mean()), float(pairs[top]), pair, int((pairs >= NEAR_SYNONYM_COSINE).sum())


def word_vector_note(record: Mapping[str, Any]) -> str:
    """'' unless the record's GCN nodes are word vectors; else the measured similarity figure of
    the label vectors the record used (or what is missing to measure it)."""
    hp = {**(record.get("hparams_resolved") or {}), **hparams(record)}
    source = hp.get("embeddings")
    uses_words = record["job"]["method"] == "mlgcn" or hp.get("node_features") == "word"
    if not uses_words or source not in WORD_SOURCES:
        return ""
    classes = tuple((record.get("data") or {}).get("classes") or ())
    if not classes:
        return f"word vectors `{source}`: the record names no classes, similarity not measurable"
    got = _similarity(source, classes)
    if isinstance(got, str):
        return got
    mean, top, pair, near = got
    total = len(classes) * (len(classes) - 1) // 2
    kind = "near-synonym class names" if near else "class names"
    return (f"word vectors `{source}` of {kind}: mean pairwise cosine {mean:.2f}, highest {pair} {top:.2f}, "
            f"{near}/{total} pairs >= {NEAR_SYNONYM_COSINE:g}")


def _onehot_control(data: ReportData, suite: str, method: str) -> str | None:
    for label in data.labels(suite):
        run = data.runs(suite, label)[0]
        if run["job"]["method"] == method and hparams(run).get("embeddings") == "onehot":
            return label
    return None


# ----------------------------------------------------------------------------- rows

def greater(a: str, b: str, effect: float | None = None) -> Check:
    """mAP of method a > method b in the main suite (paired over seeds and images). ``effect`` =
    the paper's claimed difference. When b's rows use word vectors of near-synonym class names
    and a one-hot control row of b exists, the claim must hold against the control too."""
    def check(data: ReportData) -> Verdict:
        la, lb = data.label_for(MAIN_SUITE, a), data.label_for(MAIN_SUITE, b)
        if la is None or lb is None:
            return Verdict(f"missing rows ({a if la is None else b}); run `{RUN_MAIN}`", PENDING)
        ev = row_evidence(data, MAIN_SUITE, la, lb)
        if ev is None:
            return Verdict(f"{la} and {lb} share no seed; run `{RUN_MAIN}`", PENDING)
        cpu = is_cpu_scale(data.suites[MAIN_SUITE])
        tests, text, records = [ev.test(f"{MAIN_SUITE}:{la}>{lb}", effect=effect)], ev.text(la, lb), list(ev.records)
        note = word_vector_note(data.runs(MAIN_SUITE, lb)[0])
        control = _onehot_control(data, MAIN_SUITE, b) if note and "near-synonym" in note else None
        if control and control != lb:
            cev = row_evidence(data, MAIN_SUITE, la, control)
            if cev is not None:
                tests.append(cev.test(f"{MAIN_SUITE}:{la}>{control}", effect=effect))
                records += cev.records
                text += f"; {lb} uses {note}, so the claim is judged against the one-hot control too: " + cev.text(
                    la, control)
        elif note:
            text += f"; {lb} uses {note} (no one-hot control row)"
        return judge(data, records, text, RUN_MAIN, tests, cpu, regime_checks(data, a, b))
    return check


def best_of(a: str, others: tuple[str, ...], effect: float | None = None) -> Check:
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
        v = greater(a, runner_up[0], effect)(data)
        return Verdict(f"best alternative here: {runner_up[1]}; {v.measured}", v.status, v.flag, tests=v.tests, records=v.records)
    return check


# ----------------------------------------------------------------------------- the trick

def _trick_map(trick: Mapping[str, Any], lam: float) -> float:
    return next(v for k, v in trick["test_mAP"].items() if float(k) == float(lam))


NO_TRICK_BOOT = "the records keep no per-image scores with the trick (predictions.npz holds the model's own scores)"


def _trick_suite(data: ReportData, suite: str, kind: str, value: Callable[[Mapping[str, Any]], tuple[float, float]],
                 effect: float | None, margin: float | None) -> tuple[list[str], list[str], list[str], list[Any], list[Test]]:
    """(texts, statuses, excluded, records, tests) of one suite's rows with the trick."""
    runs = [r for r in data.suites.get(suite, []) if r.get("training_free")]
    cpu = is_cpu_scale(data.suites.get(suite, []))
    parts, statuses, excluded, records, tests = [], [], [], [], []
    for label in sorted({r["job"]["label"] for r in runs}):
        mine = [r for r in runs if r["job"]["label"] == label]
        failed = failed_runs(data, mine)
        if failed:
            excluded.append(f"{label} (failed run: {failed[0]})")
            continue
        pairs = [value(r["training_free"]) for r in mine]
        paired = stats.paired_t([p[0] for p in pairs], [p[1] for p in pairs])
        test = Test.from_paired(f"trick:{suite}:{label}:{kind}", kind, paired, None, effect, margin,
                                no_boot=NO_TRICK_BOOT)
        statuses.append(decide(data, test, cpu))
        tests.append(test)
        ci = "" if paired.n < MIN_SEEDS else f", t 95 % CI [{fmt_signed(paired.low)}, {fmt_signed(paired.high)}]"
        extra = test_text(data, test).replace(f"; no image bootstrap: {NO_TRICK_BOOT}", "")
        parts.append(f"{label} {fmt_signed(paired.mean_diff)} ({paired.n} seed(s), p {fmt_p(paired.p)}{ci}"
                     + (f"; {extra}" if extra and paired.n >= MIN_SEEDS else "") + ")")
        records += mine
    return parts, statuses, excluded, records, tests


def _per_label(data: ReportData, kind: str, value: Callable[[Mapping[str, Any]], tuple[float, float]],
               what: str, effect: float | None = None, margin: float | None = None) -> Verdict:
    """A claim about every model with the training-free trick: one paired decision per row of
    the main suite (rows that failed to train are excluded); regime suites listed beside."""
    if not any(r.get("training_free") for r in data.suites.get(MAIN_SUITE, [])):
        return Verdict(f"no training-free records; run `{RUN_MAIN}`", PENDING)
    parts, statuses, excluded, records, tests = _trick_suite(data, MAIN_SUITE, kind, value, effect, margin)
    diffs = [a - b for r in records if r.get("training_free") for a, b in (value(r["training_free"]),)]
    signs = ""
    if kind == "greater" and diffs:
        signs = f"; positive in {sum(d > 0 for d in diffs)}/{len(diffs)} model x seed pairs"
    text = (f"`{MAIN_SUITE}` (CPU suite, deciding; {what}): " + "; ".join(parts) + signs
            + (f"; excluded, no evidence: {', '.join(excluded)}" if excluded else "")
            + f"; no image bootstrap: {NO_TRICK_BOOT}")
    regime = []
    for suite in REGIME_SUITES:
        r_parts, _, _, r_records, _ = _trick_suite(data, suite, kind, value, effect, margin)
        if r_parts:
            slow = len(not_converged_runs(data, r_records))
            regime.append(f"`{suite}` regime check (ImageNet-pretrained weights; listed, not deciding; "
                          f"{slow}/{len(r_records)} runs not converged): " + "; ".join(r_parts))
    if not statuses:
        return Verdict(f"{text} (from `{RUN_MAIN}`)", FAILED)
    v = judge(data, records, text, RUN_MAIN, [], True, "; ".join(regime))
    status = weakest(statuses)
    if earlier_stage_runs(data, records) and status in EMPIRICAL:
        status = STAGE_CONTRADICTED if status == CONTRADICTED else STAGE_INCONCLUSIVE
    return Verdict(v.measured, status, v.flag, tests=tests, records=records)


def trick_gain(kind: str, effect: float | None = None) -> Check:
    """Every trained model with a linear classifier gains from the training-free trick
    (varying = the validation-selected Lambda, fixed = the backbone's fixed Lambda)."""
    def check(data: ReportData) -> Verdict:
        def gain(t: Mapping[str, Any]) -> tuple[float, float]:
            lam = t["val_selected_lambda"] if kind == "varying" else t["fixed_lambda"]
            return _trick_map(t, lam), t["baseline_test_mAP"]
        return _per_label(data, "greater", gain, f"{kind} Lambda - no trick", effect=effect)
    return check


def trick_robust(margin: float) -> Check:
    def check(data: ReportData) -> Verdict:
        def gap(t: Mapping[str, Any]) -> tuple[float, float]:
            return _trick_map(t, t["val_selected_lambda"]), _trick_map(t, t["fixed_lambda"])
        return _per_label(data, "equal", gap, f"varying - fixed Lambda, equivalence margin +-{margin:g} from the "
                          "claim's text", margin=margin)
    return check


# ----------------------------------------------------------------------------- ablation curves

def _off_configuration(curve: Any, where: Mapping[str, Any] | None) -> str:
    """'' when every record of the curve has the paper's ``where`` hparams; else what it has instead."""
    if not where:
        return ""
    seen = {}
    for _, rs in curve.runs:
        for r in rs:
            hp = {**(r.get("hparams_resolved") or {}), **hparams(r)}
            for key, want in where.items():
                if hp.get(key) != want:
                    seen[key] = hp.get(key)
    return ", ".join(f"{k} = {hparam_text(v)} (the paper's: {hparam_text(where[k])})" for k, v in sorted(seen.items()))


def curve_check(method: str, axis: str, rule: str, at: Any = None, effect: float | None = None,
                margin: float | None = None, where: Mapping[str, Any] | None = None, run: str = "") -> Check:
    """An ablation claim, decided on the sweep that varies ``axis`` of ``method`` (rule 1):
    'argmax' (the value ``at`` is best, significantly above the runner-up), 'low_better'
    (smallest value > largest), 'high_better' (largest > smallest), 'increasing' (Kendall tau
    of the means > 0 and largest > smallest), 'all_above_baseline' (EVERY point above the
    baseline row, each seed-paired), 'flat' (first vs last within the claim's ``margin``)."""
    def check(data: ReportData) -> Verdict:
        names = next(n for m, n, a, _ in SWEEP_AXES if m == method and a == axis)
        curves = data.curves(method, names, axis, "")
        if not curves:
            suite = SWEEP_SUITES.get((method, axis))
            how = f"run `bench sweep sweeps/{suite}.yaml`" if suite else "no sweep file varies it yet"
            return Verdict(f"no {method} {axis} sweep records; {how}", PENDING)
        # the sweep at the paper's configuration decides when there is one (CSRA Fig. 5: H = 1)
        curve = next((c for c in curves if not _off_configuration(c, where)), curves[0])
        command = command_for(curve.suite)
        cpu = is_cpu_scale(data.suites[curve.suite])
        points = curve.ci()
        means = {v: ci.mean for v, ci in points}
        values = [v for v, _ in points]
        shown = ", ".join(f"{hparam_text(v)}: {fmt(ci.mean)} ({ci.n} seed{'s' if ci.n != 1 else ''})"
                          for v, ci in points)
        prefix = f"`{curve.suite}` {curve.hparam}: {shown}"
        every = [r for _, rs in curve.runs for r in rs]
        off = _off_configuration(curve, where)
        if off:
            return Verdict(f"not run at the paper's configuration: the records have {off}; run `{run}`. "
                           f"Listed, not deciding: {prefix}", NOT_RUN)

        def pair(x: Any, y: Any) -> PairEvidence | None:
            return pair_evidence(data, curve.suite, curve.records_at(x), curve.records_at(y))

        if rule == "all_above_baseline":
            base_suite = curve.suite if data.label_for(curve.suite, "baseline") else MAIN_SUITE
            base = data.label_for(base_suite, "baseline")
            if base is None:
                return Verdict(f"{prefix}; no baseline row", PENDING)
            base_runs = data.runs(base_suite, base)
            tests, texts = [], []
            for v in values:
                ev = pair_evidence(data, curve.suite, curve.records_at(v), base_runs)
                if ev is None:
                    return Verdict(f"{prefix}; {hparam_text(v)} and the baseline share no seed", PENDING)
                tests.append(ev.test(f"{curve.suite}:{curve.hparam}={hparam_text(v)}>baseline", effect=effect))
                texts.append(ev.text(hparam_text(v), f"baseline ({base_suite})"))
            text = f"{prefix}; every value vs the baseline, seed-paired: " + "; ".join(texts)
            return judge(data, every + base_runs, text, f"{command}; {command_for(base_suite)}", tests, cpu)
        kind, extra, m = "greater", True, None
        if rule == "argmax":
            if at not in values:
                return Verdict(f"{prefix}; the paper's value {hparam_text(at)} was not swept", PENDING)
            best = max(values, key=lambda v: means[v])
            other = max((v for v in values if v != at), key=lambda v: means[v]) if best == at else best
            x, y = at, other
            what = f"best at {hparam_text(best)}; {hparam_text(at)} vs {'runner-up' if best == at else 'best'}"
        elif rule in ("low_better", "high_better", "increasing"):
            first, last = values[0], values[-1]
            x, y = (first, last) if rule == "low_better" else (last, first)
            what = f"{hparam_text(x)} vs {hparam_text(y)}"
            if rule == "increasing":
                tau = stats.kendall_tau([float(v) for v in values], [means[v] for v in values])
                extra = tau > 0
                what = f"Kendall tau {fmt(tau, 2)}; {what}"
        else:  # flat
            x, y, kind, m = values[0], values[-1], "equal", margin
            what = f"{hparam_text(x)} vs {hparam_text(y)} (no difference: within +-{margin:g}, the claim's own margin)"
        ev = pair(x, y)
        if ev is None:
            return Verdict(f"{prefix}; {hparam_text(x)} and {hparam_text(y)} share no seed", PENDING)
        text = f"{prefix}; {what}: {ev.text(hparam_text(x), hparam_text(y))}"
        test = ev.test(f"{curve.suite}:{curve.hparam}:{hparam_text(x)}~{hparam_text(y)}:{kind}", kind, effect, m, extra)
        return judge(data, every, text, command, [test], cpu)
    return check


def ablation_greater(method: str, axis: str, better: Any, worse: Any, effect: float | None = None) -> Check:
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
        test = ev.test(f"{curve.suite}:{curve.hparam}:{hparam_text(better)}>{hparam_text(worse)}", effect=effect)
        return judge(data, ev.records, text, command_for(curve.suite), [test], cpu)
    return check


def node_features(better: str, worse: str, effect: float | None = None) -> Check:
    """IML-GCN Table 3: GCN input features ``better`` > ``worse`` on the node-feature ablation."""
    return ablation_greater("imlgcn", "nodes", better, worse, effect)

