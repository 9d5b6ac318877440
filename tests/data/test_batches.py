"""Rows -> batches: user errors are DataErrors (not a Ray traceback), the sampler's epoch contract."""

import numpy as np
import pandas as pd
import pytest

from hyperscale.data.batches import EpochSampler, collate, encode_rows
from hyperscale.data.vocab import ConditionVocab
from hyperscale.errors import CheckpointError, DataError


class _Tok:
    def __call__(self, texts, truncation, max_length, add_special_tokens):
        return {"input_ids": [[len(w) for w in t.split()][:max_length] for t in texts]}


def _frame(labels):
    return pd.DataFrame({"item_id": [f"i{k}" for k in range(len(labels))], "text": ["a bb ccc"] * len(labels),
                         "annotator": ["a0"] * len(labels), "label": labels})


def test_unknown_label_value_is_a_data_error_naming_the_fix():
    vocab = ConditionVocab({"annotator": ["a0"]})
    with pytest.raises(DataError, match=r"label value\(s\) \['maybe'\].*Fix"):
        encode_rows(_frame(["0", "maybe"]), _Tok(), vocab, ["0", "1"], ["annotator"], 16)
    rows = encode_rows(_frame(["0", "1"]), _Tok(), vocab, ["0", "1"], ["annotator"], 16)
    batch = collate(rows, np.array([1, 0]), pad_id=0)
    assert batch["labels"].tolist() == [1, 0] and batch["input_ids"].tolist() == [[1, 2, 3], [1, 2, 3]]
    assert sorted(batch) == ["attention_mask", "cond_annotator", "input_ids", "labels"]


def test_sampler_needs_a_row_per_worker_and_sees_each_row_once_per_epoch():
    with pytest.raises(DataError, match="3 training rows cannot be shared by 4 workers.*Fix"):
        EpochSampler(3, 2, seed=0, rank=0, world_size=4)
    seen = []
    for rank in range(2):
        s = EpochSampler(11, 2, seed=5, rank=rank, world_size=2)
        seen += [int(i) for _ in range(s.batches_per_epoch) for i in s.next_batch()]
    assert sorted(seen) == list(range(11))
    s = EpochSampler(11, 2, seed=5)
    with pytest.raises(CheckpointError, match="Fix"):
        s.load_state_dict({**s.state_dict(), "n_rows": 12})
