"""Callbacks a driver hangs on a run that trains in its own process (`hyperscale tune`'s trials).

The loop calls `on_eval(step, metrics)` after every mid-run evaluation (train.eval_every); a
Ray Tune trial sets it to report the validation metrics, so an early-stopping scheduler (ASHA)
can stop a bad trial. Nothing is set in an ordinary run.
"""

from __future__ import annotations

from typing import Callable

_on_eval: Callable[[int, dict], None] | None = None


def set_on_eval(fn: Callable[[int, dict], None] | None) -> None:
    global _on_eval
    _on_eval = fn


def on_eval(step: int, metrics: dict) -> None:
    if _on_eval is not None:
        _on_eval(step, metrics)
