"""Per-annotator evaluation of perspectivist predictions (field names are a README contract: "Evaluation").

- `macro_f1`: macro-F1 over classes for each annotator with at least
  `min_items` eval rows, then the mean over those annotators;
- `micro_f1`: macro-F1 over classes on all (item, annotator) pairs pooled;
- `pos_f1` (binary labels): F1 of the non-majority class over all pairs;
- `accuracy`, `n_annotators`, `n_examples`, `per_annotator`.
A predict-the-majority-class reference is always computed beside the model
(`majority_baseline`): on skewed data a model that answers "not offensive" to
everyone scores a respectable mean per-annotator macro-F1 (annotators whose eval
items are all negative get 1.0 for it) while its positive-class F1 is 0.

Soft-label metrics (the Learning-with-Disagreements shared tasks, LeWiDi 2023/2025),
per eval item i over the annotators who labelled it:
- gold distribution g_i: the share of each class among the item's annotator labels;
- predicted distribution p_i: the MEAN over those same annotators of the model's
  predicted per-annotator probabilities (softmax of the logits given each
  annotator's condition) -- i.e. the model's own estimate of how that very crowd
  splits, not a separate "average annotator" forward;
- `soft_ce`: -sum_c g_ic log p_ic (p clipped at 1e-12), mean over items;
- `soft_manhattan`: sum_c |g_ic - p_ic| (in [0, 2]), mean over items;
- `soft_jsd`: Jensen-Shannon divergence in bits (log base 2, in [0, 1]), mean over items.
Hard aggregate: `majority_vote_f1` is the macro-F1 over items of the majority of the
predicted per-annotator labels against the majority of the gold labels (ties go to
the training majority class, then to the lower class index).
The majority reference's soft metrics use the training label prior as p_i for every
item (a one-hot majority would make the cross-entropy infinite).
"""

from __future__ import annotations

import csv
import io

import numpy as np

EPS = 1e-12


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
    """Macro-F1 over the classes present in gold or pred (sklearn's convention). A prediction outside
    the classes (index >= n_classes: an sft generation parsed to no label) is wrong for every class."""
    present = np.union1d(np.unique(gold), np.unique(pred))
    present = present[present < n_classes]
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
                       min_items: int = 5, item_ids: np.ndarray | None = None,
                       prior: np.ndarray | None = None) -> dict:
    """The same metrics for a model that always predicts the training majority class.

    With `item_ids`, also the majority-vote F1 and (given the train label `prior`)
    the soft metrics of a model that predicts the prior for everyone.
    """
    pred = np.full_like(np.asarray(gold), train_majority)
    ref = perspectivist_metrics(gold, pred, annotators, labels, min_items, majority_class=train_majority)
    ref.pop("per_annotator")
    if item_ids is not None:
        ref.update(majority_vote_metrics(gold, pred, item_ids, len(labels), train_majority))
        if prior is not None:
            probs = np.tile(np.asarray(prior, dtype=np.float64), (len(gold), 1))
            ref.update(soft_label_metrics(gold, probs, item_ids, len(labels)))
    return ref


# -- soft labels and aggregates over each item's annotators ----------------------------

