"""What to run: suite and sweep files -> validated specs -> JobSpecs (the job id)."""
