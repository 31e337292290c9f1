"""Stage 4, tables and figures: the papers' tables beside ours, the ablation, per-class and diagnostic figures (PNG, byte-deterministic)."""