def item_distributions(gold: np.ndarray, probs: np.ndarray, item_ids: np.ndarray,
                       n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_items, C) gold label shares and mean predicted probabilities per item."""
    _, inv = np.unique(np.asarray(item_ids), return_inverse=True)
    n_items = int(inv.max()) + 1 if len(inv) else 0
    g = np.zeros((n_items, n_classes))
    np.add.at(g, (inv, np.asarray(gold)), 1.0)
    p = np.zeros((n_items, n_classes))
    np.add.at(p, inv, np.asarray(probs, dtype=np.float64))
    count = g.sum(1, keepdims=True)
    return g / count, p / count


def _entropy_terms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_c a log2(a / b) per row, with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(a > 0, a * (np.log2(np.maximum(a, EPS)) - np.log2(np.maximum(b, EPS))), 0.0)
    return t.sum(1)


def soft_label_metrics(gold: np.ndarray, probs: np.ndarray, item_ids: np.ndarray, n_classes: int) -> dict:
    """Cross-entropy, Manhattan distance and JSD of predicted vs annotator label distributions."""
    if len(gold) == 0:
        return {"soft_ce": float("nan"), "soft_manhattan": float("nan"), "soft_jsd": float("nan"), "n_items": 0}
    g, p = item_distributions(gold, probs, item_ids, n_classes)
    ce = -(g * np.log(np.maximum(p, EPS))).sum(1)
    manhattan = np.abs(g - p).sum(1)
    m = 0.5 * (g + p)
    jsd = 0.5 * _entropy_terms(g, m) + 0.5 * _entropy_terms(p, m)
    return {"soft_ce": float(ce.mean()), "soft_manhattan": float(manhattan.mean()),
            "soft_jsd": float(np.clip(jsd, 0.0, 1.0).mean()), "n_items": int(len(g))}


def majority_vote(labels: np.ndarray, item_ids: np.ndarray, n_classes: int, tie_class: int) -> np.ndarray:
    """(n_items,) majority label per item (items in np.unique order); ties -> tie_class, else lowest index."""
    _, inv = np.unique(np.asarray(item_ids), return_inverse=True)
    counts = np.zeros((int(inv.max()) + 1 if len(inv) else 0, n_classes))
    np.add.at(counts, (inv, np.asarray(labels)), 1.0)
    is_max = counts == counts.max(1, keepdims=True)
    return np.where(is_max[:, tie_class], tie_class, is_max.argmax(1))


def majority_vote_metrics(gold: np.ndarray, pred: np.ndarray, item_ids: np.ndarray, n_classes: int,
                          tie_class: int) -> dict:
    """Macro-F1 and accuracy of the majority of predicted labels vs the gold majority, per item."""
    if len(gold) == 0:
        return {"majority_vote_f1": float("nan"), "majority_vote_accuracy": float("nan")}
    g = majority_vote(gold, item_ids, n_classes, tie_class)
    p = majority_vote(pred, item_ids, n_classes, tie_class)
    return {"majority_vote_f1": macro_f1_present(g, p, n_classes),
            "majority_vote_accuracy": float(np.mean(g == p))}


def per_annotator_nll(gold: np.ndarray, probs: np.ndarray, annotators: np.ndarray) -> dict[str, float]:
    """Mean negative log-likelihood of each annotator's own labels."""
    gold, annotators = np.asarray(gold), np.asarray(annotators)
    nll = -np.log(np.maximum(np.asarray(probs)[np.arange(len(gold)), gold], EPS))
    return {str(a): float(nll[annotators == a].mean()) for a in np.unique(annotators)}


PER_ANNOTATOR_COLUMNS = ("annotator", "known", "n", "macro_f1", "accuracy", "nll")
# model.task=sft (eval/sft.py): completion loss per annotator; macro_f1 / accuracy when labels are parsed
SFT_PER_ANNOTATOR_COLUMNS = ("annotator", "known", "n", "n_tokens", "completion_loss", "perplexity", "macro_f1",
                             "accuracy")


def write_per_annotator_csv(path, per_annotator: dict) -> None:
    """per_annotator.csv: one row per eval annotator (columns PER_ANNOTATOR_COLUMNS, or
    SFT_PER_ANNOTATOR_COLUMNS for an sft run)."""
    from hyperscale.rundir import write_atomic

    sft = any("completion_loss" in rec for rec in per_annotator.values())
    columns = SFT_PER_ANNOTATOR_COLUMNS if sft else PER_ANNOTATOR_COLUMNS
    out = io.StringIO(newline="")
    w = csv.writer(out)
    w.writerow(columns)
    for ann, rec in per_annotator.items():
        w.writerow([ann] + [rec.get(c, "") for c in columns[1:]])
    write_atomic(path, out.getvalue())
