"""The papers' tables in their own shapes, the paper's values beside ours (markdown)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from bench.report.collect import paper_values as pv
from bench.evaluate import stats
from bench.report.collect.records import (DASH, PAPER_ROW_METHODS, ReportData, fmt, fmt_ci, fmt_signed,
                                 SWEEP_SUITES, hparam_text, hparams, is_cpu_scale, md_table, setting_text)

MAIN_SUITE = "default"
RUN_MAIN = "bench run --suite default"
METRICS = pv.METRICS


def _scale_note(records: Sequence[Mapping[str, Any]]) -> str:
    if is_cpu_scale(records):
        return ("*Ours is at CPU scale on the embedded dataset: compare directions and rankings, "
                "not absolute values.*")
    return "*Ours is on the paper's dataset.*"


def _ours_header(data: ReportData, suite: str) -> str:
    records = data.suites.get(suite, [])
    return f"Ours (`{data.root.as_posix()}/{suite}/`): {setting_text(records)}.\n\n{_scale_note(records)}"


def _missing(what: str, command: str) -> str:
    return f"No records yet for {what}. Produce them with `{command}`."


def find_label(data: ReportData, suite: str, method: str,
               match: Callable[[str, Mapping[str, Any]], bool] | None = None) -> str | None:
    """First label (sorted) in ``suite`` of ``method`` whose (label, hparams) satisfy ``match``."""
    if match is None:
        return data.label_for(suite, method)
    for label in data.labels(suite):
        run = data.runs(suite, label)[0]
        if run["job"]["method"] == method and match(label.lower(), hparams(run)):
            return label
    return None


def _metric_cells(data: ReportData, suite: str, label: str | None, columns: Sequence[str]) -> list[str]:
    if label is None:
        return ["not run"] + [DASH] * (len(columns) - 1)
    return [fmt_ci(data.ci(suite, label, c)) for c in columns]


def _ranking(order_paper: Sequence[str], means: Mapping[str, float]) -> str:
    shared = [m for m in order_paper if m in means]
    if len(shared) < 2:
        return "Ranking: fewer than two shared methods; nothing to compare."
    ours = sorted(shared, key=lambda m: (-means[m], m))
    tau = stats.kendall_tau([order_paper.index(m) for m in shared], [ours.index(m) for m in shared])
    return (f"Ranking by mAP, paper: {' > '.join(shared)}; ours: {' > '.join(ours)} "
            f"(Kendall tau {fmt(tau, 2)}).")


# ----------------------------------------------------------------------------- thresholds

#: Which threshold the paper's CP/CR/CF1/OP/OR/OF1 use, in its own words.
THRESHOLD_NOTE = {
    "probmcl": "The paper's CP..OF1 use the fixed threshold 0.5 (Sec. 3.1: 'an inference threshold of 0.5'), "
               "as do our rows without a suffix; the 'val-tuned' rows use the threshold chosen on validation "
               "(one for all classes, maximising CF1): ASL-family losses give calibrations far from 0.5, so their "
               "0.5-threshold CP/CR (e.g. CP 15-30, CR 80-96) are not comparable with calibrated ones.",
    "imlgcn": "The IML-GCN paper does not state its threshold (ML-GCN and ASL, whose rows it copies, use 0.5); "
              "our rows without a suffix use 0.5, the 'val-tuned' rows the threshold chosen on validation "
              "(one for all classes, maximising CF1).",
}


def _tuned_rows(data: ReportData, suite: str, labels: Sequence[str | None], lead: int = 0) -> list[list[str]]:
    """'row (ours, val-tuned threshold t)' rows: CP..OF1 at the validation-chosen global threshold."""
    out = []
    for label in [x for x in labels if x]:
        runs = data.runs(suite, label)
        tuned = [(r["metrics"]["selected"].get("test_tuned") or {}).get("global") or {} for r in runs]
        if not any(tuned):
            continue
        thr = stats.mean_ci([t.get("threshold") for t in tuned if t.get("threshold") is not None])
        cells = [fmt_ci(stats.mean_ci([t.get(k) for t in tuned if t.get(k) is not None])) for k in METRICS[1:]]
        out.append([f"{label} (ours, val-tuned threshold {fmt(thr.mean, 2)})"] + [DASH] * lead + [DASH] + cells)
    return out


# ----------------------------------------------------------------------------- ProbMCL

def probmcl_table1(data: ReportData, suite: str = MAIN_SUITE) -> str:
    out = ["### ProbMCL Table 1: MS-COCO comparison (mAP CP CR CF1 OP OR OF1)", "",
           f"Paper: {pv.PROBMCL_T1_448.setting} (lower block) and {pv.PROBMCL_T1_224.setting} "
           "(upper block); threshold 0.5.", ""]
    records = data.suites.get(suite, [])
    if not records:
        return "\n".join(out + [_missing("the method comparison", RUN_MAIN)])
    out += [_ours_header(data, suite), ""]
    rows, means = [], {}
    for paper_row, values in pv.PROBMCL_T1_448.rows + pv.PROBMCL_T1_224.rows[2:]:
        block = "448" if (paper_row, values) in pv.PROBMCL_T1_448.rows else "224"
        rows.append([f"{paper_row} (paper, {block})"] + [fmt(v) for v in values])
    for paper_row in ("ML-GCN", "CSRA", "KMCL", "ASL", "ProbMCL"):
        label = data.label_for(suite, PAPER_ROW_METHODS[paper_row])
        rows.append([f"{paper_row} (ours: {data.marked(suite, label) or 'not run'})"]
                    + _metric_cells(data, suite, label, METRICS))
        if label is not None:
            means[paper_row] = data.ci(suite, label).mean
    base = data.label_for(suite, "baseline")
    if base is not None:
        rows.append([f"baseline (ours: {data.marked(suite, base)})"] + _metric_cells(data, suite, base, METRICS))
    rows += _tuned_rows(data, suite, [data.label_for(suite, PAPER_ROW_METHODS[r])
                                      for r in ("ML-GCN", "CSRA", "KMCL", "ASL", "ProbMCL")] + [base])
    out += [md_table(["Method"] + list(METRICS), rows), "",
            "Ours: mean ± 95 % t-interval half-width over seeds, test split, percent. " + THRESHOLD_NOTE["probmcl"], "",
            _ranking([r for r, _ in sorted(pv.PROBMCL_T1_448.rows, key=lambda rv: -rv[1][0])
                      if r in PAPER_ROW_METHODS], means)]
    return "\n".join(out)


def _cost_rows(data: ReportData) -> list[Mapping[str, Any]]:
    rows = []
    for name in sorted(data.costs):
        for row in data.costs[name].get("rows") or []:
            if isinstance(row, Mapping) and row.get("mode", "inference") == "inference":
                rows.append({**row, "_file": name})
    return rows


def probmcl_table3(data: ReportData) -> str:
    out = ["### ProbMCL Table 3: parameters and GMAC", "", f"Paper: {pv.PROBMCL_T3.setting}.", ""]
    costs = _cost_rows(data)
    rows = []
    for paper_row, (params, gmacs) in pv.PROBMCL_T3.rows:
        method = {"ML-GCN": "mlgcn", "CSRA": "csra", "ProbMCL": "probmcl", "TDRG": "tdrg"}[paper_row]
        mine = [c for c in costs if c.get("method") == method]
        if method == "tdrg":
            rows.append([paper_row, fmt(params, 2), fmt(gmacs, 2), "out of scope: TDRG is not a method of this "
                         "benchmark", DASH, DASH])
            continue
        if not mine:
            rows.append([paper_row, fmt(params, 2), fmt(gmacs, 2), "not measured", DASH, DASH])
        for c in mine:
            rows.append([paper_row, fmt(params, 2), fmt(gmacs, 2),
                         f"{c.get('backbone', '?')} @ {c.get('resolution', '?')} px (results/cost/{c['_file']}.json)",
                         fmt(c.get("params_m"), 2), fmt(c.get("gmacs"), 2)])
    out.append(md_table(["Method", "paper params (M)", "paper GMAC", "ours: model", "ours params (M)",
                         "ours GMAC"], rows))
    if not costs:
        out += ["", _missing("parameter/GMAC counts", pv.DATA_COMMANDS["cost"])]
    out += ["", "Ours: fvcore counts at the stated resolution (one multiply-add = one MAC), no data "
            "needed; TDRG is out of scope (not a method of this benchmark)."]
    return "\n".join(out)


# ----------------------------------------------------------------------------- IML-GCN

def _node_features(value: str) -> Callable[[str, Mapping[str, Any]], bool]:
    """IML-GCN rows by the hparam ``node_features`` (methods/imlgcn.py NODE_FEATURES)."""
    return lambda label, hp: hp.get("node_features", "pca") == value


IMLGCN_VARIANTS: tuple[tuple[str, str, Callable[[str, Mapping[str, Any]], bool]], ...] = (
    ("Word embeddings F_W", "imlgcn", _node_features("word")),
    ("Image features F_I", "imlgcn", _node_features("image")),
    ("Image features F_PCA", "imlgcn", _node_features("pca")),
)


def _imlgcn_label(data: ReportData, suite: str, name: str) -> str | None:
    for row, method, match in IMLGCN_VARIANTS:
        if row == name:
            label = find_label(data, suite, method, match)
            if label is None and row.startswith("Word"):
                return data.label_for(suite, "mlgcn")  # ML-GCN's GCN = the F_W network
            return label
    return None


def imlgcn_table1(data: ReportData, suite: str = MAIN_SUITE) -> str:
    out = ["### IML-GCN Table 1: MS-COCO, parameters and metrics", "", f"Paper: {pv.IMLGCN_T1.setting}.", ""]
    records = data.suites.get(suite, [])
    if not records:
        return "\n".join(out + [_missing("the method comparison", RUN_MAIN)])
    out += [_ours_header(data, suite), ""]
    columns = ("params_m",) + METRICS
    rows = [[f"{r} (paper)"] + [fmt(v) for v in values] for r, values in pv.IMLGCN_T1.rows
            if r in ("ML-GCN", "ASL (TResNetM)", "ASL (TResNetL)", "IML-GCN F_I", "IML-GCN F_PCA")]
    ours = [("ML-GCN", suite, data.label_for(suite, "mlgcn")), ("ASL", suite, data.label_for(suite, "asl"))]
    for name, row in (("IML-GCN F_I", "Image features F_I"), ("IML-GCN F_PCA", "Image features F_PCA")):
        where = suite
        label = _imlgcn_label(data, suite, row)
        if label is None:  # not a row of the main suite: the node-feature sweep (same budget) has it
            where = SWEEP_SUITES[("imlgcn", "nodes")]
            label = _imlgcn_label(data, where, row) if data.suites.get(where) else None
        ours.append((name, where, label))
    for name, where, label in ours:
        params = DASH
        if label is not None:
            params = fmt(data.runs(where, label)[0].get("model", {}).get("params_m"), 3)
        source = "" if where == suite or label is None else f", `{where}`"
        flags = row_flags(data, data.runs(where, label)) if label else ""
        rows.append([f"{name} (ours: {data.marked(where, label) or 'not run'}{source}){flags}", params]
                    + _metric_cells(data, where, label, METRICS))
    rows += _tuned_rows(data, suite, [lab for name, where, lab in ours if where == suite], lead=1)
    out += [md_table(["Method"] + list(columns), rows), "",
            "Ours: params from the records (CPU-scale model, millions); metrics mean ± 95 % CI over seeds. "
            + THRESHOLD_NOTE["imlgcn"]]
    return "\n".join(out)


def imlgcn_table3(data: ReportData, suite: str = MAIN_SUITE) -> str:
    out = ["### IML-GCN Table 3: GCN input features (word vs image vs PCA)", "",
           f"Paper: {pv.IMLGCN_T3.setting}.", ""]
    records = data.suites.get(suite, [])
    if not records:
        return "\n".join(out + [_missing("the GCN input-feature ablation", RUN_MAIN)])
    out += [_ours_header(data, suite), ""]
    rows, previous = [], None
    for name, (coco, vg) in pv.IMLGCN_T3.rows:
        label = _imlgcn_label(data, suite, name)
        diff = DASH
        if label is not None and previous is not None:
            comparison = data.compare(suite, label, previous)
            if comparison is not None:
                diff = f"{fmt_signed(comparison.paired.mean_diff)} ({comparison.verdict()})"
        rows.append([name, fmt(coco, 2), fmt(vg, 2), data.marked(suite, label) or "not run",
                     fmt_ci(data.ci(suite, label)) if label else DASH, diff,
                     _point_flags(data, data.runs(suite, label)) if label else DASH])
        previous = label or previous
    out.append(md_table(["Node features", "paper COCO mAP", "paper VG-500 mAP", "ours: row",
                         "ours mAP", "ours vs row above", "flags"], rows))
    return "\n".join(out)


# ----------------------------------------------------------------------------- CSRA

def csra_table1(data: ReportData, suite: str = MAIN_SUITE) -> str:
    out = ["### CSRA Table 1: training-free max-pooling trick (score = avg + Lambda * max)", "",
           f"Paper: {pv.CSRA_T1.setting}; varying Lambda tuned per model, fixed Lambda 0.02 "
           "(ResNet family) / 0.2 (others).", ""]
    paper_rows = [[r, fmt(b), hparam_text(vl), fmt(vm), fmt_signed(vm - b, 1), hparam_text(fl), fmt(fm),
                   fmt_signed(fm - b, 1)] for r, (b, vl, vm, fl, fm) in pv.CSRA_T1.rows]
    header = ["Model", "baseline", "varying Lambda", "mAP", "diff", "fixed Lambda", "mAP", "diff"]
    out += ["Paper:", "", md_table(header, paper_rows), ""]
    records = [r for r in data.suites.get(suite, []) if r.get("training_free")]
    if not records:
        return "\n".join(out + [_missing("the training-free trick (models with a linear classifier)", RUN_MAIN)])
    out += [_ours_header(data, suite), "",
            "Ours: Lambda selected on the validation split per seed (varying) or the backbone's fixed "
            "value; test mAP mean ± 95 % CI over seeds; diff = paired mean difference to the same "
            "model without the trick.", ""]
    rows = []
    for label in sorted({r["job"]["label"] for r in records}):
        runs = [r for r in records if r["job"]["label"] == label]
        base = [r["training_free"]["baseline_test_mAP"] for r in runs]
        chosen = [r["training_free"]["val_selected_lambda"] for r in runs]
        varying = [r["training_free"]["test_mAP"][_lam_key(r, r["training_free"]["val_selected_lambda"])]
                   for r in runs]
        fixed_lam = runs[0]["training_free"]["fixed_lambda"]
        fixed = [r["training_free"]["test_mAP"][_lam_key(r, fixed_lam)] for r in runs]
        vt, ft = stats.paired_t(varying, base), stats.paired_t(fixed, base)
        rows.append([data.marked(suite, label), fmt_ci(stats.mean_ci(base)), "/".join(hparam_text(c) for c in chosen),
                     fmt_ci(stats.mean_ci(varying)), _diff_text(vt), hparam_text(fixed_lam),
                     fmt_ci(stats.mean_ci(fixed)), _diff_text(ft)])
    out.append(md_table(["Model (ours)", "baseline", "val-selected Lambda per seed", "mAP", "diff",
                         "fixed Lambda", "mAP", "diff"], rows))
    return "\n".join(out)


def _lam_key(record: Mapping[str, Any], lam: float) -> str:
    keys = record["training_free"]["test_mAP"]
    for key in keys:
        if float(key) == float(lam):
            return key
    raise KeyError(f"{record['job_id']}: training-free Lambda {lam} not recorded")


def _diff_text(test: stats.PairedTest) -> str:
    if test.n < 2:
        return fmt_signed(test.mean_diff)
    mark = "significant" if test.significant else "n.s."
    return f"{fmt_signed(test.mean_diff)} (p {fmt(test.p, 3)}, {mark})"


def csra_table6(data: ReportData) -> str:
    return _curve_table(data, "csra", "mode", pv.CSRA_T6,
                        "CSRA Table 6: average vs spatial pooling vs both",
                        "bench sweep sweeps/ablation-csra-mode-cpu.yaml")


def _curve_table(data: ReportData, method: str, axis: str, paper: pv.PaperTable | None,
                 title: str, command: str, value_name: Callable[[Any], str] = hparam_text) -> str:
    names = next(n for m, n, a, _ in _axes() if m == method and a == axis)
    curves = data.curves(method, names, axis, title)
    out = [f"### {title}", ""]
    if paper is not None:
        out += [f"Paper: {paper.setting}.", "",
                md_table(["Paper row"] + list(paper.columns), [[r] + [fmt(v) for v in vals]
                                                               for r, vals in paper.rows]), ""]
    if not curves:
        return "\n".join(out + [_missing(f"the {method} {axis} sweep", command)])
    for curve in curves:
        out += [_ours_header(data, curve.suite), "",
                md_table([f"{curve.hparam} (ours)", "mAP", "seeds", "flags"],
                         [[value_name(v) + _stale_mark(data, curve.records_at(v)), fmt_ci(ci), str(ci.n),
                           _point_flags(data, curve.records_at(v))] for v, ci in curve.ci()]), ""]
    return "\n".join(out).rstrip()


def _stale_mark(data: ReportData, records: Sequence[Mapping[str, Any]]) -> str:
    from bench.report.collect.records import STALE_MARK
    return f" {STALE_MARK}" if any(data.health(r).stale for r in records) else ""


def _point_flags(data: ReportData, records: Sequence[Mapping[str, Any]]) -> str:
    failed = [r for r in records if data.health(r).is_failed]
    slow = [r for r in records if data.health(r).not_converged]
    parts = []
    if failed:
        parts.append(f"**failed run** ({len(failed)}/{len(records)}: {data.health(failed[0]).failed[0]})")
    early = [r for r in records if data.health(r).earlier_not_converged]
    if early:
        parts.append(f"**earlier stage not converged** ({len(early)}/{len(records)}: "
                     f"{data.health(early[0]).earlier_not_converged[0]})")
    if slow:
        parts.append(f"**not converged** ({len(slow)}/{len(records)})")
    if len(records) == 1:
        parts.append("1 seed")
    return "; ".join(parts) or DASH


def row_flags(data: ReportData, records: Sequence[Mapping[str, Any]]) -> str:
    """' — flags' for a row cell, '' when there is nothing to flag."""
    text = _point_flags(data, records)
    return "" if text == DASH else f" — {text}"


def _axes():
    from bench.report.collect.records import SWEEP_AXES
    return SWEEP_AXES


def csra_fig5(data: ReportData) -> str:
    return _curve_table(data, "csra", "lambda", None, "CSRA Fig. 5: Lambda (the paper prints no numbers: "
                        "ResNet-cut peaks at 0.1, VIT-L16 at 1.0)", "bench sweep sweeps/ablation-csra-lambda-cpu.yaml")


def csra_table7(data: ReportData) -> str:
    return _curve_table(data, "csra", "heads", pv.CSRA_T7, "CSRA Table 7: number of attention heads H",
                        "bench sweep sweeps/ablation-csra-heads-cpu.yaml")


def csra_table8(data: ReportData) -> str:
    return _curve_table(data, "csra", "normalisation", pv.CSRA_T8,
                        "CSRA Table 8: classifier normalisation",
                        "bench sweep sweeps/ablation-csra-norm-cpu.yaml",
                        lambda v: "with" if v else "without")


def probmcl_overlap(data: ReportData) -> str:
    return _curve_table(data, "probmcl", "overlap", pv.PROBMCL_OVERLAP,
                        "ProbMCL Sec. 3.2: overlap function (Jaccard vs cosine)",
                        "bench sweep sweeps/ablation-probmcl-overlap-cpu.yaml")


def all_tables(data: ReportData) -> list[str]:
    nodes = "ablation-imlgcn-nodes-cpu"  # Table 3's sweep; the main suite's rows otherwise
    return [probmcl_table1(data), probmcl_table3(data), probmcl_overlap(data), imlgcn_table1(data),
            imlgcn_table3(data, nodes if data.suites.get(nodes) else MAIN_SUITE), csra_table1(data), csra_table6(data), csra_fig5(data), csra_table7(data),
            csra_table8(data)]
