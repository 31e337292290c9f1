"""The ledger's cost checks: parameter counts, GMACs, training cost by stage, and time overheads
compared like for like. Rules: bench.report.ledger.rules (rule 3)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Mapping

from bench.evaluate import stats
from bench.report.ledger.rules import (NOT_RUN, COST_CMD, COST_TOLERANCE, INDICATIVE, INDICATIVE_NOT, MAIN_SUITE, NOT_REPRODUCED,
                                 PARAM_TOLERANCE, PENDING, RATIO_TOLERANCE, REPRODUCED, RUN_MAIN, SMALL_OVERHEAD,
                                 Check, Verdict)
from bench.report.collect.records import ReportData, command_for, fmt, fmt_signed


def _resolved(method: str, hp: Mapping[str, Any]) -> dict[str, Any]:
    try:
        import methods

        return {**methods.get(method).defaults, **dict(hp or {})}
    except Exception:  # noqa: BLE001  (an unknown method: its own hparams only)
        return dict(hp or {})


def _rows(data: ReportData, method: str, mode: str = "inference") -> list[tuple[str, Mapping[str, Any]]]:
    return [(name, row) for name in sorted(data.costs) for row in data.costs[name].get("rows") or []
            if isinstance(row, Mapping) and row.get("method") == method and row.get("mode", "inference") == mode
            and row.get("params_m") is not None and not row.get("error")]


def _inference_rows(data: ReportData, method: str,
                    match: Callable[[Mapping[str, Any]], bool] | None) -> list[tuple[str, Mapping[str, Any]]]:
    return [(n, r) for n, r in _rows(data, method)
            if match is None or match(_resolved(method, r.get("hparams") or {}))]


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
            worst = max(abs(float(ra["params_m"]) - float(rb["params_m"])) / float(rb["params_m"]) for _, ra, rb in pairs)
            return Verdict("inference-time parameters: " + "; ".join(parts), REPRODUCED if ok else NOT_REPRODUCED,
                           ours=f"at most {fmt(100 * worst, 2)} % apart ({len(pairs)} models, counted)")
        ra, rb = _record_with(data, a, a_match), _record_with(data, b, None)
        if ra is None or rb is None:
            return Verdict(f"no inference cost rows or records for {a} / {b}; run `{COST_CMD}`", PENDING)
        pa, pb = float(ra["model"]["params_m"]), float(rb["model"]["params_m"])
        rel = abs(pa - pb) / pb
        return Verdict(f"no inference cost row for this {a} configuration: trained-model parameters from the "
                       f"records, {a} {fmt(pa, 4)} M vs {b} {fmt(pb, 4)} M ({fmt(100 * rel, 2)} %; from "
                       f"`{command_for(data.suite_of(ra))}`)", REPRODUCED if rel <= PARAM_TOLERANCE else NOT_REPRODUCED,
                       ours=f"{fmt(100 * rel, 2)} % apart (trained models' parameters)")
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
    for name, row in _rows(data, method):
        if row.get(key) is not None:
            preferred = bool(source) and source in str(row.get("paper_source") or "")
            candidates.append((not preferred, float(row[key]), f"{row.get('backbone')} @ {row.get('resolution')} px",
                               name))
    if not candidates:
        return None
    _, value, model, name = min(candidates, key=lambda c: c[0])
    return value, model, name


def cost_match(method: str, key: str, paper_value: float, source: str = "ProbMCL",
               where: Mapping[str, Any] | None = None) -> Check:
    """A paper's cost cell vs the counted value; ``where`` = the paper's configuration (e.g. CSRA's
    H = 1): a cost row of another configuration is listed, not deciding (``not run``)."""
    def check(data: ReportData) -> Verdict:
        found = _cost(data, method, key, source)
        if found is None:
            return Verdict(f"no cost record for {method}; run `{COST_CMD}`", PENDING)
        value, model, name = found
        rel = abs(value - paper_value) / paper_value
        row = next((r for n, r in _rows(data, method) if n == name and r.get(key) is not None
                    and float(r[key]) == value), {})
        hp = _resolved(method, row.get("hparams") or {})
        off = {k: hp.get(k) for k, v in (where or {}).items() if hp.get(k) != v}
        if off:
            have = ", ".join(f"{k} = {v}" for k, v in sorted(off.items()))
            want = ", ".join(f"{k} = {v}" for k, v in sorted((where or {}).items()))
            return Verdict(f"no cost row at the paper's {want}: the counted row has {have} ({fmt(value, 2)}, "
                           f"{fmt(100 * rel, 1)} % from the paper; listed, not deciding); add a {method} row with "
                           f"{want} to the cost configurations (bench/cost/count.py) and run `bench cost --suite {name}`",
                           NOT_RUN)
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
                       REPRODUCED if abs(fewer - claimed_percent) <= RATIO_TOLERANCE else NOT_REPRODUCED,
                       ours=f"{fmt(fewer, 1)} % fewer parameters (counted)")
    return check


def lowest_training_cost(method: str, others: tuple[str, ...], paper: str, source: str = "ProbMCL") -> Check:
    """``method`` has the lowest TRAINING cost of {method} + others: of each method the inference
    row the paper measured (``paper_source`` names ``source``, else the first) and the costliest
    training stage of that same row (a one-stage method without training rows: its inference
    counts, said so), all in one cost file at one backbone and resolution."""
    def check(data: ReportData) -> Verdict:
        chosen: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for m in (method, *others):
            rows = _rows(data, m)
            if rows:
                chosen[m] = min(rows, key=lambda nr: source not in str(nr[1].get("paper_source") or ""))
        where = {(n, r.get("backbone"), r.get("resolution")) for n, r in chosen.values()}
        if len(chosen) < 1 + len(others) or len(where) != 1:
            return Verdict(f"no cost rows for {method} and {', '.join(others)} on one model; run `{COST_CMD}`", PENDING)
        name, backbone, res = where.pop()
        parts, costs = {"inference": [], "training": []}, {}
        for m, (_, row) in chosen.items():
            parts["inference"].append(f"{m} {fmt(row['params_m'], 2)} M / {fmt(row.get('gmacs'), 2)} GMAC")
            train = [r for n, r in _rows(data, m, "training") if n == name and r.get("label") == row.get("label")]
            top = max(train, key=lambda r: float(r.get("gmacs") or 0.0)) if train else row
            costs[m] = (float(top["params_m"]), float(top.get("gmacs") or 0.0))
            stage = f"stage {top.get('stage')}" if train else "no training rows: inference counts"
            parts["training"].append(f"{m} {fmt(costs[m][0], 2)} M / {fmt(costs[m][1], 2)} GMAC ({stage})")
        lowest = all(costs[method][0] <= costs[m][0] and costs[method][1] <= costs[m][1] for m in others)
        return Verdict(f"{backbone} @ {res} px, `bench cost --suite {name}` -- inference: "
                       + ", ".join(parts["inference"]) + "; training (the costliest stage, per image, all views): "
                       + ", ".join(parts["training"]) + f"; the paper's numbers ({paper}) match the inference "
                       "model's; the verdict uses the training counts", REPRODUCED if lowest else NOT_REPRODUCED,
                       ours="training GMAC: " + ", ".join(f"{m} {fmt(costs[m][1], 2)}" for m in costs))
    return check


def time_overhead(a: str, b: str, key: str, a_match: Callable[[Mapping[str, Any]], bool] | None = None,
                  sweep: str = "", claimed: float = 0.0) -> Check:
    """Timing overhead of a over b, claimed ``claimed`` % (a positive, small number): like for
    like, b's rows must have done the same evaluation work (the training-free trick run or not,
    same test set). The records hold one wall-clock time per run (not repeated, not per image),
    so the verdict is at most indicative and says so; holds when the mean overhead is > 0 (the
    claim's sign) and below SMALL_OVERHEAD %."""
    def check(data: ReportData) -> Verdict:
        ra = [r for r in data.all_records() if r["job"]["method"] == a
              and (a_match is None or a_match(r["job"].get("hparams") or {}))]
        trick = {bool(r.get("training_free")) for r in ra}
        rb_all = [r for r in data.suites.get(MAIN_SUITE, []) if r["job"]["method"] == b]
        rb = [r for r in rb_all if bool(r.get("training_free")) in trick] if key == "eval_s" else rb_all
        if not ra or not rb:
            how = f"`bench sweep sweeps/{sweep}.yaml` and `{RUN_MAIN}`" if sweep else f"`{RUN_MAIN}`"
            return Verdict(f"missing {a} or like-for-like {b} records; run {how}", PENDING)
        machines = Counter(_machine(r) for r in ra)
        machine = machines.most_common(1)[0][0]
        ra, rb = [r for r in ra if _machine(r) == machine], [r for r in rb if _machine(r) == machine]
        if not ra or not rb:
            return Verdict(f"no {a} and {b} timings on one machine ({machine}); wall-clock is compared within one "
                           "machine only", INDICATIVE_NOT)
        labels = ", ".join(sorted({r["job"]["label"] for r in rb}))
        mean_b = sum(r["timing"][key] for r in rb) / len(rb)
        over = stats.mean_ci([100 * (r["timing"][key] / mean_b - 1) for r in ra])
        same = ("same evaluation work: " + ("both with" if trick == {True} else "neither runs")
                + " the training-free trick") if key == "eval_s" else "training time of the whole run"
        sign = over.low > 0 if over.n >= 2 else over.mean > 0  # a direction claim needs the sign
        holds = sign and over.mean < SMALL_OVERHEAD
        text = (f"{key} on one machine ({machine}): {a} {fmt(sum(r['timing'][key] for r in ra) / len(ra), 2)} s ({len(ra)} runs) vs {b} rows "
                f"[{labels}] {fmt(mean_b, 2)} s ({len(rb)} runs; {same}): {fmt_signed(over.mean, 1)} %"
                + ("" if over.n < 2 else f" (95 % CI [{fmt_signed(over.low, 1)}, {fmt_signed(over.high, 1)}])")
                + f"; the paper's {claimed:+g} %: holds when the overhead is positive (CI above 0) and below "
                f"{SMALL_OVERHEAD:g} %; "
                "at most indicative: the records hold one wall-clock time per run (separate runs, not repeated "
                "timings of the same work); `bench cost --suite default --timing` measures repeated per-step ratios")
        command = "; ".join(sorted({command_for(data.suite_of(r)) for r in ra + rb}))
        return Verdict(f"{text} (from `{command}`)", INDICATIVE if holds else INDICATIVE_NOT)
    return check


def _machine(record: Mapping[str, Any]) -> str:
    return str((record.get("provenance") or {}).get("machine") or "unknown machine")


#: percentage points: a counted overhead matches the paper's claimed overhead
OVERHEAD_TOLERANCE = 0.5


def counted_overhead(a: str, b: str, source: str, claimed: float, what: str) -> Check:
    """Rule 3 for a claimed compute overhead of a over b (percent): decided by the counted GMACs
    of the cost rows at the paper's setting (a's row whose ``paper_source`` names ``source``; b's
    row on the same cost file, backbone and resolution); the counts are per image and identical
    for training and test up to the backward pass's constant factor."""
    def check(data: ReportData) -> Verdict:
        ra = [(n, r) for n, r in _rows(data, a) if source in str(r.get("paper_source") or "")]
        if not ra:
            return Verdict(f"no cost row of {a} at the paper's setting ({source}); run `{COST_CMD}`", PENDING)
        name, row = ra[0]
        rb = [r for n, r in _rows(data, b) if n == name and (r.get("backbone"), r.get("resolution"))
              == (row.get("backbone"), row.get("resolution"))]
        if not rb or not rb[0].get("gmacs") or row.get("gmacs") is None:
            return Verdict(f"no {b} cost row beside {row.get('label')}; run `{COST_CMD}`", PENDING)
        over = 100 * (float(row["gmacs"]) / float(rb[0]["gmacs"]) - 1)
        ok = abs(over - claimed) <= OVERHEAD_TOLERANCE
        ours = f"{fmt_signed(over, 2)} % GMACs (counted)"
        return Verdict(f"counted at the paper's setting ({row.get('label')} vs {rb[0].get('label')}, "
                       f"{row.get('backbone')} @ {row.get('resolution')} px, `bench cost --suite {name}`): "
                       f"{fmt(float(row['gmacs']), 4)} vs {fmt(float(rb[0]['gmacs']), 4)} GMAC = {ours} vs the paper's "
                       f"{claimed:+g} % {what} (holds within {OVERHEAD_TOLERANCE:g} points)",
                       REPRODUCED if ok else NOT_REPRODUCED, ours=ours)
    return check


def decided_by(decisive: Check, *beside: Check) -> Check:
    """The status of ``decisive`` alone; the ``beside`` checks are shown as indicative, not deciding."""
    def check(data: ReportData) -> Verdict:
        v = decisive(data)
        extra = [c(data) for c in beside]
        text = v.measured + "".join(f" / beside, indicative and not deciding: {e.measured}" for e in extra)
        return Verdict(text, v.status, v.flag, v.arith, v.tests, v.ours, v.records)
    return check
