"""The claims ledger's legend (rules and statuses, defined once, in REPORT.md) and the generated
page docs/report-cells.md: the ledger's evidence for every text claim, the papers' tables beside
ours, per-class AP, and every paper table cell with its status. Plus the provenance section."""
from __future__ import annotations

from collections import Counter
from typing import Any

from bench.evaluate import stats
from bench.report.ledger import claims
from bench.report.collect.records import ReportData, fmt, md_table

CELLS_PAGE = "docs/report-cells.md"


def rules(data: ReportData) -> list[str]:
    """REPORT.md's "Claims ledger" section: the rules, the statuses, the counts; the evidence is on
    the generated page."""
    text = claims.text_claims(data)
    cells = claims.table_cell_claims(data)
    counts = Counter(c.status for c in text + cells)
    arith = Counter(c.arith for c in text if c.arith)
    tests = len(getattr(data, "holm_adjusted", None) or {})
    return ["## Claims ledger", "",
            "Every numeric claim of the three papers: the claims in their text and every table cell, with the "
            f"evidence each verdict rests on, are on the generated page [{CELLS_PAGE}]({CELLS_PAGE}). The status is "
            "decided by code (`bench/report/ledger/rules.py`) from the records, by rules applied to every claim:", "",
            "1. the evidence is the comparison the paper made, at the paper's configuration (the ablation sweep of "
            "that axis of that method at the paper's other settings, e.g. CSRA's H; two rows of the main suite for "
            "a method-vs-method claim), never a proxy across methods; a configuration the records lack is *"
            f"{claims.NOT_RUN}* with the command that runs it; every other suite with evidence (imagenet-lite0) is "
            "listed under the claim as a regime check, not deciding;",
            f"2. one statistical procedure everywhere: the seed-paired t-test, the paired image bootstrap beside it "
            f"(or the reason there is none); the ledger's {tests} deciding p-values are Holm-corrected together (as "
            f"is each significance table); a difference holds when the Holm p < {stats.ALPHA}, the sign is the "
            "claimed one and the bootstrap 95 % CI excludes 0; *no difference* holds when the TOST p against the "
            f"claim's own margin (shown) is below {stats.ALPHA} after Holm. A result significant after Holm in the "
            f"opposite direction is *{claims.CONTRADICTED}*. A result not significant after Holm is "
            f"*{claims.NOT_REPRODUCED}* when its minimum detectable effect (80 % power) at the level Holm used for "
            f"that test is at or below the paper's effect; else it says its direction: *{claims.LEANS}* or "
            f"*{claims.AGAINST}* (with that MDE shown); {claims.MIN_SEEDS}+ seeds per side, one seed gives at most "
            "*indicative*;",
            "3. claims about parameters and compute are decided by counted parameters and GMACs at the paper's "
            "setting (`results/cost/`; the inference model for inference claims, the costliest stage for "
            "training-cost claims); wall-clock times are shown beside as indicative, compared only within one "
            "machine, never deciding;",
            f"4. a verdict resting on a run that failed to train is *{claims.FAILED}*; one resting on a run whose "
            f"earlier stage did not converge (the one convergence rule, legend of the methods tables) is "
            f"*{claims.STAGE_INCONCLUSIVE}*, or *{claims.STAGE_CONTRADICTED}* when the opposite result is "
            "significant after Holm (a measured result at that budget); a not-converged selection stage is "
            "listed beside the verdict;",
            "5. every verdict shows its numbers and the command that produced them; the paper's own arithmetic "
            "has its own status, never mixed with an empirical one.", "",
            f"Statuses not defined above: **{claims.REPRODUCED}** = a scale-independent fact holds (parameter counts "
            f"equal within {100 * claims.PARAM_TOLERANCE:g} %, a cost count within {100 * claims.COST_TOLERANCE:g} % "
            f"of the paper's, a claimed percentage within {claims.RATIO_TOLERANCE:g} points), or rule 2 holds on the "
            f"paper's data; **{claims.DIRECTION}** = rule 2 holds on the embedded data; **{claims.INDICATIVE}** / "
            f"**{claims.INDICATIVE_NOT}** = one seed: the direction only; **{claims.INCONCLUSIVE}** = an equivalence "
            f"claim whose TOST is not significant and whose CI is not outside the margin; **{claims.NEEDS}** (with "
            f"the command), **{claims.OUT_OF_SCOPE}** (not a method here), **{claims.PENDING}** (this project's "
            "suites make the records).", "",
            "Counts: " + ", ".join(f"{s}: {counts[s]}" for s in claims.STATUSES if counts[s]) + ". Paper arithmetic "
            "inside claims: " + ", ".join(f"{s}: {arith.get(s, 0)}" for s in claims.ARITHMETIC) + ".", ""]


