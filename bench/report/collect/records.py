"""Records -> the values the report needs: grouping, seed statistics, paired comparisons,
sweep curves, and deterministic text formatting. No rendering here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from bench.evaluate import convergence, stats
from bench.report.collect import cache
from bench.report.collect.configurations import one_configuration_per_label, say_unread
from bench.run.store import Store, staleness

#: Datasets at paper scale; everything else (the embedded mosaics) is reported as CPU scale.
PAPER_SCALE_DATASETS = ("coco2014", "voc2007", "voc2012", "vg500", "adp", "wider")

#: Paper row name -> our method name (default suite rows are labelled by method name).
PAPER_ROW_METHODS = {
    "baseline": "baseline", "ASL": "asl", "ASL (TResNetM)": "asl", "ML-GCN": "mlgcn",
    "CSRA": "csra", "KMCL": "kmcl", "ProbMCL": "probmcl", "IML-GCN F_PCA": "imlgcn",
}

#: Sweep axes: (method, hparam names it may be recorded under, axis name, paper reference).
SWEEP_AXES: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("probmcl", ("tau",), "tau", "ProbMCL Fig. 2(a)"),
    ("probmcl", ("alpha",), "alpha", "ProbMCL Fig. 2(b)"),
    ("probmcl", ("lambda_pcl", "lambda", "lam"), "lambda", "ProbMCL Fig. 2(c)"),
    ("probmcl", ("overlap",), "overlap", "ProbMCL Sec. 3.2 (Jaccard 89.1 vs cosine 88.9)"),
    ("csra", ("lam", "lambda"), "lambda", "CSRA Fig. 5"),
    ("csra", ("num_heads", "heads"), "heads", "CSRA Table 7"),
    ("csra", ("normalize_weights",), "normalisation", "CSRA Table 8"),
    ("csra", ("mode",), "mode", "CSRA Table 6"),
    ("imlgcn", ("node_features",), "nodes", "IML-GCN Table 3"),
)

#: The sweep file that produces each axis's records (sweeps/<name>.yaml).
SWEEP_SUITES = {
    ("probmcl", "tau"): "ablation-probmcl-tau-cpu", ("probmcl", "alpha"): "ablation-probmcl-alpha-cpu",
    ("probmcl", "lambda"): "ablation-probmcl-lambda-cpu", ("probmcl", "overlap"): "ablation-probmcl-overlap-cpu",
    ("csra", "lambda"): "ablation-csra-lambda-cpu", ("csra", "heads"): "ablation-csra-heads-cpu",
    ("csra", "mode"): "ablation-csra-mode-cpu", ("csra", "normalisation"): "ablation-csra-norm-cpu",
    ("imlgcn", "nodes"): "ablation-imlgcn-nodes-cpu",
}

#: A run is "failed" when its test mAP is within CHANCE_FRACTION of the way from the chance level
#: to 100 (at least CHANCE_MARGIN points): chance 20 -> below 28, chance 11 -> below 19.9.
CHANCE_MARGIN = 3.0
CHANCE_FRACTION = 0.1


def chance_margin(chance: float) -> float:
    """Points above chance a test mAP must exceed to count as learned (see CHANCE_FRACTION)."""
    return max(CHANCE_MARGIN, CHANCE_FRACTION * (100.0 - chance))
#: All predictions positive at 0.5: CR at least this (CP within CHANCE_MARGIN of the prevalence); all
#: negative: CR at most ALL_NEGATIVE_CR. Such a row's metrics at 0.5 are no evidence; its mAP is,
#: unless at chance or the representation collapsed (then the whole run failed).
ALL_POSITIVE_CR = 99.0
ALL_NEGATIVE_CR = 1.0
SWEEPS_DIR = Path(__file__).resolve().parents[3] / "sweeps"
#: A run converged when every stage passes bench.evaluate.convergence's rule (recomputed from the history).
CONVERGED_GAIN = convergence.MAX_LAST_QUARTER_GAIN
#: Marks a row with at least one stale record (made by other code than the current).
STALE_MARK = "†"


def command_for(suite: str) -> str:
    """The command that produces a suite's records: `bench sweep` for sweep files, else `bench run`."""
    path = SWEEPS_DIR / f"{suite}.yaml"
    try:
        is_sweep = any(line.startswith("search:") for line in path.read_text().splitlines())
    except OSError:
        is_sweep = False
    return f"bench sweep sweeps/{suite}.yaml" if is_sweep else f"bench run --suite {suite}"


