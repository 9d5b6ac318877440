"""Serving a finished run: load it (run.py), label texts for any annotators (predict.py),
fit new annotators on a few labels (onboard.py)."""
