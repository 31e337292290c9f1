"""The claims ledger's rules, each pinned on small hand-made record sets (bench/report/ledger/claims.py):
matching evidence, >= 2 seeds and a paired test, inference-time costs, failed runs are no
evidence, not-converged runs flagged, numbers and command in every verdict. Includes the
three wrong verdicts of issue 11 (IML-GCN word vs image, CSRA normalisation, ProbMCL MDN)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.report.ledger import claims
from bench.report.collect.records import ReportData

SEEDS = (0, 1, 2)


def _metrics(mAP: float, CR: float = 60.0, CP: float = 70.0) -> dict:
    m = {"mAP": mAP, "CP": CP, "CR": CR, "CF1": 60.0, "OP": 70.0, "OR": 60.0, "OF1": 60.0}
    return {"selected": {"test": m, "val": dict(m)}, "last": {"test": dict(m), "val": dict(m)}}


def write(root: Path, suite: str, label: str, method: str, seed: int, mAP: float, hparams: dict | None = None,
          CR: float = 60.0, CP: float = 70.0, chance: float | None = 20.0, params_m: float = 0.66,
          **extra) -> dict:
    job_id = f"{method}-{abs(hash((suite, label, seed))) % 10**12:012d}"
    rec = {"job_id": job_id,
           "job": {"label": label, "method": method, "seed": seed, "hparams": hparams or {}, "suite": suite,
                   "dataset": {"name": "mnist-mosaic"}},
           "metrics": _metrics(mAP, CR, CP), "data": {"name": "mnist-mosaic", "chance_mAP": chance},
           "model": {"params_m": params_m}, "timing": {"wall_s": 1.0, "train_s": 1.0, "eval_s": 0.1},
           "provenance": {"code_fingerprint": "0" * 16}, **extra}
    if chance is None:
        rec["data"].pop("chance_mAP")
    d = root / suite / job_id
    d.mkdir(parents=True)
    (d / "record.json").write_text(json.dumps(rec))
    (d / "DONE").write_text("")
    return rec


def row(root, label, method, maps, suite="default", **kw):
    for seed, m in zip(SEEDS, maps):
        write(root, suite, label, method, seed, m, **kw)


def claim(data: ReportData, text_start: str) -> claims.Claim:
    found = [c for c in claims.text_claims(data) if c.claim.startswith(text_start)]
    assert len(found) == 1, text_start
    return found[0]


NODES = "ablation-imlgcn-nodes-cpu"


def _nodes(root, word, image, pca):
    for feat, maps in (("word", word), ("image", image), ("pca", pca)):
        for seed, m in zip(SEEDS, maps):
            write(root, NODES, f"imlgcn node_features={feat}", "imlgcn", seed, m, {"node_features": feat})


# ----------------------------------------------------------------------------- rule 1

def test_imlgcn_word_vs_image_comes_from_the_node_feature_ablation_not_imlgcn_minus_mlgcn(tmp_path):
    row(tmp_path, "imlgcn", "imlgcn", [60.0, 61.0, 62.2])
    row(tmp_path, "mlgcn", "mlgcn", [43.0, 44.1, 45.0])  # imlgcn >> mlgcn: the old proxy said "reproduced"
    text = "Word embeddings decrease mAP"
    pending = claim(ReportData(tmp_path, 50), text)
    assert pending.status == claims.PENDING and "ablation-imlgcn-nodes-cpu" in pending.measured
    assert "imlgcn - mlgcn" not in pending.measured  # no proxy when the matching ablation has no records
    _nodes(tmp_path, word=[58.6], image=[55.7], pca=[60.8])  # the landed records: 1 seed, word > image
    c = claim(ReportData(tmp_path, 50), text)
    # issue 26: the paper's "5 %" is F_PCA - F_W (86.62 - 81.6), so the ledger tests that pair
    assert c.status == claims.INDICATIVE
    assert "pca - word: +2.20" in c.measured and "bench sweep sweeps/ablation-imlgcn-nodes-cpu.yaml" in c.measured


def test_node_feature_claims_with_three_seeds(tmp_path):
    _nodes(tmp_path, word=[58.6, 58.9, 58.2], image=[55.7, 55.9, 55.2], pca=[60.8, 61.2, 60.9])
    data = ReportData(tmp_path, 50)
    assert claim(data, "Word embeddings decrease mAP").status == claims.DIRECTION  # F_PCA > F_W, the paper's pair
    pca = claim(data, "PCA on the image embeddings")
    assert pca.status == claims.DIRECTION and "pca - image: +5.37" in pca.measured


# ----------------------------------------------------------------------------- rule 2

CSRA_NORM = "ablation-csra-norm-cpu"


def _norm(root, off, on):
    for flag, maps in ((False, off), (True, on)):
        for seed, m in zip(SEEDS, maps):
            write(root, CSRA_NORM, f"csra normalize_weights={flag}", "csra", seed, m,
                  {"normalize_weights": flag, "num_heads": 6})


def test_csra_normalisation_one_seed_big_gap_is_at_most_indicative(tmp_path):
    _norm(tmp_path, [71.16], [64.57])  # the landed records: 6.59 points, one seed
    c = claim(ReportData(tmp_path, 50), "Classifier normalisation makes no accuracy difference")
    assert c.status == claims.INDICATIVE_NOT and "+6.59" in c.measured and "1 seed" in c.measured


def test_no_difference_needs_the_ci_inside_the_claims_own_margin(tmp_path):
    _norm(tmp_path, [70.0, 71.0, 72.0], [70.01, 71.02, 72.0])  # inside the claim's +-0.1
    c = claim(ReportData(tmp_path, 50), "Classifier normalisation")
    assert c.status == claims.DIRECTION and "margin +-0.1 (the claim's own)" in c.measured
    other = tmp_path / "wide"
    _norm(other, [70.0, 71.0, 72.0], [70.5, 69.0, 73.5])  # mean diff ~0 but the CI is wide
    assert claim(ReportData(other, 50), "Classifier normalisation").status == claims.INCONCLUSIVE
    far = tmp_path / "far"
    _norm(far, [70.0, 71.0, 72.0], [71.0, 72.1, 73.0])  # ~1 point apart on every seed: outside +-0.1
    assert claim(ReportData(far, 50), "Classifier normalisation").status == claims.NOT_REPRODUCED


def test_one_seed_direction_is_indicative_and_two_seeds_need_a_test(tmp_path):
    write(tmp_path, "default", "imlgcn", "imlgcn", 0, 62.0)
    write(tmp_path, "default", "mlgcn", "mlgcn", 0, 40.0)
    c = claim(ReportData(tmp_path, 50), "Outperforms ML-GCN")
    assert c.status == claims.INDICATIVE and "1 seed: no test" in c.measured
    write(tmp_path, "default", "imlgcn", "imlgcn", 1, 45.0)
    write(tmp_path, "default", "mlgcn", "mlgcn", 1, 44.0)  # 2 seeds, not significant, far from powered
    c = claim(ReportData(tmp_path, 50), "Outperforms ML-GCN")
    assert c.status == claims.LEANS and "minimum detectable effect" in c.measured


def _t(kind, diff, n, p, low, high, effect=None, margin=None, sd=0.3):
    return claims.Test("k", kind, diff, n, sd, low, high, p, None, effect, margin)


def test_decide_is_the_single_rule(tmp_path):
    data = ReportData(tmp_path, 50)
    assert claims.decide(data, _t("greater", 3.0, 1, np.nan, np.nan, np.nan), True) == claims.INDICATIVE
    assert claims.decide(data, _t("greater", -3.0, 1, np.nan, np.nan, np.nan), True) == claims.INDICATIVE_NOT
    assert claims.decide(data, _t("greater", 3.0, 3, 0.01, 1, 5), True) == claims.DIRECTION
    assert claims.decide(data, _t("greater", 3.0, 3, 0.01, 1, 5), False) == claims.REPRODUCED
    assert claims.decide(data, _t("greater", -3.0, 3, 0.01, -5, -1), True) == claims.CONTRADICTED  # the sign
    # not significant: underpowered for the paper's 0.2 -> its direction; powered for 5.0 -> not reproduced
    assert claims.decide(data, _t("greater", 0.3, 3, 0.3, -1, 1.6, effect=0.2), True) == claims.LEANS
    assert claims.decide(data, _t("greater", -0.3, 3, 0.3, -1.6, 1, effect=0.2), True) == claims.AGAINST
    assert claims.decide(data, _t("greater", 0.3, 3, 0.3, -1, 1.6, effect=5.0), True) == claims.NOT_REPRODUCED
    assert claims.decide(data, _t("equal", 0.1, 3, 0.01, -0.3, 0.4, margin=0.5), True) == claims.DIRECTION
    assert claims.decide(data, _t("equal", 0.1, 3, 0.2, -0.6, 0.4, margin=0.5), True) == claims.INCONCLUSIVE
    assert claims.decide(data, _t("equal", 1.5, 3, 0.9, 0.8, 2.2, margin=0.5), True) == claims.NOT_REPRODUCED
    assert claims.decide(data, _t("equal", 6.59, 1, np.nan, np.nan, np.nan, margin=0.5), True) == claims.INDICATIVE_NOT


# ----------------------------------------------------------------------------- rule 3

def test_probmcl_mdn_removed_at_inference_uses_inference_parameters(tmp_path):
    row(tmp_path, "probmcl", "probmcl", [60.0, 61.0, 62.0], params_m=1.318)  # training model (MDN in)
    row(tmp_path, "baseline", "baseline", [60.0, 61.0, 62.0], params_m=0.657)
    c = claim(ReportData(tmp_path, 50), "The MDN is removed after contrastive training")
    assert c.status == claims.NOT_REPRODUCED and "no inference cost row" in c.measured  # fallback says so
    (tmp_path / "cost").mkdir()
    rows = [{"method": m, "mode": "inference", "params_m": 0.6567, "gmacs": 0.0541, "backbone": "smallcnn",
             "resolution": 48, "hparams": {}} for m in ("probmcl", "baseline")]
    rows.append({"method": "probmcl", "mode": "training", "stage": "contrastive", "params_m": 1.3162,
                 "backbone": "smallcnn", "resolution": 48, "hparams": {}})
    (tmp_path / "cost" / "default.json").write_text(json.dumps({"rows": rows}))
    c = claim(ReportData(tmp_path, 50), "The MDN is removed after contrastive training")
    assert c.status == claims.REPRODUCED
    assert "inference-time parameters" in c.measured and "0.6567 M vs baseline 0.6567 M" in c.measured
    assert "bench cost --suite default" in c.measured


# ----------------------------------------------------------------------------- rule 4

def test_probmcl_at_chance_is_no_evidence_not_not_reproduced(tmp_path):
    row(tmp_path, "kmcl", "kmcl", [66.0, 67.0, 66.5])
    row(tmp_path, "asl", "asl", [70.0, 71.0, 70.5])
    row(tmp_path, "probmcl", "probmcl", [23.9, 24.1, 23.7], CR=100.0, CP=20.3, chance=20.3)
    data = ReportData(tmp_path, 50)
    for text in ("ProbMCL beats KMCL", "ProbMCL beats ASL", "TResNet-L at 448"):
        c = claim(data, text)
        assert c.status == claims.FAILED, text
        assert "no evidence: probmcl seed 0" in c.measured and "chance" in c.measured


def test_each_failure_signal_alone(tmp_path):
    def health(**kw):
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        rec = write(root, "default", "x", "probmcl", 0, kw.pop("mAP", 60.0), **kw)
        return ReportData(root, 50).health(rec)

    assert health().failed == ()
    assert "chance" in health(mAP=22.0, chance=20.0).failed[0]
    assert "collapsed" in health(collapse={"collapsed": True, "dead_fraction": 0.9}).failed[0]
    assert health(collapse=None).failed == ()  # non-ProbMCL rows: None
    assert "chance" in health(mAP=27.0, chance=20.0).failed[0]  # within 10 % of the way to 100
    assert health(mAP=29.0, chance=20.0).failed == ()
    # all positive at 0.5 with a good ranking: the 0.5-threshold metrics are no evidence, the run is
    everything = health(CR=99.6, CP=20.5, chance=20.0)
    assert everything.failed == () and "all positive" in everything.degenerate_at_threshold[0]
    assert health(CR=99.6, CP=60.0, chance=20.0).degenerate_at_threshold == ()  # recall high but precise
    assert "all negative" in health(CR=0.0).degenerate_at_threshold[0]
    slow = health(convergence={"window": [5, 6], "last_quarter_gain": 2.1, "converged": False})
    assert slow.failed == () and slow.not_converged and slow.last_quarter_gain == 2.1


def test_chance_level_from_the_predictions_when_the_record_has_none(tmp_path):
    rec = write(tmp_path, "default", "x", "probmcl", 0, 31.0, chance=None)
    targets = np.zeros((100, 2), dtype=np.int8)
    targets[:30, 0] = 1
    targets[:30, 1] = 1  # prevalence 30 % per class -> chance 30.0
    np.savez(tmp_path / "default" / rec["job_id"] / "predictions.npz",
             test_scores=np.random.default_rng(0).random((100, 2)), test_targets=targets)
    data = ReportData(tmp_path, 50)
    assert abs(data.chance(rec) - 30.0) < 1e-9 and data.health(rec).is_failed


def test_trick_claim_excludes_failed_rows(tmp_path):
    def trick(gain):
        return {"training_free": {"val_selected_lambda": 0.1, "fixed_lambda": 0.2, "baseline_test_mAP": 60.0,
                                  "test_mAP": {"0.1": 60.0 + gain, "0.2": 60.0 + gain}}}
    for seed, g in zip(SEEDS, (1.0, 1.2, 1.1)):
        write(tmp_path, "default", "asl", "asl", seed, 60.0, **trick(g))
        write(tmp_path, "default", "probmcl", "probmcl", seed, 24.0, CR=100.0, CP=20.0, **trick(0.0))
    c = claim(ReportData(tmp_path, 50), "The training-free max-pooling trick consistently improves")
    assert c.status == claims.DIRECTION and "excluded, no evidence: probmcl (failed run" in c.measured


def test_not_converged_is_a_weaker_flag(tmp_path):
    conv = {"window": [5, 6], "last_quarter_gain": 1.8, "converged": False}
    row(tmp_path, "imlgcn", "imlgcn", [60.0, 61.0, 62.2], convergence=conv)
    row(tmp_path, "mlgcn", "mlgcn", [43.0, 44.1, 45.0])
    c = claim(ReportData(tmp_path, 50), "Outperforms ML-GCN")
    assert c.status == claims.DIRECTION  # the verdict stands ...
    assert c.flag and claims.NOT_CONVERGED in c.measured and "gain 1.80" in c.measured  # ... and says so


# ----------------------------------------------------------------------------- rule 5

def test_every_verdict_shows_numbers_and_command(tmp_path):
    row(tmp_path, "imlgcn", "imlgcn", [60.0, 61.0, 62.2])
    row(tmp_path, "mlgcn", "mlgcn", [43.0, 44.1, 45.0])
    row(tmp_path, "probmcl", "probmcl", [23.9, 24.1, 23.7], CR=100.0, CP=20.3)
    _nodes(tmp_path, word=[58.6], image=[55.7], pca=[60.8])
    _norm(tmp_path, [71.16], [64.57])
    data = ReportData(tmp_path, 50)
    for c in claims.text_claims(data):
        assert c.status in claims.STATUSES
        if c.status in (claims.NEEDS, claims.PENDING):
            assert "`" in c.measured, c.claim  # the command that would make the records
            continue
        assert "`" in c.measured or c.measured.startswith("paper's own numbers"), c.claim
        assert any(ch.isdigit() for ch in c.measured), c.claim


# ----------------------------------------------------------------------------- issue 21 on today's records

RESULTS = Path(__file__).resolve().parent.parent / "results"
needs_results = pytest.mark.skipif(not (RESULTS / "default").is_dir(), reason="committed records not here")


@pytest.fixture(scope="session")  # session: an xdist worker may run other modules' tests in between
def today():
    data = ReportData(RESULTS, 100)
    return data, {c.claim: c for c in claims.text_claims(data)}


def _today(today, start):
    found = [c for text, c in today[1].items() if text.startswith(start)]
    assert len(found) == 1, start
    return found[0]


@needs_results
def test_test_time_is_like_for_like_and_needs_the_sign(today):
    c = _today(today, "8 heads add 8% test time")  # was: in direction on CSRA 0.73 s vs trick-timed 1.17 s
    # issue 26: decided by the counted GMACs at the paper's setting; wall-clock beside, one machine, not deciding
    assert c.status == claims.NOT_REPRODUCED and c.arith == claims.ARITH_OK and "+0.82 % GMACs" in c.measured
    assert "baseline max-pool" in c.measured and "neither runs the training-free trick" in c.measured
    assert "one wall-clock time per run" in c.measured and "positive (CI above 0)" in c.measured
    assert "on one machine (Intel(R) Xeon(R) Processor x2)" in c.measured and "not deciding" in c.measured
    train = _today(today, "8 heads add only 0.8% training time")  # was: 'does not hold' from wall-clock
    assert train.status == claims.REPRODUCED and "31.5842 vs 31.3274 GMAC = +0.82 % GMACs" in train.measured


@needs_results
def test_all_lambdas_vs_baseline_is_seed_paired_every_value(today):
    c = _today(today, "All Lambda values give mAP far higher")  # was: not reproduced by CI non-overlap
    # issue 26: Fig. 5 is H = 1: decided on the H = 1 sweep, every value seed-paired with the baseline
    assert c.status == claims.LEANS and "`ablation-csra-lambda-h1-cpu`" in c.measured
    assert "0.02: 60.1 (3 seeds)" in c.measured and "0.02 - baseline (default): +0.57" in c.measured
    assert "1 - baseline (default): +3.11" in c.measured
    peak = _today(today, "ResNet-cut peaks at Lambda = 0.1")
    assert peak.status == claims.AGAINST and "best at 0.5" in peak.measured and "0.1 - 0.5: -1.49" in peak.measured


@needs_results
def test_fig5_without_an_h1_sweep_is_not_run_and_names_the_command():
    # the H = 6 sweep alone is another configuration: listed, never deciding
    data = ReportData(RESULTS, 100)
    del data.suites["ablation-csra-lambda-h1-cpu"]
    fig5 = next(c for c in claims.text_claims(data) if c.claim.startswith("All Lambda values give mAP far higher"))
    assert fig5.status == claims.NOT_RUN and "num_heads = 6 (the paper's: 1)" in fig5.measured
    assert "sweeps/ablation-csra-lambda-h1-cpu.yaml" in fig5.measured and "0.02: 60.6 (3 seeds)" in fig5.measured


@needs_results
def test_trick_robust_margin_is_the_claims_own(today):
    c = _today(today, "The trick is robust")  # was: passed a +-0.5 margin by 0.002
    assert c.status == claims.INCONCLUSIVE and "margin +-0.4" in c.measured and "baseline +0.43" in c.measured


@needs_results
def test_imlgcn_vs_mlgcn_word_vectors_flagged_and_one_hot_control(today):
    c = _today(today, "Outperforms ML-GCN")
    assert "near-synonym class names: mean pairwise cosine 0.41" in c.measured
    assert "'three'/'four' 0.99" in c.measured and "imlgcn - mlgcn one-hot: +0.40" in c.measured
    assert c.status not in (claims.DIRECTION, claims.REPRODUCED)


@needs_results
def test_empirical_and_arithmetic_outcomes_are_separate(today):
    c = _today(today, "IML-GCN with PCA is 0.8% better")  # was: not reproduced by the paper's rounding
    assert c.arith == claims.ARITH_BAD and c.status != claims.NOT_REPRODUCED
    assert _today(today, "2 M less parameters").status == claims.ARITH_OK
    pca = _today(today, "PCA on the image embeddings")  # was: in direction on 3/3 unconverged runs
    # issue 26: IML-GCN's backbone stage passes the one (calibrated) loss rule; not significant after Holm
    assert pca.status == claims.LEANS and pca.arith == claims.ARITH_OK


@needs_results
def test_inconclusive_underpowered_with_the_minimum_detectable_effect(today):
    c = _today(today, "mAP increases steadily with the number of heads")
    # issue 26: mAP falls monotonically with H (tau -1): against the claim, not "underpowered"; the MDE is
    # quoted at the level Holm used for the test (was 1.21 at the uncorrected 0.05)
    assert c.status == claims.AGAINST and "Kendall tau -1.00" in c.measured
    assert "minimum detectable effect 3.09 (80 % power at the Holm level" in c.measured
    assert "vs the paper's 0.2" in c.measured
    counts = {c.status for c in today[1].values()}
    assert claims.INCONCLUSIVE in counts and claims.STAGE_INCONCLUSIVE in counts


@needs_results
def test_holm_over_the_ledgers_tests(today):
    data, _ = today
    assert len(data.holm_adjusted) >= 20
    raw = data.ledger_tests
    key = next(k for k in raw if k.endswith("num_heads:8>1:greater") or "num_heads:8~1" in k)
    assert data.holm_adjusted[key] > raw[key] and raw[key] < 0.05 <= data.holm_adjusted[key]


@needs_results
def test_probmcl_training_cost_shows_the_numbers_it_used(today):
    c = _today(today, "ProbMCL has the lowest training cost")
    assert c.status == claims.NOT_REPRODUCED
    assert "probmcl 46.99 M / 62.66 GMAC (stage contrastive)" in c.measured
    assert "inference: probmcl 42.66 M / 31.33 GMAC" in c.measured and "csra 43.48 M" in c.measured


@needs_results
def test_trick_claims_list_every_suite_by_regime(today):
    c = _today(today, "The training-free max-pooling trick consistently improves")
    assert "`default` (CPU suite, deciding" in c.measured and "`imagenet-lite0` regime check" in c.measured
    assert "asl -0.04 (1 seed(s)" in c.measured and "no image bootstrap" in c.measured


@needs_results
def test_convergence_recomputed_from_history_every_stage(today):
    from bench.evaluate.convergence import assess

    data, _ = today
    lite = next(r for r in data.suites["imagenet-lite0"] if r["job"]["method"] == "probmcl")
    assert lite["convergence"]["converged"] is True  # stored by older code on a 1-epoch window
    a = assess(lite)
    assert a["selection"]["converged"] is False and "too short" in a["selection"]["reason"]
    prob = data.runs("default", "probmcl")[0]
    stage1 = assess(prob)["earlier"][0]
    assert stage1["stage"] == "contrastive" and stage1["statistic"] == "loss_drop" and stage1["value"] > 2.0
    assert data.health(prob).earlier_not_converged
    beats_asl = _today(today, "ProbMCL beats ASL")
    # issue 26: 11.8 points below ASL, significant after Holm: a measured result at the budgets run
    assert beats_asl.status == claims.STAGE_CONTRADICTED
    # the ledger says why no converged ProbMCL evidence exists: the stage-1 budget sweep's longest point
    assert "stage-1 budget sweep `ablation-probmcl-stage1-cpu` (13 / 26 / 52 contrastive epochs" in beats_asl.measured
    # issue 26: under the one calibrated loss rule the 52-epoch point passes on some seeds, and the line says how many
    assert "no budget's stage 1 converged on every seed (the longest, 52 epochs: 2/3 seeds" in beats_asl.measured


@pytest.fixture(scope="session")
def report_text(tmp_path_factory):
    from bench.report import build

    figs = tmp_path_factory.mktemp("figs")
    (figs / "training-free-lambda-ablation-probmcl-tau-cpu.png").write_bytes(b"orphan")
    pages = build.render_pages(RESULTS, RESULTS.parent / "REPORT.md", figures_dir=figs, bootstrap_resamples=50)
    return "".join(pages.values()), figs  # REPORT.md, then the generated cells page


@needs_results
def test_report_flags_unconverged_and_one_seed_rows(report_text):
    text, figs = report_text
    lite = text[text.index("## Methods under one budget (`imagenet-lite0`)"):text.index("## ProbMCL: stage-1")]
    assert "| csra - baseline | 1 | -8.59" in lite and "**1 seed: no test, indicative only**" in lite
    assert "**csra not converged** (1/1)" in lite
    t1 = text[text.index("### IML-GCN Table 1"):text.index("### IML-GCN Table 3")]
    # issue 26: one convergence rule: IML-GCN's backbone stage (drop 3.9-5.0 %) passes the calibrated loss rule
    assert "IML-GCN F_I (ours: imlgcn node_features=image, `ablation-imlgcn-nodes-cpu`) — **not converged** (3/3)" in t1
    assert "earlier stage" not in t1
    t3 = text[text.index("### IML-GCN Table 3"):text.index("### CSRA Table 1")]
    assert "**not converged** (3/3)" in t3
    fig5 = text[text.index("### CSRA Fig. 5"):text.index("### CSRA Table 7")]
    assert "**not converged** (1/3)" in fig5
    assert "stage without validation: training-loss drop" in text and "Power of the rule" in text


@needs_results
def test_report_tables_thresholds_tdrg_stage1_and_orphans(report_text):
    text, figs = report_text
    assert not (figs / "training-free-lambda-ablation-probmcl-tau-cpu.png").exists()
    assert "| TDRG | 75.20 | 64.40 | out of scope: TDRG is not a method of this benchmark |" in text
    assert "pending" not in text[text.index("### ProbMCL Table 3"):text.index("### ProbMCL Sec. 3.2")].lower()
    t1 = text[text.index("### ProbMCL Table 1"):text.index("### ProbMCL Table 3")]
    assert "asl (ours, val-tuned threshold" in t1 and "inference threshold of 0.5" in t1
    s1 = text[text.index("## ProbMCL: stage-1 budget"):text.index("## The papers' tables")]
    assert "probmcl (`default`) — reference, equal budget | 13 | 20 | 49.3 ± 0.24 (sd, 3 seeds)" in s1
    assert "bench sweep sweeps/ablation-probmcl-stage1-cpu.yaml" in s1 or "stage1=" in s1
    # the controls sit in the same table, each with its recipe; only the paper-recipe budgets form the line
    assert "| probmcl stage2=fine-tune (`ablation-probmcl-stage2-cpu`) | 13 | 20 | 53.3" in s1
    assert "| shared, fine tune |" in s1 and "| method, linear probe, raw h |" in s1
    assert "inconclusive (underpowered): " in text[text.index("Counts:"):]


def _captured(monkeypatch):
    from bench.report.figures import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    return plots, figs


def _boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return renderer, [lg.get_window_extent(renderer) for lg in fig.legends]


@needs_results
def test_plot_legends_titles_and_axes_do_not_collide(today, monkeypatch):
    plots, figs = _captured(monkeypatch)
    data, _ = today
    for method, names, axis in (("probmcl", ("overlap",), "overlap"), ("csra", ("num_heads",), "heads"),
                                ("imlgcn", ("node_features",), "nodes"), ("csra", ("mode",), "mode")):
        plots.sweep_figure(data.curves(method, names, axis, "ref")[0], Path("x.png"))
    for fig in figs:
        renderer, legends = _boxes(fig)
        assert len(legends) == 1 and not any(ax.get_legend() for ax in fig.axes)  # one legend, no second one
        for ax in fig.axes:
            assert not legends[0].overlaps(ax.get_window_extent(renderer))  # below the plot: hides nothing
        main, *twins = fig.axes
        title = main.title.get_window_extent(renderer)
        for twin in twins:
            assert not title.overlaps(twin.yaxis.get_tightbbox(renderer))  # the title stays off the right axis


@needs_results
def test_paper_zero_aligned_and_learning_curves_share_y(today, monkeypatch):
    plots, figs = _captured(monkeypatch)
    data, _ = today
    plots.trick_figure(data, "default", Path("t.png"))
    # issue 26: no secondary axis: the paper's gains share ours (both in mAP points), labelled by dataset
    (ax,) = figs[0].axes
    labels = ax.get_legend_handles_labels()[1] + [t.get_text() for lg in figs[0].legends for t in lg.get_texts()]
    assert any("paper Table 1, MS-COCO" in t for t in labels) and any("paper Table 1, VOC2007" in t for t in labels)
    plots.learning_curves_figure(data, "default", Path("l.png"))
    limits = {tuple(round(v, 6) for v in a.get_ylim()) for a in figs[1].axes if a.get_visible()}
    assert len(limits) == 1
