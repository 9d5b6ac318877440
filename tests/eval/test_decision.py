"""eval.decision=validation: per-class offsets chosen on validation rows, never on the rows they label."""

import json

import numpy as np
import pandas as pd
import pytest

from hyperscale.errors import ConfigError
from hyperscale.eval.decision import cross_fit, decide, fit_offsets
from hyperscale.eval.metrics import perspectivist_metrics
from tests.helpers import tiny_config


def _skewed(n=200, seed=0):
    """Binary rows whose positives are perfectly ranked but all below p=0.5: argmax never says 1."""
    rng = np.random.default_rng(seed)
    gold = (rng.random(n) < 0.2).astype(int)
    p1 = np.where(gold == 1, rng.uniform(0.30, 0.45, n), rng.uniform(0.01, 0.25, n))
    probs = np.stack([1 - p1, p1], 1)
    annotators = np.array([f"a{i % 4}" for i in range(n)])
    return gold, probs, annotators


def test_offsets_find_the_cut_argmax_misses():
    gold, probs, annotators = _skewed()
    labels = ["0", "1"]
    plain = perspectivist_metrics(gold, probs.argmax(1), annotators, labels)["macro_f1"]
    offsets = fit_offsets(gold, probs, annotators)
    decided = perspectivist_metrics(gold, decide(probs, offsets), annotators, labels)["macro_f1"]
    assert offsets[0] == 0.0 and offsets[1] > 0  # the minority class is pushed up
    assert decided == pytest.approx(1.0) and plain < 0.5
    # the cut lies between the two groups' log-odds: every positive above it, every negative below
    margin = np.log(probs[:, 1]) - np.log(probs[:, 0])
    assert margin[gold == 0].max() < -offsets[1] < margin[gold == 1].min()


def test_no_offsets_is_argmax_and_a_calibrated_argmax_stays_put():
    gold, probs, annotators = _skewed()
    assert (decide(probs, None) == probs.argmax(1)).all()
    # already separable at 0.5: the smallest offset that keeps the best score is 0
    sharp = np.stack([np.where(gold == 1, 0.1, 0.9), np.where(gold == 1, 0.9, 0.1)], 1)
    assert fit_offsets(gold, sharp, annotators).tolist() == [0.0, 0.0]


def test_three_classes_never_worse_than_argmax_on_the_rows_fitted():
    rng = np.random.default_rng(1)
    gold = rng.choice(3, 300, p=[0.7, 0.2, 0.1])
    logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[gold] - np.array([0.0, 1.0, 2.0])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    annotators = np.array([f"a{i % 5}" for i in range(300)])
    labels = ["0", "1", "2"]
    offsets = fit_offsets(gold, probs, annotators)
    plain = perspectivist_metrics(gold, probs.argmax(1), annotators, labels)["macro_f1"]
    decided = perspectivist_metrics(gold, decide(probs, offsets), annotators, labels)["macro_f1"]
    assert offsets[0] == 0.0 and decided > plain + 0.02


def test_cross_fit_labels_each_half_with_the_other_halfs_offsets():
    gold, probs, annotators = _skewed(400)
    items = np.array([f"i{k // 2}" for k in range(400)])  # two rows per item
    pred, fitted, half = cross_fit(gold, probs, annotators, items)
    for h in (0, 1):
        fit_rows = half == h
        assert (fitted[h] == fit_offsets(gold[fit_rows], probs[fit_rows], annotators[fit_rows])).all()
        assert (pred[~fit_rows] == decide(probs[~fit_rows], fitted[h])).all()
    # an item's rows stay in one half
    assert all(len(set(half[items == i])) == 1 for i in np.unique(items))
    assert 0.3 < half.mean() < 0.7


def test_decision_needs_a_validation_split_and_class_probabilities():
    with pytest.raises(ConfigError, match="eval.decision.*validation_fraction"):
        tiny_config("eval.decision=validation")
    with pytest.raises(ConfigError, match="eval.decision"):
        tiny_config("eval.decision=median")


# The decided run's training; a second test trains it again, scored on the validation split.
DECIDED = ("adapter.kind=hyper_lora", "train.max_steps=6", "data.validation_fraction=0.3", "eval.decision=validation",
           "train.log_every=3")


@pytest.fixture(scope="module")
def decided_run(tmp_path_factory):
    from hyperscale import api

    run_dir = tmp_path_factory.mktemp("decided") / "run"
    cfg = tiny_config(*DECIDED)
    return run_dir, api.train(cfg, run_dir, use_ray=False)


def test_a_run_scores_eval_with_offsets_fitted_on_validation(decided_run):
    run_dir, metrics = decided_run
    saved = json.loads((run_dir / "eval.json").read_text())
    d = saved["decision"]
    assert d["rule"] == "validation" and d["fitted_on"].startswith("validation split")
    assert saved["scored_split"] == "eval" and set(saved["argmax"]) >= {"macro_f1", "micro_f1"}
    frame = pd.read_parquet(run_dir / "predictions.parquet")
    labels = saved["labels"]
    probs = frame[[f"p_{c}" for c in labels]].to_numpy()
    expect = np.asarray(labels)[decide(probs, np.asarray(d["offsets"]))]
    assert (frame["pred"].to_numpy() == expect).all()
    gold = frame["gold"].map({c: i for i, c in enumerate(labels)}).to_numpy()
    pred = frame["pred"].map({c: i for i, c in enumerate(labels)}).to_numpy()
    assert saved["macro_f1"] == pytest.approx(
        perspectivist_metrics(gold, pred, frame["annotator"].to_numpy(), labels)["macro_f1"])
    assert saved["argmax"]["macro_f1"] == pytest.approx(
        perspectivist_metrics(gold, probs.argmax(1), frame["annotator"].to_numpy(), labels)["macro_f1"])


def test_an_eval_run_records_the_validation_scores_a_validation_run_of_it_gets(decided_run, tmp_path):
    from hyperscale import api

    run_dir, _ = decided_run
    seen = json.loads((run_dir / "eval.json").read_text())["decision"]["validation_argmax"]
    cfg = tiny_config(*DECIDED, "eval.split=validation")
    api.train(cfg, tmp_path / "val", use_ray=False)  # the same training, scored on the validation split
    scored = json.loads((tmp_path / "val" / "eval.json").read_text())
    assert seen == pytest.approx({"macro_f1": scored["argmax"]["macro_f1"], "micro_f1": scored["argmax"]["micro_f1"],
                                  "soft_ce": scored["soft_ce"]})


def test_predict_applies_the_runs_offsets(decided_run):
    from hyperscale.serve.predict import Predictor

    run_dir, _ = decided_run
    offsets = np.asarray(json.loads((run_dir / "eval.json").read_text())["decision"]["offsets"])
    predictor = Predictor.from_run(run_dir)
    out = predictor.predict(["a short text", "another one, longer than the first"], "all")
    labels = predictor.run.labels
    probs = out[[f"p_{c}" for c in labels]].to_numpy()
    assert (out["label"].to_numpy() == np.asarray(labels)[decide(probs, offsets)]).all()


def test_a_tuning_run_cross_fits_on_the_validation_split(tmp_path):
    from hyperscale import api

    cfg = tiny_config("adapter.kind=shared_lora", "train.max_steps=4", "data.validation_fraction=0.3",
                      "eval.decision=validation", "eval.split=validation")
    api.train(cfg, tmp_path / "run", use_ray=False)
    d = json.loads((tmp_path / "run" / "eval.json").read_text())["decision"]
    assert "cross-fit" in d["fitted_on"] and len(d["offsets_per_half"]) == 2 and len(d["offsets"]) == 2
