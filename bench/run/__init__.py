"""Running jobs: executors (local, Slurm), DDP, the runner, the store, provenance, pretraining."""
