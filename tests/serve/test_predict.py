"""load_run and Predictor: a text x annotator matrix from a run directory, unknown annotators flagged."""

import numpy as np
import pytest
import torch

from hyperscale.data.vocab import ConditionVocab
from hyperscale.errors import CheckpointError
from hyperscale.serve.predict import Predictor
from hyperscale.serve.run import load_run

from tests.helpers import ANNOTATORS, make_run

def test_load_run_restores_the_trained_model(tmp_path):
    model = make_run(tmp_path)
    run = load_run(tmp_path)
    saved = dict(model.named_parameters())
    for name, p in run.model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p, saved[name], rtol=0, atol=0)


def test_load_run_refuses_mismatched_weights(tmp_path):
    make_run(tmp_path)
    ConditionVocab({"annotator": ANNOTATORS + ["extra"]}).save(tmp_path / "vocab.json")  # tables 1 row too small
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_run(tmp_path)


@pytest.mark.parametrize("kind", ["hyper_lora", "multi_head"])
def test_predict_matrix_shape_and_unknown_flags(tmp_path, kind):
    make_run(tmp_path, kind)
    predictor = Predictor.from_run(tmp_path)
    texts = ["the old road", "apple river candle", "a quiet garden in the morning"]
    asked = ["a1", "new-1", "a4", "new-2"]
    long = predictor.predict(texts, asked)
    assert len(long) == len(texts) * len(asked)
    assert long.groupby("annotator", sort=False)["known"].first().to_dict() == {
        "a1": True, "new-1": False, "a4": True, "new-2": False}
    probs = long[["p_0", "p_1"]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    wide = Predictor.matrix(long)
    assert wide.shape == (3, 4) and list(wide.columns) == ["a1", "new-1*", "a4", "new-2*"]
    # every unknown annotator gets the same fallback; known annotators are told apart
    p1 = long.pivot(index="text_index", columns="annotator", values="p_1")
    np.testing.assert_allclose(p1["new-1"], p1["new-2"], rtol=0, atol=1e-6)
    assert (p1["a1"] - p1["a4"]).abs().max() > 1e-3


def test_predict_all_annotators_matches_single_row_forwards(tmp_path):
    make_run(tmp_path)
    predictor = Predictor.from_run(tmp_path)
    texts = ["green apple tree", "tiger violin"]
    long = predictor.predict(texts, "all")
    assert len(long) == 2 * len(ANNOTATORS)
    # the batched matrix equals asking one (text, annotator) at a time
    one = predictor.predict([texts[1]], ["a5"])
    row = long[(long.text_index == 1) & (long.annotator == "a5")]
    assert float(row["p_1"].iloc[0]) == pytest.approx(float(one["p_1"].iloc[0]), abs=1e-5)


def test_predict_cli_writes_csv(tmp_path, capsys):
    from hyperscale.cli import main

    make_run(tmp_path)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tmp_path), "--text", "apple", "--text", "river road",
                 "--annotators", "a0,zzz", "--out", str(out)]) == 0
    import pandas as pd

    frame = pd.read_csv(out)
    assert frame.shape[0] == 4 and frame["known"].tolist() == [True, False, True, False]
    assert "unknown" in capsys.readouterr().err


def test_predict_refuses_empty_texts_and_merges_repeated_annotators(tmp_path):
    """D7: --text "" crashed in a reshape; a01,a01 crashed in pandas; a blank CSV cell became the text "nan"."""
    from hyperscale.errors import DataError
    from hyperscale.serve.predict import read_texts

    make_run(tmp_path)
    predictor = Predictor.from_run(tmp_path)
    with pytest.raises(DataError, match="text 2 of 2 is empty.*Fix"):
        predictor.predict(["apple", "  "], ["a1"])
    long = predictor.predict(["apple"], "a1,a1,a2")
    assert long["annotator"].tolist() == ["a1", "a2"] and Predictor.matrix(long).shape == (1, 2)
    csv = tmp_path / "texts.csv"
    csv.write_text("text\napple river\n\"\"\nnan\n")
    assert read_texts(str(csv)) == ["apple river", "", "nan"]  # a blank cell stays blank, "nan" stays a word
    with pytest.raises(DataError, match="text 2 of 3 is empty"):
        predictor.predict(read_texts(str(csv)), ["a1"])
    with pytest.raises(DataError, match="not a file"):
        read_texts(str(tmp_path / "nope.csv"))
