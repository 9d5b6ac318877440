"""The synthetic generator: scale, determinism, and that groups really disagree."""

import itertools
import time

import numpy as np
import pytest

from hyperscale.data.config import DataConfig, SyntheticConfig
from hyperscale.data.load import load_data
from hyperscale.data.synthetic import FILLERS, TRIGGERS, ceilings, generate


def _mean_annotator_macro_f1(frame, pred) -> float:
    """Mean over annotators of per-annotator macro-F1 (binary "0"/"1"), as evaluation computes it."""
    y = frame["label"].to_numpy() == "1"
    scores = []
    for _, idx in frame.groupby("annotator").indices.items():
        f = []
        for cls in (True, False):
            tp = np.sum((pred[idx] == cls) & (y[idx] == cls))
            denom = np.sum(pred[idx] == cls) + np.sum(y[idx] == cls)
            f.append(1.0 if denom == 0 else 2 * tp / denom)
        scores.append(np.mean(f))
    return float(np.mean(scores))


def _triggers(frame, k):
    words = frame["text"].str.split()
    return np.array([[TRIGGERS[g] in w for g in range(k)] for w in words])


def test_hundred_thousand_annotators_fast_and_complete():
    cfg = SyntheticConfig(n_annotators=100_000, n_items=20_000, annotators_per_item=5, seed=3)
    t = time.perf_counter()
    frame = generate(cfg)
    elapsed = time.perf_counter() - t
    assert elapsed < 3.0, elapsed
    assert len(frame) == 100_000 and frame["annotator"].nunique() == 100_000
    assert frame["item_id"].nunique() == 20_000
    assert not frame.duplicated(["item_id", "annotator"]).any()
    assert frame.groupby("group")["annotator"].nunique().tolist() == [25_000] * 4


def test_deterministic_and_items_look_like_text():
    cfg = SyntheticConfig(n_annotators=40, n_items=300, seed=7)
    a, b = generate(cfg), generate(cfg)
    assert a.equals(b)
    assert not a.equals(generate(SyntheticConfig(n_annotators=40, n_items=300, seed=8)))
    lengths = a.drop_duplicates("item_id")["text"].str.split().str.len()
    assert lengths.min() == 8 and lengths.max() == 12
    vocab = set(FILLERS) | set(TRIGGERS)
    assert all(set(t.split()) <= vocab for t in a["text"].unique())
    # Each trigger is in about half the items (600 draws: 0.5 +- 0.06 at ~3 sigma).
    share = _triggers(a.drop_duplicates("item_id"), 4).mean(0)
    assert np.all(np.abs(share - 0.5) < 0.09), share


def test_labels_follow_the_group_rule_with_noise():
    clean = generate(SyntheticConfig(n_annotators=40, n_items=2000, seed=1))
    present = _triggers(clean, 4)
    rule = present[np.arange(len(clean)), clean["group"].to_numpy()]
    assert np.array_equal(rule, clean["label"].to_numpy() == "1")
    noisy = generate(SyntheticConfig(n_annotators=40, n_items=2000, label_noise=0.1, seed=1))
    flipped = np.mean(rule != (noisy["label"].to_numpy() == "1"))
    assert abs(flipped - 0.1) < 0.015, flipped  # 10,000 labels: sd 0.003


def test_blind_ceiling_well_below_aware_on_generated_data():
    frame = generate(SyntheticConfig(n_annotators=400, n_items=4000, annotators_per_item=5, seed=2))
    present = _triggers(frame, 4)
    y = frame["label"].to_numpy() == "1"
    aware = present[np.arange(len(frame)), frame["group"].to_numpy()]
    # Blind: the majority of groups per item, ties broken by trigger 0 (the optimum, see ceilings()).
    count = present.sum(1)
    blind = np.where(count == 2, present[:, 0], count > 2)
    assert np.array_equal(aware, y)
    got_aware, got_blind = _mean_annotator_macro_f1(frame, aware), _mean_annotator_macro_f1(frame, blind)
    assert got_aware == 1.0
    # 50 labels per annotator make per-annotator F1 noisy; the mean over 400 is within ~0.02.
    assert abs(got_blind - 0.6875) < 0.03, got_blind
    # And the best text-only table fitted on the data itself (the most any blind model can
    # learn: one answer per distinct trigger set) does no better than the ceiling.
    keys = present @ (1 << np.arange(4))
    table = {k: y[keys == k].mean() >= 0.5 for k in np.unique(keys)}
    fitted = np.array([table[k] for k in keys])
    assert _mean_annotator_macro_f1(frame, fitted) < 0.6875 + 0.03


@pytest.mark.parametrize("k,noise", [(1, 0.0), (2, 0.0), (3, 0.0), (4, 0.0), (2, 0.2), (4, 0.1)])
def test_closed_form_ceiling_matches_enumerating_every_blind_predictor(k, noise):
    subsets = np.array(list(itertools.product([0, 1], repeat=k)), dtype=float)  # (2^K, K)
    funcs = np.arange(2 ** len(subsets))[:, None]
    pred = ((funcs >> np.arange(len(subsets))[None, :]) & 1).astype(float)  # every f: {0,1}^K -> {0,1}
    score = 0.0
    for g in range(k):
        p1 = np.where(subsets[:, g] == 1, 1 - noise, noise)
        tp, fp = (pred * p1).mean(1), (pred * (1 - p1)).mean(1)
        fn, tn = ((1 - pred) * p1).mean(1), ((1 - pred) * (1 - p1)).mean(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
            f0 = np.where(2 * tn + fp + fn > 0, 2 * tn / (2 * tn + fp + fn), 1.0)
        score = score + (f1 + f0) / 2 / k
    c = ceilings(k, noise)
    assert score.max() == pytest.approx(c["blind"], abs=1e-12)
    assert c["aware"] == pytest.approx(1 - noise)
    assert ceilings(4)["blind"] == 0.6875 and ceilings(8)["blind"] == pytest.approx(0.63671875)


def test_task_and_language_columns_shift_the_rule():
    cfg = DataConfig(source="synthetic", synthetic=SyntheticConfig(n_annotators=20, n_items=500, n_tasks=3,
                                                                   n_languages=2, seed=4))
    data = load_data(cfg)
    assert data.condition_fields() == ["annotator", "task", "language"]
    frame = data.train
    assert set(frame["task"]) == {"t0", "t1", "t2"} and set(frame["language"]) == {"l0", "l1"}
    rule = (frame["group"] + frame["task"].str[1:].astype(int) + frame["language"].str[1:].astype(int)) % 4
    present = _triggers(frame, 4)
    assert np.array_equal(present[np.arange(len(frame)), rule.to_numpy()], frame["label"].to_numpy() == "1")
    vocab = data.condition_vocab()
    assert (vocab.size("annotator"), vocab.size("task"), vocab.size("language")) == (20, 3, 2)