@dataclass(frozen=True)
class Health:
    """What a record says about its own training: failed (no evidence) or not converged (weaker)."""

    failed: tuple[str, ...]  # reasons; empty = trained
    not_converged: bool
    last_quarter_gain: float | None
    chance: float | None
    stale: str  # '' = made by the current code
    #: all predictions positive / negative at 0.5: the 0.5-threshold metrics say nothing
    degenerate_at_threshold: tuple[str, ...] = ()
    #: stages before the selection stage that did not converge ('contrastive: loss drop 11.7 %')
    earlier_not_converged: tuple[str, ...] = ()
    #: bench.evaluate.convergence.assess(record), recomputed from the history
    assessment: Mapping[str, Any] | None = None

    @property
    def is_failed(self) -> bool:
        return bool(self.failed)


DASH = "—"


# ----------------------------------------------------------------------------- formatting

def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{digits}f}"


def fmt_signed(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return DASH
    return f"{value:+.{digits}f}"


def fmt_ci(ci: stats.MeanCI, digits: int = 1) -> str:
    """'82.3 ± 0.4' (95 % t-interval half-width) or '82.3' for one seed; '—' for none."""
    if ci.n == 0:
        return DASH
    if ci.n == 1 or math.isnan(ci.half_width):
        return f"{ci.mean:.{digits}f} (1 seed)"
    return f"{ci.mean:.{digits}f} ± {ci.half_width:.{digits}f}"


def fmt_p(p: float) -> str:
    if math.isnan(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def hparam_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ----------------------------------------------------------------------------- records

def test_metric(record: Mapping[str, Any], key: str = "mAP", which: str = "selected") -> float:
    value = record["metrics"][which]["test"].get(key)
    return math.nan if value is None else float(value)


def hparams(record: Mapping[str, Any]) -> dict[str, Any]:
    return dict(record["job"].get("hparams") or {})


def setting_text(records: Sequence[Mapping[str, Any]]) -> str:
    """One line naming data, budget, backbone, resolution, protocol and conventions."""
    if not records:
        return "no records"
    r = records[0]
    job, data, ev = r["job"], r.get("data", {}), r.get("evaluation", {})
    budget, opt = job["budget"], job["optimizer"]
    seeds = sorted({x["job"]["seed"] for x in records})
    scale = "paper-scale data" if data.get("name") in PAPER_SCALE_DATASETS else "CPU scale, embedded data"
    return (f"{scale}: data `{data.get('name', job['dataset']['name'])}` "
            f"({data.get('n_train', '?')} train / {data.get('n_val', '?')} val / {data.get('n_test', '?')} test images, "
            f"{len(data.get('classes', []))} classes); backbone `{job['backbone']['name']}` at "
            f"{budget.get('resolution')} px; budget {budget.get('epochs')} epochs, batch {budget.get('batch_size')}, "
            f"augmentation {budget.get('augmentation')}; optimiser {opt.get('name')} lr {hparam_text(opt.get('lr'))} "
            f"{opt.get('schedule')}; protocol {job['protocol']}; evaluation `{ev.get('name', '?')}` "
            f"(threshold {ev.get('threshold', '?')}, CF1 {ev.get('cf1', '?')}, AP ties {ev.get('ap_ties', '?')}); "
            f"test metrics at the epoch selected on validation; seeds {', '.join(map(str, seeds))}")


def is_cpu_scale(records: Sequence[Mapping[str, Any]]) -> bool:
    return not records or records[0].get("data", {}).get("name") not in PAPER_SCALE_DATASETS


@dataclass(frozen=True)
class Comparison:
    suite: str
    a: str
    b: str
    seeds: tuple[int, ...]
    paired: stats.PairedTest
    bootstrap: stats.BootstrapResult | None

    @property
    def significant(self) -> bool:
        """The report's rule: >= 2 seeds, paired t p < ALPHA and (with predictions) the image
        bootstrap CI excluding 0. One seed is never significant (at most indicative)."""
        if self.paired.n < 2:
            return False
        return self.paired.significant and (self.bootstrap is None or self.bootstrap.significant)

    def verdict(self) -> str:
        higher = self.a if self.paired.mean_diff > 0 else self.b
        if self.paired.n < 2:
            if self.bootstrap is not None and self.bootstrap.significant:
                return f"1 seed, no test: {higher} higher on the image bootstrap (indicative)"
            return "1 seed, no test"
        if not self.significant:
            return "no significant difference"
        return f"{higher} higher"


@dataclass(frozen=True)
class Curve:
    suite: str
    method: str
    axis: str
    hparam: str
    reference: str
    points: tuple[tuple[Any, tuple[float, ...]], ...]  # (hparam value, mAP per seed), sorted
    runs: tuple[tuple[Any, tuple[Mapping[str, Any], ...]], ...] = ()  # the records behind each point

    def ci(self) -> list[tuple[Any, stats.MeanCI]]:
        return [(value, stats.mean_ci(maps)) for value, maps in self.points]

    def records_at(self, value: Any) -> tuple[Mapping[str, Any], ...]:
        return next((rs for v, rs in self.runs if v == value), ())


class ReportData:
    """The finished records of every suite under ``root`` that its committed spec produces
    (records of other configurations are set aside in ``other_configurations``), plus the cost
    records."""

    def __init__(self, root: str | Path, bootstrap_resamples: int = stats.BOOTSTRAP_RESAMPLES) -> None:
        self.root = Path(root)
        self.store = Store(self.root)
        self.resamples = bootstrap_resamples
        found = self.store.suites()
        #: ``--set`` variant folders (<suite>+<hash>): never evidence of their suite, not read
        self.variants = [s for s in found if "+" in s]
        #: records under a suite's folder of a configuration its committed file no longer
        #: produces (e.g. a job id from before a default changed): never mixed into its rows
        self.other_configurations: dict[str, list[str]] = {}
        self.suites: dict[str, list[dict[str, Any]]] = {}
        for suite in (s for s in found if "+" not in s):
            self.suites[suite], other = one_configuration_per_label(suite, self.store.records(suite))
            if other:
                self.other_configurations[suite] = other
        say_unread(self.root, self.store, found, self.variants)
        self._comparisons: dict[tuple[str, str, str], Comparison] = {}
        self._suite_of = {r["job_id"]: s for s, recs in self.suites.items() for r in recs}
        self._health: dict[str, Health] = {}

    def suite_of(self, record: Mapping[str, Any]) -> str:
        return self._suite_of.get(record["job_id"], record["job"].get("suite", ""))

    def chance(self, record: Mapping[str, Any]) -> float | None:
        """Chance-level test mAP: record["data"]["chance_mAP"], else the mean per-class test
        prevalence (x 100) from the record's predictions, else None."""
        value = (record.get("data") or {}).get("chance_mAP")
        if isinstance(value, (int, float)) and not math.isnan(float(value)):
            return float(value)
        preds = self.predictions(self.suite_of(record), record)
        if preds is None:
            return None
        targets = preds[1]
        pos, known = (targets == 1).sum(0), (targets != -1).sum(0)
        has = pos > 0
        return float((pos[has] / known[has]).mean() * 100) if has.any() else None

    def health(self, record: Mapping[str, Any]) -> Health:
        """Failed (chance-level mAP, collapse flagged), degenerate at 0.5 (all predictions positive
        or negative: the 0.5-threshold metrics are no evidence) and not-converged flags of one
        record; absent fields are not flags."""
        key = record["job_id"]
        if key in self._health:
            return self._health[key]
        test = record["metrics"]["selected"]["test"]
        m, cr, cp = test.get("mAP"), test.get("CR"), test.get("CP")
        chance = self.chance(record)
        failed = []
        if m is not None and chance is not None and m - chance <= chance_margin(chance):
            failed.append(f"test mAP {m:.1f} within {chance_margin(chance):.1f} points of chance {chance:.1f}")
        collapse = record.get("collapse")
        if isinstance(collapse, Mapping) and collapse.get("collapsed"):
            failed.append("representation collapsed (record's collapse check)")
        degenerate = []
        if cr is not None and cr >= ALL_POSITIVE_CR and (chance is None or cp is None or cp <= chance + CHANCE_MARGIN):
            degenerate.append(f"predictions all positive at 0.5 (CR {cr:.1f}, CP {fmt(cp)} ~ prevalence)")
        elif cr is not None and cr <= ALL_NEGATIVE_CR:
            degenerate.append(f"predictions all negative at 0.5 (CR {cr:.1f})")
        gain, not_converged, earlier, assessment = None, False, (), None
        if record.get("history"):  # recomputed from the history, never the stored verdict
            assessment = convergence.assess(record, self.loss_calibration.threshold)
            sel = assessment["selection"]
            gain = None if sel is None else sel["value"]
            not_converged = sel is not None and not sel["converged"]
            earlier = tuple(convergence.describe(s) for s in assessment["earlier"] if not s["converged"])
        else:  # hand-made records without a history: the stored figures are all there is
            conv = record.get("convergence")
            gain = conv.get("last_quarter_gain") if isinstance(conv, Mapping) else None
            not_converged = isinstance(conv, Mapping) and conv.get("converged") is False
        result = Health(tuple(failed), not_converged, gain, chance, staleness(record), tuple(degenerate),
                        earlier, assessment)
        self._health[key] = result
        return result

    def marked(self, suite: str, label: str | None) -> str | None:
        """``label`` with the stale mark when any of its records in ``suite`` is stale."""
        if label is None:
            return None
        stale = any(self.health(r).stale for r in self.runs(suite, label))
        return f"{label} {STALE_MARK}" if stale else label

    def stale_records(self) -> list[dict[str, Any]]:
        return [r for r in self.all_records() if self.health(r).stale]

    @cached_property
    def loss_calibration(self) -> convergence.LossCalibration:  # the one loss rule, calibrated on these records
        return convergence.calibrate(self.all_records())

    @cached_property
    def costs(self) -> dict[str, dict[str, Any]]:
        folder = self.root / "cost"
        out = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                out[path.stem] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
        return out

    def all_records(self) -> list[dict[str, Any]]:
        return [r for s in sorted(self.suites) for r in self.suites[s]]

    def labels(self, suite: str) -> list[str]:
        return sorted({r["job"]["label"] for r in self.suites.get(suite, [])})

    def runs(self, suite: str, label: str) -> list[dict[str, Any]]:
        return [r for r in self.suites.get(suite, []) if r["job"]["label"] == label]

    def by_seed(self, suite: str, label: str, key: str = "mAP") -> dict[int, float]:
        return {r["job"]["seed"]: test_metric(r, key) for r in self.runs(suite, label)}

    def ci(self, suite: str, label: str, key: str = "mAP") -> stats.MeanCI:
        return stats.mean_ci(list(self.by_seed(suite, label, key).values()))

    def label_for(self, suite: str, method: str) -> str | None:
        """The row of ``method`` in ``suite``: the label equal to the method name, else the
        first label (sorted) whose records use that method."""
        labels = self.labels(suite)
        if method in labels:
            return method
        for label in labels:
            if self.runs(suite, label)[0]["job"]["method"] == method:
                return label
        return None

    def _predictions_path(self, suite: str, record: Mapping[str, Any]) -> Path:
        return self.root / self._suite_of.get(record["job_id"], suite) / record["job_id"] / "predictions.npz"

    def predictions(self, suite: str, record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
        path = self._predictions_path(suite, record)
        if not path.is_file():
            return None
        with np.load(path) as npz:
            return npz["test_scores"].astype(np.float32), npz["test_targets"]

    def paired(self, suite: str, runs_a: Sequence[Mapping[str, Any]], runs_b: Sequence[Mapping[str, Any]]):
        """(seeds, seed-paired t-test, paired image bootstrap or None) of test mAP(a) - mAP(b) over
        the seeds both sets share; None when they share none. The bootstrap needs every
        record's predictions on one and the same test set."""
        by_a = {r["job"]["seed"]: r for r in runs_a}
        by_b = {r["job"]["seed"]: r for r in runs_b}
        seeds = tuple(sorted(set(by_a) & set(by_b)))
        if not seeds:
            return None
        key = (suite, tuple(by_a[s]["job_id"] for s in seeds), tuple(by_b[s]["job_id"] for s in seeds))
        cache = self.__dict__.setdefault("_paired_cache", {})
        if key not in cache:
            cache[key] = self._paired(suite, seeds, by_a, by_b)
        return cache[key]

    def _paired(self, suite: str, seeds: tuple[int, ...], by_a: Mapping[int, Any], by_b: Mapping[int, Any]):
        paired = stats.paired_t([test_metric(by_a[s]) for s in seeds], [test_metric(by_b[s]) for s in seeds])
        preds_a = [self.predictions(suite, by_a[s]) for s in seeds]
        preds_b = [self.predictions(suite, by_b[s]) for s in seeds]
        boot = None
        if all(p is not None for p in preds_a + preds_b):
            targets = preds_a[0][1]
            if all(p[1].shape == targets.shape and np.array_equal(p[1], targets) for p in preds_a + preds_b):
                files = [[self._predictions_path(suite, side[s]) for s in seeds] for side in (by_a, by_b)]
                boot = cache.bootstrap(*files, self.resamples, lambda: stats.bootstrap_map_difference(
                    [p[0] for p in preds_a], [p[0] for p in preds_b], targets, resamples=self.resamples))
        return seeds, paired, boot

    def compare(self, suite: str, a: str, b: str) -> Comparison | None:
        """Seed-paired t-test and paired image bootstrap of mAP(a) - mAP(b) in ``suite``."""
        key = (suite, a, b)
        if key in self._comparisons:
            return self._comparisons[key]
        paired_runs = self.paired(suite, self.runs(suite, a), self.runs(suite, b))
        if paired_runs is None:
            return None
        seeds, paired, boot = paired_runs
        result = Comparison(suite, a, b, seeds, paired, boot)
        self._comparisons[key] = result
        return result

    def curves(self, method: str, names: Sequence[str], axis: str, reference: str) -> list[Curve]:
        """One curve per suite where ``method``'s records vary one of ``names`` with all other
        hparams equal (the largest such group per suite)."""
        out = []
        for suite in sorted(self.suites):
            records = [r for r in self.suites[suite] if r["job"]["method"] == method]
            for name in names:
                groups: dict[str, dict[Any, list[Mapping[str, Any]]]] = {}
                for r in records:
                    hp = hparams(r)
                    if name not in hp:
                        continue
                    context = json.dumps({k: v for k, v in hp.items() if k != name}, sort_keys=True)
                    groups.setdefault(context, {}).setdefault(_key(hp[name]), []).append(r)
                best = max(sorted(groups.items()), key=lambda kv: len(kv[1]), default=None)
                if best is not None and len(best[1]) >= 2:
                    values = sorted(best[1], key=_sort_key)
                    runs = tuple((v, tuple(sorted(best[1][v], key=lambda r: r["job"]["seed"]))) for v in values)
                    points = tuple((v, tuple(test_metric(r) for r in rs)) for v, rs in runs)
                    out.append(Curve(suite, method, axis, name, reference, points, runs))
                    break
        return out


def _key(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool) or value is None:
        return (0, str(value))
    if isinstance(value, (int, float)):
        return (1, float(value))
    return (2, str(value))
