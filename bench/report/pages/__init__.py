"""Stage 5, pages: the sections of REPORT.md and the generated cells page, assembled by bench/report/build.py."""
