"""Majority labels for the aggregate-then-train baseline."""

import pandas as pd

from hyperscale.data.aggregate import majority_labels


def test_majority_labels_one_row_per_item_ties_to_frequent_class():
    frame = pd.DataFrame({"item_id": ["i", "i", "i", "j", "j", "k"], "text": ["t1"] * 3 + ["t2"] * 2 + ["t3"],
                          "annotator": ["a", "b", "c", "a", "b", "c"], "label": ["1", "1", "0", "0", "1", "1"]})
    out = majority_labels(frame, ["0", "1"])
    assert out.set_index("item_id")["label"].to_dict() == {"i": "1", "j": "1", "k": "1"}  # j ties -> "1" (4 of 6 rows)
    assert len(out) == 3 and list(out.columns) == list(frame.columns)
