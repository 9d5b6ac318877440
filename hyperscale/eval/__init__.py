"""Evaluation: per-annotator metrics (metrics.py), scoring a model on the eval split (evaluate.py), plots (plots.py)."""
