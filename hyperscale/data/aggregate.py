"""`adapter.aggregate_labels`: train on each item's majority label, one row per item.

This is the classic "aggregate, then train" baseline that perspectivist papers
(Ignatev et al. 2025; Davani et al. 2022) compare against: the disagreement is
voted away before the model sees it. Only the train frame is aggregated; eval
stays per (item, annotator) so every kind is scored on the same rows. Which kinds
may aggregate is each kind's own check (adapters/kinds/); the config refuses the
rest before anything loads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

AGGREGATED_ANNOTATOR = "__majority__"


def majority_labels(frame: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """One row per item carrying its majority label.

    Ties go to the class that is most frequent over all train rows (then to the
    lower label index), so a 2-2 split on a skewed set resolves the way a
    majority-class model would, and the result never depends on row order.
    """
    order = {name: i for i, name in enumerate(labels)}
    overall = frame["label"].value_counts()
    # Rank of each class for tie-breaking: frequent first, then label order.
    rank = {c: (-int(overall.get(c, 0)), order.get(c, len(order))) for c in frame["label"].unique()}
    counts = frame.groupby(["item_id", "label"], sort=False).size().reset_index(name="n")
    counts["key"] = [(-n, *rank[c]) for n, c in zip(counts["n"], counts["label"])]
    winner = counts.sort_values("key", kind="stable").drop_duplicates("item_id")[["item_id", "label"]]
    items = frame.drop_duplicates("item_id").drop(columns=["label"])
    out = items.merge(winner, on="item_id", how="left")[frame.columns]
    out["annotator"] = AGGREGATED_ANNOTATOR
    return out.reset_index(drop=True)


def label_distribution(frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """(C,) share of each class among the rows."""
    counts = frame["label"].value_counts()
    dist = np.array([counts.get(c, 0) for c in labels], dtype=np.float64)
    return dist / max(1.0, dist.sum())
