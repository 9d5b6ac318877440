"""ConditionVocab and item-level splits."""

import numpy as np
import pandas as pd
import pytest

from hyperscale.data.vocab import ConditionVocab
from hyperscale.data.splits import split_by_item, subsample_items
from hyperscale.errors import CheckpointError, DataError


def _frame():
    return pd.DataFrame({"annotator": ["b", "a", "c", "a", None], "task": ["t2", "t1", None, "t1", "t1"],
                         "language": [None] * 5})


def test_vocab_sorted_unknown_is_minus_one():
    v = ConditionVocab.from_frame(_frame(), ["annotator", "task"])
    assert v.ids("annotator") == ["a", "b", "c"] and v.size("annotator") == 3 and v.size("task") == 2
    got = v.index("annotator", ["c", "a", "zz", None, "b"])
    assert got.dtype == np.int64 and got.tolist() == [2, 0, -1, -1, 1]
    # Order of rows does not change indices.
    assert ConditionVocab.from_frame(_frame().iloc[::-1], ["annotator", "task"]) == v


def test_vocab_extend_keeps_indices_and_changes_fingerprint():
    v = ConditionVocab.from_frame(_frame(), ["annotator"])
    before, fp = v.ids("annotator"), v.fingerprint()
    old = ConditionVocab.from_dict(v.to_dict())
    assert v.extend("annotator", ["new2", "a", "new1", "new2"]) == ["new2", "new1"]
    assert v.index("annotator", before + ["new2", "new1"]).tolist() == [0, 1, 2, 3, 4]
    assert v.fingerprint() != fp and v != old and old.is_prefix_of(v) and not v.is_prefix_of(old)


def test_vocab_save_load_round_trip(tmp_path):
    v = ConditionVocab.from_frame(_frame(), ["annotator", "task"])
    v.extend("language", ["de", "en"])
    v.save(tmp_path / "vocab.json")
    w = ConditionVocab.load(tmp_path / "vocab.json")
    assert w == v and w.fingerprint() == v.fingerprint() and w.index("language", ["en"]).tolist() == [1]
    with pytest.raises(CheckpointError):
        ConditionVocab.from_dict({"fields": {}})


def _rows(n_items=200, per=3):
    return pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items) for _ in range(per)],
                         "annotator": [f"a{j}" for _ in range(n_items) for j in range(per)]})


def test_split_by_item_no_overlap_exact_size_deterministic():
    frame = _rows()
    train, eval_ = split_by_item(frame, 0.2, seed=0)
    assert not set(train["item_id"]) & set(eval_["item_id"])
    assert eval_["item_id"].nunique() == 40 and len(train) + len(eval_) == 600
    again_train, again_eval = split_by_item(frame.sample(frac=1.0, random_state=1), 0.2, seed=0)
    # Independent of row order: the same items land in eval.
    assert set(again_eval["item_id"]) == set(eval_["item_id"])
    other = set(split_by_item(frame, 0.2, seed=1)[1]["item_id"])
    assert len(other & set(eval_["item_id"])) < 20  # a different seed gives a different split (~8 expected)


def test_split_needs_two_items_and_subsample():
    with pytest.raises(DataError, match="2|item"):
        split_by_item(_rows(n_items=1), 0.2, seed=0)
    sub = subsample_items(_rows(), 30, seed=0)
    assert sub["item_id"].nunique() == 30 and len(sub) == 90
    assert set(sub["item_id"]) == set(subsample_items(_rows(), 30, seed=0)["item_id"])
    assert subsample_items(_rows(), None, seed=0).shape == (600, 2)
