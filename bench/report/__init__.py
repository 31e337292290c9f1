"""From records to REPORT.md: tables, plots, the claims ledger, `bench results` and `bench compare`."""
