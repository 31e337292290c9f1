"""Scoring: the evaluator (AP, mAP, CP/CR/F1), thresholds, convergence, statistics, a job's final evaluation."""
