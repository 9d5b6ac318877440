"""Per-annotator evaluation of perspectivist predictions (field names are a README contract).

- `macro_f1`: macro-F1 over classes for each annotator with at least
  `min_items` eval rows, then the mean over those annotators;
- `micro_f1`: macro-F1 over classes on all (item, annotator) pairs pooled;
- `pos_f1` (binary labels): F1 of the non-majority class over all pairs;
- `accuracy`, `n_annotators`, `n_examples`, `per_annotator`.
A predict-the-majority-class reference is always computed beside the model
(`majority_baseline`): on skewed data a model that answers "not offensive" to
everyone scores a respectable mean per-annotator macro-F1 (annotators whose eval
items are all negative get 1.0 for it) while its positive-class F1 is 0.
"""

from __future__ import annotations

import numpy as np


def f1_per_class(gold: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C,) F1 of each class; a class absent from both gold and pred scores 1.0 (nothing to get wrong)."""
    out = np.zeros(n_classes)
    for c in range(n_classes):
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        out[c] = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    return out


def macro_f1_present(gold: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over the classes present in gold or pred (sklearn's convention)."""
    present = np.union1d(np.unique(gold), np.unique(pred))
    return float(np.mean(f1_per_class(gold, pred, n_classes)[present]))


def perspectivist_metrics(gold: np.ndarray, pred: np.ndarray, annotators: np.ndarray, labels: list[str],
                          min_items: int = 5, majority_class: int | None = None) -> dict:
    """Metrics over (item, annotator) rows. `majority_class` names the non-positive class for pos_f1."""
    n_classes = len(labels)
    gold, pred, annotators = np.asarray(gold), np.asarray(pred), np.asarray(annotators)
    per_annotator = {}
    scored = []
    for ann in np.unique(annotators):
        sel = annotators == ann
        f1 = macro_f1_present(gold[sel], pred[sel], n_classes)
        per_annotator[str(ann)] = {"macro_f1": f1, "accuracy": float(np.mean(gold[sel] == pred[sel])),
                                   "n": int(sel.sum())}
        if sel.sum() >= min_items:
            scored.append(f1)
    class_f1 = f1_per_class(gold, pred, n_classes)
    out = {
        "macro_f1": float(np.mean(scored)) if scored else float("nan"),
        "micro_f1": macro_f1_present(gold, pred, n_classes),
        "accuracy": float(np.mean(gold == pred)) if len(gold) else float("nan"),
        "f1_per_class": {labels[c]: float(class_f1[c]) for c in range(n_classes)},
        "n_annotators": len(scored),
        "n_annotators_total": len(per_annotator),
        "n_examples": int(len(gold)),
        "per_annotator": per_annotator,
    }
    if n_classes == 2:
        majority = majority_class if majority_class is not None else int(np.bincount(gold, minlength=2).argmax())
        out["pos_f1"] = float(class_f1[1 - majority])
        out["pos_label"] = labels[1 - majority]
    return out


def majority_reference(gold: np.ndarray, annotators: np.ndarray, labels: list[str], train_majority: int,
                       min_items: int = 5) -> dict:
    """The same metrics for a model that always predicts the training majority class."""
    pred = np.full_like(np.asarray(gold), train_majority)
    ref = perspectivist_metrics(gold, pred, annotators, labels, min_items, majority_class=train_majority)
    ref.pop("per_annotator")
    return ref