def cells_page(data: ReportData, report_link: str) -> str:
    """docs/report-cells.md: the ledger's evidence, the papers' tables beside ours, per-class AP, every cell."""
    from bench.report.figures.per_class import section as per_class
    from bench.report.figures.tables import all_tables

    text = claims.text_claims(data)
    cells = claims.table_cell_claims(data)
    lines = ["<!-- GENERATED FILE: do not edit by hand. Regenerate with `bench report`. -->",
             "# Claims ledger: the evidence, the papers' tables and every cell", "",
             f"Generated with [REPORT.md]({report_link}) by `bench report` from the same records; the rules and "
             f"statuses are defined once, in [REPORT.md's claims ledger]({report_link}#claims-ledger).", "",
             "## Claims in the text", "",
             md_table(["Paper", "Where", "Claim", "Measured here", "Status", "Paper's arithmetic"],
                      [[c.paper, c.where, c.claim, c.measured,
                        c.status + (" (flagged: see measured)" if c.flag else ""), c.arith or "—"] for c in text]), "",
             "## The papers' tables beside ours", ""]
    for table in all_tables(data):
        lines += [table, ""]
    lines += per_class(data)
    lines += ["## Table cells", "", f"{len(cells)} cells (paper, table, row, column, value).", "",
              md_table(["Paper", "Cell", "Value", "Measured here / command", "Status"],
                       [[c.paper, c.where, c.claim, c.measured, c.status] for c in cells]), ""]
    return "\n".join(lines).rstrip() + "\n"


def provenance(data: ReportData) -> list[str]:
    records = data.all_records()
    out = ["## Provenance", ""]
    if not records:
        return out + ["No records.", ""]
    prov = [r.get("provenance", {}) for r in records]
    commits = Counter(f"{p.get('git_commit', '?')}{' (dirty)' if p.get('git_dirty') else ''}" for p in prov)
    packages: dict[str, set[str]] = {}
    for p in prov:
        for name, version in (p.get("packages") or {}).items():
            packages.setdefault(name, set()).add(str(version))
    machines = Counter(f"{p.get('platform', '?')} {p.get('machine', '?')}, device {p.get('device', '?')}, "
                       f"{p.get('threads', '?')} threads, Python {p.get('python', '?')}" for p in prov)
    rows = []
    for suite in sorted(data.suites):
        recs = data.suites[suite]
        prints = sorted({f"{r.get('data', {}).get('name', '?')}:{r.get('data', {}).get('fingerprint', '?')}"
                         for r in recs})
        rows.append([suite, str(len(recs)), ", ".join(prints),
                     fmt(sum(r["timing"]["wall_s"] for r in recs) / 3600, 2)])
    total = sum(r["timing"]["wall_s"] for r in records)
    out += [md_table(["Suite", "runs", "data fingerprints", "compute (h, sum of wall_s)"], rows), "",
            f"Total: {len(records)} runs, {fmt(total / 3600, 2)} h of compute (sum of wall_s).", "",
            "Commits: " + "; ".join(f"`{c}` ({n} runs)" for c, n in sorted(commits.items())) + ".", "",
            "Code fingerprints: " + "; ".join(f"`{c}` ({n} runs)" for c, n in sorted(Counter(
                str(p.get("code_fingerprint") or "none recorded") for p in prov).items()))
            + " (which of them are stale is marked above).", "",
            "Machines: " + "; ".join(f"{m} ({n} runs)" for m, n in sorted(machines.items())) + ".", "",
            "Packages: " + ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(packages.items())) + ".", ""]
    for name in sorted(data.costs):
        commit = (data.costs[name].get("provenance") or {}).get("git_commit", "?")
        out += [f"Cost record `results/cost/{name}.json`: commit `{commit}`.", ""]
    return out
