"""Corpus-scale predict: streamed parts, resumable, equal to predicting the same texts in one call."""

import numpy as np
import pandas as pd
import pytest

from hyperscale.errors import DataError, RunDirError
from hyperscale.serve.corpus import predict_file
from hyperscale.serve.predict import Predictor
from tests.helpers import make_run

WORDS = ["apple", "river", "candle", "tiger", "violin", "garden", "morning", "road", "quiet", "green", "old", "stone", "cloud"]


def _corpus(n, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"doc{i}" for i in range(n)],
                         "text": [" ".join(rng.choice(WORDS, rng.integers(2, 7))) for i in range(n)]})


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    make_run(path)
    return Predictor.from_run(path)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_every_text_for_every_annotator_equals_one_call(tmp_path, predictor, fmt):
    corpus = _corpus(23)
    data = tmp_path / f"corpus.{fmt}"
    {"csv": lambda: corpus.to_csv(data, index=False), "jsonl": lambda: corpus.to_json(data, orient="records",
     lines=True), "parquet": lambda: corpus.to_parquet(data)}[fmt]()
    asked = ["a1", "a3", "never-seen"]
    # 12 pairs per part = 4 texts per part: 6 parts, the last one short
    s = predict_file(predictor, data, tmp_path / "out.parquet", asked, pairs_per_part=12, progress=False)
    assert (s["texts"], s["rows"], s["parts"], s["complete"]) == (23, 69, 6, True)
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet.parts").exists()
    want = predictor.predict(list(corpus["text"]), asked)
    assert list(got["row"]) == list(want["text_index"]) and list(got["annotator"]) == list(want["annotator"])
    assert list(got["id"]) == list(np.repeat(corpus["id"], 3))
    assert list(got["label"]) == list(want["label"]) and list(got["known"]) == [True, True, False] * 23
    np.testing.assert_allclose(got[["p_0", "p_1"]], want[["p_0", "p_1"]], atol=1e-5)


def test_interrupted_run_resumes_without_redoing_parts(tmp_path, predictor):
    data = tmp_path / "corpus.csv"
    _corpus(10).to_csv(data, index=False)
    out = tmp_path / "out.parquet"
    first = predict_file(predictor, data, out, "all", pairs_per_part=12, progress=False, stop_after=2)
    assert not first["complete"] and first["parts_written"] == 2 and not out.exists()
    parts = sorted(p.name for p in (tmp_path / "out.parquet.parts").glob("part-*"))
    assert parts == ["part-000000.parquet", "part-000001.parquet"]
    done = {p: (tmp_path / "out.parquet.parts" / p).stat().st_mtime_ns for p in parts}
    # a different request must not mix with these parts
    with pytest.raises(RunDirError, match="changed: annotators"):
        predict_file(predictor, data, out, "a1", pairs_per_part=12, progress=False)
    assert {p: (tmp_path / "out.parquet.parts" / p).stat().st_mtime_ns for p in parts} == done
    second = predict_file(predictor, data, out, "all", pairs_per_part=12, progress=False)
    assert (second["parts_skipped"], second["parts_written"], second["complete"]) == (2, 3, True)
    got = pd.read_parquet(out)
    want = predictor.predict(list(_corpus(10)["text"]), "all")
    assert len(got) == 60 and list(got["row"]) == list(want["text_index"])
    np.testing.assert_allclose(got["p_1"], want["p_1"], atol=1e-5)


def test_bad_corpus_inputs_name_the_fix(tmp_path, predictor):
    with pytest.raises(DataError, match="is not a file"):
        predict_file(predictor, tmp_path / "none.csv", tmp_path / "o.parquet", progress=False)
    (tmp_path / "c.txt").write_text("a text\n")
    with pytest.raises(DataError, match="unsupported format"):
        predict_file(predictor, tmp_path / "c.txt", tmp_path / "o.parquet", progress=False)
    pd.DataFrame({"body": ["x"]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(DataError, match="no 'text' column"):
        predict_file(predictor, tmp_path / "c.csv", tmp_path / "o.parquet", progress=False)
    pd.DataFrame({"text": ["fine", "", "ok"]}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"row\(s\) 1 \(0-based\) have an empty text"):
        predict_file(predictor, tmp_path / "d.csv", tmp_path / "o.parquet", progress=False)
    with pytest.raises(DataError, match=r"\*\.parquet"):
        predict_file(predictor, tmp_path / "c.csv", tmp_path / "o.csv", progress=False)


def test_cli_predict_data(tmp_path, capsys):
    from hyperscale.cli import main

    make_run(tmp_path / "run")
    _corpus(5).to_json(tmp_path / "c.jsonl", orient="records", lines=True)
    assert main(["predict", str(tmp_path / "run"), "--data", str(tmp_path / "c.jsonl"), "--annotators", "a0,a2",
                 "--out", str(tmp_path / "o.parquet")]) == 0
    assert "10 predictions (5 texts x 2 annotators)" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 10
    assert main(["predict", str(tmp_path / "run"), "--data", str(tmp_path / "c.jsonl")]) == 2
    assert "--out FILE.parquet" in capsys.readouterr().err
