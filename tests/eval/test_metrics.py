"""Per-annotator, soft-label and majority-vote metrics and the per-annotator CSV, against hand-computed values."""

import csv
import math

import numpy as np
import pytest

from hyperscale.eval.metrics import (majority_reference, majority_vote, majority_vote_metrics, perspectivist_metrics,
                                     soft_label_metrics, write_per_annotator_csv)

# Two items. Item "x": annotators say 0, 0, 1 -> gold (2/3, 1/3); the model gives them
# p(1) = 0.2, 0.2, 0.5 -> mean (0.7, 0.3). Item "y": one annotator says 1 -> gold (0, 1);
# model p(1) = 0.6 -> (0.4, 0.6).
GOLD = np.array([0, 0, 1, 1])
ITEMS = np.array(["x", "x", "x", "y"])
PROBS = np.array([[0.8, 0.2], [0.8, 0.2], [0.5, 0.5], [0.4, 0.6]])


def _kl2(a, b):
    return sum(ai * math.log2(ai / bi) for ai, bi in zip(a, b) if ai > 0)


def test_soft_metrics_match_hand_computed_values():
    m = soft_label_metrics(GOLD, PROBS, ITEMS, 2)
    ce_x = -(2 / 3 * math.log(0.7) + 1 / 3 * math.log(0.3))
    ce_y = -math.log(0.6)
    assert m["soft_ce"] == pytest.approx((ce_x + ce_y) / 2, abs=1e-12)
    # |2/3 - 0.7| + |1/3 - 0.3| = 0.0667; |0 - 0.4| + |1 - 0.6| = 0.8
    assert m["soft_manhattan"] == pytest.approx((2 * (0.7 - 2 / 3) + 0.8) / 2, abs=1e-12)
    jsd = []
    for g, p in (((2 / 3, 1 / 3), (0.7, 0.3)), ((0.0, 1.0), (0.4, 0.6))):
        mid = [(a + b) / 2 for a, b in zip(g, p)]
        jsd.append(0.5 * _kl2(g, mid) + 0.5 * _kl2(p, mid))
    assert m["soft_jsd"] == pytest.approx(np.mean(jsd), abs=1e-12)
    assert m["n_items"] == 2


