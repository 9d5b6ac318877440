"""The decision rule: which label a row's probabilities become (`eval.decision`).

`argmax` labels each row with its most probable class. On skewed data (ConvAbuse: 17%
abusive) a well-calibrated model's argmax rarely names the minority class, and macro-F1,
the headline metric, rewards naming it more often: a model with better probabilities
can lose on macro-F1 to a worse-calibrated one that over-predicts the minority class.

`validation` keeps the probabilities and moves the decision: one additive offset per class
on the log-probabilities (class 0's fixed at 0), the same for every annotator, chosen to
maximise macro_f1 + micro_f1 (eval.json's two F1s, smoothed over neighbouring offsets, ties
to the smaller offset) on the VALIDATION split, never on the split it is applied to:
- a run scoring the eval split fits the offsets on the validation split's predictions and
  applies them to the eval split's;
- a tuning run (eval.split=validation) scores the validation split itself, so it is
  cross-fitted: the validation items are split in two halves by item and each half is
  labelled with the offsets fitted on the other (an in-sample fit would flatter every setting).
Probabilities and the soft metrics (soft_ce, ...) do not change; eval.json keeps the argmax
metrics under `argmax` and the offsets under `decision`, and `hyperscale predict` applies them.

Offsets are searched on a grid (-3 .. 3 in steps of 0.1) and each scored by the mean over its
neighbours, so a lucky cut between two rows is not chosen over a broad plateau; 3+ classes by
coordinate ascent over the classes.
"""

from __future__ import annotations

import numpy as np

from hyperscale.eval.metrics import EPS, macro_f1_present, perspectivist_metrics

GRID = np.round(np.arange(-3.0, 3.0 + 1e-9, 0.1), 1)  # offsets tried per class (log-probability units)
SMOOTH = 3  # the score of an offset is the mean over it and its 3 grid neighbours each side
ROUNDS = 3  # coordinate-ascent rounds over the classes (3+ classes)


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
    """(C,) log-probability offsets (offsets[0] = 0) maximising macro_f1 + micro_f1 on these rows.

    Offsets come from GRID, each scored by the mean over its SMOOTH grid neighbours on each side: on a
    few hundred rows the exact best cut is mostly noise, a broad plateau of good cuts is not. Ties go to
    the smallest offset. Classes beyond the second are set by coordinate ascent (ROUNDS rounds)."""
    gold, annotators = np.asarray(gold), np.asarray(annotators)
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, None))
    n_classes = logp.shape[1]
    offsets = np.zeros(n_classes)
    if len(gold) == 0 or n_classes < 2:
        return offsets
    kernel = np.ones(2 * SMOOTH + 1) / (2 * SMOOTH + 1)
    for _ in range(ROUNDS if n_classes > 2 else 1):
        before = offsets.copy()
        for c in range(1, n_classes):
            scores = []
            for value in GRID:
                trial = offsets.copy()
                trial[c] = value
                macro, micro = _score(gold, (logp + trial).argmax(1), annotators, n_classes, min_items)
                scores.append(macro + micro)
            padded = np.concatenate([np.full(SMOOTH, scores[0]), scores, np.full(SMOOTH, scores[-1])])
            smooth = np.convolve(padded, kernel, mode="valid")
            best = max(range(len(GRID)), key=lambda i: (round(smooth[i], 12), -abs(GRID[i])))
            offsets[c] = GRID[best]
        if np.array_equal(before, offsets):
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
