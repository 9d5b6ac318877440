"""A generated perspectivist set that a perspective-blind model provably cannot fit.

Each item is 8-12 plain English words (any tokenizer handles them): filler words plus,
independently with probability 1/2 each, the K = n_groups trigger words. Annotators are
split evenly (at random) into K groups; an annotator of group g labels an item "1" iff
trigger word g is in it, and each label is flipped with probability label_noise.
With tasks / languages, the rule index is (g + task + language) mod K instead of g, so
the same annotator follows a different trigger per task-language pair (Hyper-X style).

Ceilings (population limit, balanced groups, no tasks/languages; metric = mean over
annotators of per-annotator macro-F1, as in evaluation; `ceilings()` gives the closed
form and its proof, and a test checks it against all 2^(2^K) text-only predictors):

    n_groups  noise   perspective-blind   perspective-aware
    1         0.0     1.000               1.000   (control: everyone agrees)
    2         0.0     0.750               1.000
    4         0.0     0.6875              1.000   (the default)
    8         0.0     0.637               1.000
    4         0.1     0.650               0.900

A blind model gives every annotator of an item the same prediction, yet an item with
trigger set S is "1" for the groups in S and "0" for the others; its best is the
majority of groups per item. A perspective-aware model knows the group, so the rule
is exact and only the label noise is lost.

Speed: vectorised numpy; 100,000 annotators and 100,000 rows take well under a second
(the only Python loop joins each item's words).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hyperscale.data.config import SyntheticConfig

SYNTHETIC_LABELS = ["0", "1"]
TRIGGERS = ("apple", "river", "candle", "tiger", "violin", "mountain", "pepper", "rocket")
FILLERS = ("the", "a", "quiet", "small", "old", "green", "table", "window", "walk", "read", "blue", "house",
           "road", "chair", "paper", "cloud", "stone", "bright", "slow", "garden", "morning", "city", "letter",
           "music", "yellow", "warm", "soft", "little", "friend", "water", "door", "book", "light", "tree",
           "field", "happy", "simple", "open", "long", "round")
MIN_WORDS, MAX_WORDS = 8, 12


def generate(cfg: SyntheticConfig) -> pd.DataFrame:
    """Long-format rows (rows.COLUMNS + "group"), deterministic per cfg.seed."""
    rng = np.random.default_rng(cfg.seed)
    n, k = cfg.n_items, cfg.n_groups
    present = rng.random((n, k)) < 0.5  # (n_items, K) trigger g in item i
    length = rng.integers(MIN_WORDS, MAX_WORDS + 1, n)  # (n_items,)
    tokens = rng.integers(0, len(FILLERS), (n, MAX_WORDS))  # filler indices
    # A random permutation of positions 0..length-1 per item: the first K of it are
    # distinct positions for the K triggers (K <= 8 <= length).
    keys = rng.random((n, MAX_WORDS))
    keys[np.arange(MAX_WORDS)[None, :] >= length[:, None]] = 2.0
    perm = np.argsort(keys, axis=1)
    rows = np.arange(n)
    for g in range(k):
        pos = perm[:, g]
        tokens[rows, pos] = np.where(present[:, g], len(FILLERS) + g, tokens[rows, pos])
    vocab = np.array(FILLERS + TRIGGERS, dtype=object)
    texts = [" ".join(vocab[t[:m]]) for t, m in zip(tokens, length)]

    task = rng.integers(0, cfg.n_tasks, n) if cfg.n_tasks else np.zeros(n, dtype=np.int64)
    language = rng.integers(0, cfg.n_languages, n) if cfg.n_languages else np.zeros(n, dtype=np.int64)

    n_ann, per = cfg.n_annotators, cfg.annotators_per_item
    group_of = rng.permutation(n_ann) % k  # balanced groups, random membership
    # Round-robin over a shuffled annotator order: item i takes `per` consecutive slots,
    # so its annotators are distinct (per <= n_ann) and every annotator gets
    # floor or ceil(n * per / n_ann) items (>= 1, checked by SyntheticConfig).
    order = rng.permutation(n_ann)
    item_of_row = np.repeat(rows, per)  # (n_rows,)
    ann_of_row = order[np.arange(n * per) % n_ann]
    group = group_of[ann_of_row]
    rule = (group + task[item_of_row] + language[item_of_row]) % k
    y = present[item_of_row, rule]
    y ^= rng.random(len(y)) < cfg.label_noise

    width = len(str(n_ann - 1))
    ann_ids = np.array([f"a{j:0{width}d}" for j in range(n_ann)], dtype=object)
    item_ids = np.array([f"s{i:0{len(str(n - 1))}d}" for i in range(n)], dtype=object)
    frame = pd.DataFrame({
        "item_id": item_ids[item_of_row],
        "text": np.array(texts, dtype=object)[item_of_row],
        "annotator": ann_ids[ann_of_row],
        "label": np.where(y, "1", "0").astype(object),
        "task": (np.char.add("t", task[item_of_row].astype(str)).astype(object) if cfg.n_tasks
                 else pd.Series([None] * len(y), dtype=object)),
        "language": (np.char.add("l", language[item_of_row].astype(str)).astype(object) if cfg.n_languages
                     else pd.Series([None] * len(y), dtype=object)),
        "source_file": "synthetic",
        "source_row": np.arange(1, len(y) + 1, dtype=np.int64),
        "group": group.astype(np.int64),
    })
    frame["source_file"] = frame["source_file"].astype(object)
    return frame


# -- ceilings -----------------------------------------------------------------

def ceilings(n_groups: int, label_noise: float = 0.0) -> dict[str, float]:
    """Population-limit best mean per-annotator macro-F1: {"blind": .., "aware": ..}.

    blind = noise + (1 - 2 noise) * E[max(B, K - B)] / K,  B ~ Binomial(K, 1/2).
    Why: every group's labels are balanced (P(1) = 1/2), and for balanced labels
    macro-F1 = 1 + (acc - 1)/2 * (1/u + 1/(2 - u)) with u = P(pred 1) + 1/2, which is
    <= acc, with equality iff P(pred 1) = 1/2. So mean macro-F1 <= mean accuracy over
    groups, whose maximum over text-only predictors is the per-item majority of groups
    (B of the K groups say "1"). Majority with ties broken by trigger 0 predicts "1"
    half the time, so it attains the bound. aware = 1 - noise (the rule, known).
    """
    k, e = n_groups, label_noise
    b = np.arange(k + 1)
    p_b = np.array([math.comb(k, int(i)) for i in b], dtype=np.float64) / 2.0 ** k
    majority_acc = float((p_b * np.maximum(b, k - b)).sum() / k)
    return {"blind": e + (1 - 2 * e) * majority_acc, "aware": 1.0 - e}
