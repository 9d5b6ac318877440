"""The decision rule: which label a row's probabilities become (`eval.decision`).

`argmax` labels each row with its most probable class. On skewed data (ConvAbuse: 17%
abusive) a well-calibrated model's argmax rarely names the minority class, and macro-F1,
the headline metric, rewards naming it more often: a model with better probabilities
can lose on macro-F1 to a worse-calibrated one that over-predicts the minority class.

`validation` keeps the probabilities and moves the decision: one additive offset per class
on the log-probabilities (class 0's fixed at 0), the same for every annotator, chosen to
maximise the mean per-annotator macro-F1 (eval.json's `macro_f1`; ties by `micro_f1`, then
the smaller offsets) on the VALIDATION split, never on the split it is applied to:
- a run scoring the eval split fits the offsets on the validation split's predictions and
  applies them to the eval split's;
- a tuning run (eval.split=validation) scores the validation split itself, so it is
  cross-fitted: the validation items are split in two halves by item and each half is
  labelled with the offsets fitted on the other (an in-sample fit would flatter every setting).
Probabilities and the soft metrics (soft_ce, ...) do not change; eval.json keeps the argmax
metrics under `argmax` and the offsets under `decision`, and `hyperscale predict` applies them.

Binary labels: the offset is searched exactly (every distinct cut point of the rows'
log-odds). More classes: coordinate ascent over a grid per class, a few rounds.
"""

from __future__ import annotations

import numpy as np

from hyperscale.eval.metrics import EPS, macro_f1_present, perspectivist_metrics

GRID = np.linspace(-4.0, 4.0, 81)  # per-class offsets tried for 3+ classes (log-probability units)
ROUNDS = 3


def decide(probs: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    """Class index per row: argmax of log p + offsets (plain argmax without offsets)."""
    probs = np.asarray(probs, dtype=np.float64)
    if offsets is None:
        return probs.argmax(1)
    return (np.log(np.clip(probs, EPS, None)) + np.asarray(offsets, dtype=np.float64)).argmax(1)


def _score(gold, pred, annotators, n_classes, min_items) -> tuple[float, float]:
    labels = [str(c) for c in range(n_classes)]
    macro = perspectivist_metrics(gold, pred, annotators, labels, min_items)["macro_f1"]
    macro = macro if np.isfinite(macro) else -1.0
    return macro, macro_f1_present(gold, pred, n_classes)


def fit_offsets(gold: np.ndarray, probs: np.ndarray, annotators: np.ndarray, min_items: int = 5) -> np.ndarray:
    """(C,) log-probability offsets (offsets[0] = 0) maximising mean per-annotator macro-F1 on these rows."""
    gold, annotators = np.asarray(gold), np.asarray(annotators)
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, None))
    n_classes = logp.shape[1]
    offsets = np.zeros(n_classes)
    if len(gold) == 0 or n_classes < 2:
        return offsets

    def key(off: np.ndarray) -> tuple:
        macro, micro = _score(gold, (logp + off).argmax(1), annotators, n_classes, min_items)
        return macro, micro, -float(np.abs(off).sum())

    if n_classes == 2:
        # class 1 wins where logp1 - logp0 + b > 0: every distinct cut between sorted margins is a candidate
        margin = np.unique(logp[:, 1] - logp[:, 0])
        cuts = np.concatenate([[margin[0] - 1.0], (margin[:-1] + margin[1:]) / 2, [margin[-1] + 1.0]])
        candidates = np.unique(np.concatenate([-cuts, [0.0]]))
        best = max(candidates, key=lambda b: key(np.array([0.0, b])))
        offsets[1] = best
        return offsets
    best_key = key(offsets)
    for _ in range(ROUNDS):
        moved = False
        for c in range(1, n_classes):
            for value in GRID:
                trial = offsets.copy()
                trial[c] = value
                k = key(trial)
                if k > best_key:
                    best_key, offsets, moved = k, trial, True
        if not moved:
            break
    return offsets


def cross_fit(gold: np.ndarray, probs: np.ndarray, annotators: np.ndarray, item_ids: np.ndarray,
              min_items: int = 5, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Predictions for rows the offsets may not be fitted on: two halves by item, each labelled with the
    offsets fitted on the other half. Returns (pred, [offsets fitted on half 0, on half 1], each row's half)."""
    items = np.unique(np.asarray(item_ids).astype(str))
    rng = np.random.default_rng(seed)
    half_of_item = dict(zip(items, rng.permutation(len(items)) % 2))
    half = np.array([half_of_item[str(i)] for i in item_ids])
    pred = np.zeros(len(gold), dtype=np.int64)
    fitted = []
    for h in (0, 1):
        fit, apply = half == h, half != h
        off = fit_offsets(np.asarray(gold)[fit], np.asarray(probs)[fit], np.asarray(annotators)[fit], min_items)
        fitted.append(off)
        pred[apply] = decide(np.asarray(probs)[apply], off)
    return pred, fitted, half