def test_soft_metrics_extremes():
    gold = np.array([0, 1])
    perfect = soft_label_metrics(gold, np.eye(2), np.array(["a", "b"]), 2)
    assert perfect["soft_ce"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["soft_manhattan"] == 0.0 and perfect["soft_jsd"] == pytest.approx(0.0, abs=1e-12)
    wrong = soft_label_metrics(gold, np.eye(2)[::-1], np.array(["a", "b"]), 2)
    assert wrong["soft_manhattan"] == 2.0  # disjoint distributions: the maximum
    assert wrong["soft_jsd"] == pytest.approx(1.0, abs=1e-12)  # 1 bit, the maximum
    assert wrong["soft_ce"] == pytest.approx(-math.log(1e-12), rel=1e-9)  # clipped, finite


def test_majority_vote_and_ties():
    # item x: 0,0,1 -> 0; item y: 1 -> 1; item z: 0,1 tie -> tie_class
    labels = np.array([0, 0, 1, 1, 0, 1])
    items = np.array(["x", "x", "x", "y", "z", "z"])
    assert majority_vote(labels, items, 2, tie_class=1).tolist() == [0, 1, 1]
    assert majority_vote(labels, items, 2, tie_class=0).tolist() == [0, 1, 0]
    pred = np.array([1, 1, 1, 1, 0, 0])  # votes: x -> 1, y -> 1, z -> 0
    m = majority_vote_metrics(labels, pred, items, 2, tie_class=0)
    # gold (0,1,0) vs pred (1,1,0): class 0 F1 = 2*1/(2+1) = 2/3, class 1 F1 = 2*1/(2+1) = 2/3
    assert m["majority_vote_f1"] == pytest.approx(2 / 3, abs=1e-12)
    assert m["majority_vote_accuracy"] == pytest.approx(2 / 3, abs=1e-12)


def test_majority_reference_uses_train_prior_for_soft_metrics():
    ref = majority_reference(GOLD, np.array(["a", "b", "c", "a"]), ["0", "1"], 0, 1, item_ids=ITEMS,
                             prior=np.array([0.75, 0.25]))
    ce = (-(2 / 3 * math.log(0.75) + 1 / 3 * math.log(0.25)) - math.log(0.25)) / 2
    assert ref["soft_ce"] == pytest.approx(ce, abs=1e-12)
    assert ref["majority_vote_accuracy"] == pytest.approx(0.5)  # x: 0 right, y: 1 wrong


def test_per_annotator_csv(tmp_path):
    per = {"a1": {"macro_f1": 0.5, "accuracy": 0.75, "n": 4, "nll": 0.3, "known": True},
           "zz": {"macro_f1": 1.0, "accuracy": 1.0, "n": 2, "nll": 0.1, "known": False}}
    write_per_annotator_csv(tmp_path / "per_annotator.csv", per)
    rows = list(csv.DictReader(open(tmp_path / "per_annotator.csv")))
    assert [r["annotator"] for r in rows] == ["a1", "zz"]
    assert rows[1]["known"] == "False" and float(rows[0]["macro_f1"]) == 0.5 and rows[0]["n"] == "4"


# Four annotators, labels ["neg", "pos"], min_items 5:
#   A: gold 0 0 1 1 1, pred 0 1 1 1 0 -> F1(neg) = 2/4, F1(pos) = 4/6, macro 7/12
#   B: gold all 0, pred all 0       -> only "neg" present: macro 1.0 (a single-class annotator)
#   C: gold all 1, pred 1 1 0 1 1   -> F1(neg) = 0 (predicted, never gold), F1(pos) = 8/9, macro 4/9
#   D: gold 1 0, pred 1 1           -> 2 rows: in per_annotator, cut from macro_f1 (min_items)
PA_GOLD = np.array([0, 0, 1, 1, 1] + [0] * 5 + [1] * 5 + [1, 0])
PA_PRED = np.array([0, 1, 1, 1, 0] + [0] * 5 + [1, 1, 0, 1, 1] + [1, 1])
PA_ANN = np.array(["A"] * 5 + ["B"] * 5 + ["C"] * 5 + ["D"] * 2)


def test_per_annotator_metrics_match_hand_computed_values():
    m = perspectivist_metrics(PA_GOLD, PA_PRED, PA_ANN, ["neg", "pos"], min_items=5, majority_class=0)
    per = m["per_annotator"]
    assert per["A"]["macro_f1"] == pytest.approx(7 / 12)
    assert per["B"]["macro_f1"] == 1.0
    assert per["C"]["macro_f1"] == pytest.approx(4 / 9)
    assert per["D"]["macro_f1"] == pytest.approx(1 / 3) and per["D"]["n"] == 2
    assert m["macro_f1"] == pytest.approx((7 / 12 + 1 + 4 / 9) / 3)  # D is below min_items
    assert (m["n_annotators"], m["n_annotators_total"], m["n_examples"]) == (3, 4, 17)
    # Pooled over all 17 pairs: neg tp 6 fp 2 fn 2 -> 12/16; pos tp 7 fp 2 fn 2 -> 14/18.
    assert m["f1_per_class"] == pytest.approx({"neg": 0.75, "pos": 14 / 18})
    assert m["micro_f1"] == pytest.approx((0.75 + 14 / 18) / 2)
    assert m["accuracy"] == pytest.approx(13 / 17)
    # pos_f1 is the F1 of the class that is NOT the training majority.
    assert (m["pos_f1"], m["pos_label"]) == (pytest.approx(14 / 18), "pos")
    flipped = perspectivist_metrics(PA_GOLD, PA_PRED, PA_ANN, ["neg", "pos"], min_items=5, majority_class=1)
    assert (flipped["pos_f1"], flipped["pos_label"]) == (pytest.approx(0.75), "neg")
    assert perspectivist_metrics(PA_GOLD, PA_PRED, PA_ANN, ["neg", "pos"], min_items=2)["n_annotators"] == 4
