"""The claims ledger: every numeric claim of the three papers, with a status decided by code.

Text claims are listed in :data:`bench.report.ledger.claims_text.TEXT_CLAIMS` (paper, where, claim, check);
every table cell of :mod:`bench.report.collect.paper_values` is a claim too (:func:`table_cell_claims`).
The rules and the checks live in :mod:`bench.report.ledger.rules` (re-exported here).
"""
from __future__ import annotations

from bench.report.collect import paper_values as pv
from bench.report.ledger.rules import *  # noqa: F401,F403  (the rules, statuses and checks)
from bench.report.ledger.rules import NEEDS, OUT_OF_SCOPE, Claim, ReportData, holm_pass
from bench.report.ledger.costs import *  # noqa: F401,F403
from bench.report.ledger.costs import cost_match
from bench.report.ledger.rows import *  # noqa: F401,F403
from bench.report.ledger.claims_text import TEXT_CLAIMS

#: The configuration a paper's cost cell was counted at (CSRA's parameter claim: H = 1).
PAPER_CONFIGURATION = {"CSRA": {"num_heads": 1}}
#: Rows of the papers' tables that are no method of this benchmark.
OUT_OF_SCOPE_ROWS = {"TDRG": "TDRG is not a method of this benchmark"}


def text_claims(data: ReportData) -> list[Claim]:
    """Every text claim, decided with the Holm correction over all of the ledger's tests
    (two passes: collect the deciding p-values, then decide on the adjusted ones); cached."""
    cached = getattr(data, "_text_claims", None)
    if cached is not None:
        return cached

    def run() -> list[Claim]:
        out = []
        for paper, where, claim, check in TEXT_CLAIMS:
            v = check(data)
            out.append(Claim(paper, where, claim, v[0], v[1], getattr(v, "flag", ""), getattr(v, "arith", ""),
                             tuple(getattr(v, "tests", ())), getattr(v, "ours", ""), tuple(getattr(v, "records", ()))))
        return out
    data._text_claims = holm_pass(data, run)
    return data._text_claims


def table_cell_claims(data: ReportData) -> list[Claim]:
    """One claim per paper table cell: cost cells checked against the cost records, the rest
    need the paper's data (commands in paper_values.DATA_COMMANDS)."""
    methods = {"ML-GCN": "mlgcn", "CSRA": "csra", "ProbMCL": "probmcl", "TDRG": "tdrg"}
    out = []
    for v in pv.all_values():
        if v.row in OUT_OF_SCOPE_ROWS:
            measured, status = f"{OUT_OF_SCOPE}: {OUT_OF_SCOPE_ROWS[v.row]}", OUT_OF_SCOPE
        elif v.dataset == "cost":
            where = PAPER_CONFIGURATION.get(v.row)
            measured, status = cost_match(methods[v.row], v.column, v.value, where=where)(data)
        else:
            measured, status = f"`{pv.DATA_COMMANDS[v.dataset]}`", NEEDS
        out.append(Claim(v.paper, f"{v.table}, row {v.row}, column {v.column}", f"{v.value:g}", measured, status))
    return out
