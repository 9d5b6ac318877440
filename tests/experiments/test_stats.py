"""experiments/stats.py: the paired item bootstrap on hand-made predictions with known answers."""

import numpy as np
import pandas as pd
import pytest

from hyperscale.errors import RunDirError
from hyperscale.experiments.stats import ScoredRun, markdown, paired_bootstrap

LABELS = ["0", "1"]


def _frame(gold, pred, items, annotators, p_right=0.9):
    gold, pred = np.asarray(gold), np.asarray(pred)
    p1 = np.where(pred == 1, p_right, 1 - p_right)
    return pd.DataFrame({"item_id": items, "annotator": annotators, "gold": gold.astype(str),
                         "pred": pred.astype(str), "p_0": 1 - p1, "p_1": p1})


def _layout(n_items, per_item=3, seed=0):
    rng = np.random.default_rng(seed)
    items = np.repeat([f"i{k}" for k in range(n_items)], per_item)
    annotators = np.tile([f"a{k}" for k in range(per_item)], n_items)
    return rng.integers(0, 2, n_items * per_item), items, annotators


def _runs(**frames):
    return {k: [ScoredRun(f, LABELS) for f in (v if isinstance(v, list) else [v])] for k, v in frames.items()}


def test_identical_predictions_give_a_zero_interval():
    gold, items, ann = _layout(40)
    pred = np.where(np.random.default_rng(1).random(len(gold)) < 0.7, gold, 1 - gold)
    f = _frame(gold, pred, items, ann)
    out = paired_bootstrap(_runs(a=f, b=f.copy()), LABELS, min_items=5, n_boot=200)
    for m in ("macro_f1", "micro_f1", "soft_ce"):
        r = out["metrics"][m]["a"]
        assert (r["diff"], r["lo"], r["hi"]) == (0.0, 0.0, 0.0) and r["verdict"] == "tie"


def test_always_right_against_always_wrong_is_a_degenerate_interval():
    gold, items, ann = _layout(30)
    right, wrong = _frame(gold, gold, items, ann, 0.9), _frame(gold, 1 - gold, items, ann, 0.9)
    out = paired_bootstrap(_runs(right=right, wrong=wrong), LABELS, min_items=5, n_boot=200)
    for m in ("macro_f1", "micro_f1"):  # F1 1 against 0 on every resample
        r = out["metrics"][m]["right"]
        assert (r["diff"], r["lo"], r["hi"]) == (1.0, 1.0, 1.0) and r["verdict"] == "better"
        assert out["metrics"][m]["wrong"]["verdict"] == "worse"
    # soft CE: every item's gold shares g against 0.9/0.1 on the right side vs the mirror
    ce = out["metrics"]["soft_ce"]["right"]
    assert ce["diff"] < 0 and ce["hi"] < 0 and ce["verdict"] == "better"


def test_interval_contains_the_population_difference():
    # Kind a is right on 80% of rows, kind b on 70%, independently: on balanced classes the
    # population micro-F1 difference is ~0.10 (computed on 100,000 items from the same process).
    def draw(n_items, seed):
        gold, items, ann = _layout(n_items, seed=seed)
        rng = np.random.default_rng(seed + 100)
        a = np.where(rng.random(len(gold)) < 0.8, gold, 1 - gold)
        b = np.where(rng.random(len(gold)) < 0.7, gold, 1 - gold)
        return _frame(gold, a, items, ann), _frame(gold, b, items, ann)

    big_a, big_b = draw(100_000, 7)
    ra, rb = ScoredRun(big_a, LABELS), ScoredRun(big_b, LABELS)
    from hyperscale.eval.metrics import macro_f1_present

    truth = macro_f1_present(ra.gold, ra.pred, 2) - macro_f1_present(rb.gold, rb.pred, 2)
    a, b = draw(300, 3)
    r = paired_bootstrap(_runs(a=a, b=b), LABELS, n_boot=300)["metrics"]["micro_f1"]["a"]
    assert r["lo"] <= truth <= r["hi"] and r["lo"] <= r["diff"] <= r["hi"]
    assert 0.02 < r["hi"] - r["lo"] < 0.15 and r["verdict"] == "better"


def test_seeds_are_averaged_and_rows_must_align():
    gold, items, ann = _layout(20)
    right, wrong = _frame(gold, gold, items, ann), _frame(gold, 1 - gold, items, ann)
    # kind a: one seed always right, one always wrong -> mean micro-F1 0.5 on every resample
    out = paired_bootstrap(_runs(a=[right, wrong], b=wrong), LABELS, n_boot=50)
    r = out["metrics"]["micro_f1"]["a"]
    assert (r["value"], r["diff"], r["lo"], r["hi"]) == (0.5, 0.5, 0.5, 0.5)
    shuffled = right.iloc[::-1].reset_index(drop=True)
    with pytest.raises(RunDirError, match="same eval rows"):
        paired_bootstrap(_runs(a=right, b=shuffled), LABELS, n_boot=5)
    assert "vs best other" in markdown(out)


def test_a_run_is_scored_by_its_own_decision_or_by_the_argmax():
    """eval.decision=validation writes its labels to predictions.parquet's pred; the bootstrap scores those, and
    the plain argmax on request (and for files without a pred column)."""
    frame = pd.DataFrame({"item_id": ["i0", "i1", "i2"], "annotator": ["a", "a", "b"], "gold": ["1", "0", "1"],
                          "pred": ["1", "0", "1"], "p_0": [0.7, 0.9, 0.6], "p_1": [0.3, 0.1, 0.4]})
    labels = ["0", "1"]
    assert ScoredRun(frame, labels).pred.tolist() == [1, 0, 1]
    assert ScoredRun(frame, labels, argmax=True).pred.tolist() == [0, 0, 0]
    assert ScoredRun(frame.drop(columns="pred"), labels).pred.tolist() == [0, 0, 0]
