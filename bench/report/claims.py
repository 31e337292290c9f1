"""The claims ledger: every numeric claim of the three papers, with a status decided by code.

Text claims are listed in :data:`bench.report.claims_text.TEXT_CLAIMS` (paper, where, claim, check);
every table cell of :mod:`bench.report.paper_values` is a claim too (:func:`table_cell_claims`).
The rules and the checks live in :mod:`bench.report.checks` (re-exported here).
"""
from __future__ import annotations

from bench.report import paper_values as pv
from bench.report.checks import *  # noqa: F401,F403  (the rules, statuses and checks)
from bench.report.checks import NEEDS, Claim, ReportData, cost_match
from bench.report.claims_text import TEXT_CLAIMS


def text_claims(data: ReportData) -> list[Claim]:
    out = []
    for paper, where, claim, check in TEXT_CLAIMS:
        verdict = check(data)
        out.append(Claim(paper, where, claim, verdict[0], verdict[1], getattr(verdict, "flag", "")))
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
