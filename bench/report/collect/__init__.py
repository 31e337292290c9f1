"""Stage 1, collect: finished records -> ReportData (grouping, seed statistics, paired comparisons, health), the papers' values, and the record readers `bench results` and `bench compare`."""
