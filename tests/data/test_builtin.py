"""Built-in sets reproduce the counts in datasets/README.md; the vendored copy is found and verbatim."""

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from hyperscale.data.config import DataConfig
from hyperscale.data.load import load_data
from hyperscale.data.builtin import convabuse_split, data_root
from hyperscale.errors import ConfigError

try:
    ROOT = data_root(DataConfig())
except Exception:  # noqa: BLE001 - no data folder on this machine
    ROOT = None
needs_data = pytest.mark.skipif(ROOT is None or not (ROOT / "convabuse").is_dir(), reason="shared/data not found")


@needs_data
def test_convabuse_splits_hold_exactly_the_full_csv():
    folder = ROOT / "convabuse"
    parts = [convabuse_split(folder / f"ConvAbuseEMNLP{s}.csv", "five")[0] for s in ("train", "valid", "test")]
    rows = pd.concat(parts, ignore_index=True)
    full = pd.read_csv(folder / "ConvAbuseEMNLPfull.csv", dtype=str, keep_default_na=False)
    assert len(rows) == len(full) == 12_768
    assert rows["annotator"].nunique() == 8
    # Same label counts as the full CSV's one-hot columns.
    names = {"1": "not_abusive", "0": "ambiguous", "-1": "mildly_abusive", "-2": "strongly_abusive",
             "-3": "very_strongly_abusive"}
    full_counts = {names[k]: int((full[f"is_abuse.{k}"] == "1").sum()) for k in names}
    assert dict(Counter(rows["label"])) == full_counts == {
        "not_abusive": 10_068, "ambiguous": 671, "mildly_abusive": 813, "strongly_abusive": 934,
        "very_strongly_abusive": 282}
    # Same annotations per annotator as the full CSV.
    assert dict(Counter(rows["annotator"])) == dict(Counter(full["annotator_id"]))
    # 2,501 + 831 + 853 examples; two pairs of train examples share conv_id and turns.
    assert [p["item_id"].nunique() for p in parts] == [2_499, 831, 853]
    # The authors' splits overlap by one item train/test and one valid/test (kept as published).
    seen = [set(p["item_id"]) for p in parts]
    assert [len(seen[0] & seen[1]), len(seen[0] & seen[2]), len(seen[1] & seen[2])] == [0, 1, 1]
    # 357 intra-annotator repeats in the full CSV; the split files carry them as "1, 1" cells,
    # one row per answer (same example = same source_row); merging the two pairs of identical
    # train examples into one item each adds 5 more (item, annotator) repeats.
    assert full.duplicated(["conv_id", "prev_agent", "prev_user", "agent", "user", "annotator_id"]).sum() == 357
    assert sum(int(p.duplicated(["source_row", "annotator"]).sum()) for p in parts) == 357
    assert sum(int(p.duplicated(["item_id", "annotator"]).sum()) for p in parts) == 357 + 5


@needs_data
def test_convabuse_load_data_binary():
    data = load_data(DataConfig(source="convabuse"))
    assert data.labels == ["not_abusive", "abusive"]
    assert (len(data.train), len(data.eval)) == (7_652, 2_614)
    assert data.report.n_bad == 0 and data.report.notes["eval_items_also_in_train"] == 1
    assert Counter(data.train["label"]) == {"not_abusive": 6_463, "abusive": 1_189}
    assert data.train["text"].iloc[0].count("\n") == 3 and data.train["text"].iloc[0].startswith("agent: ")
    valid = load_data(DataConfig(source="convabuse", eval_split="valid", label_scheme="five"))
    assert len(valid.eval) == 2_502 and len(valid.labels) == 5


@needs_data
def test_pipa_counts_and_item_split():
    data = load_data(DataConfig(source="pipa_toxicity"))
    rows = pd.concat([data.train, data.eval])
    assert len(rows) == 9_596 and rows["item_id"].nunique() == 1_983 and rows["annotator"].nunique() == 43
    assert data.labels == ["not_toxic", "toxic"]
    assert Counter(rows["label"]) == {"toxic": 5_444, "not_toxic": 4_152}
    assert not set(data.train["item_id"]) & set(data.eval["item_id"])
    assert data.eval["item_id"].nunique() == round(0.2 * 1_983)
    again = load_data(DataConfig(source="pipa_toxicity"))
    assert again.eval["item_id"].tolist() == data.eval["item_id"].tolist()
    small = load_data(DataConfig(source="pipa_toxicity", max_items=100))
    assert pd.concat([small.train, small.eval])["item_id"].nunique() == 100


VENDORED = Path(__file__).resolve().parents[2] / "datasets"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"  # the workspace's copy, if any


def test_vendored_copy_is_found_without_shared_data(tmp_path, monkeypatch):
    """A clean clone outside this workspace has no shared/data above it: the copy in
    datasets/ next to the package is the fallback."""
    from hyperscale.data import builtin

    repo = tmp_path / "clone"
    (repo / "hyperscale" / "data").mkdir(parents=True)
    (repo / "datasets").symlink_to(VENDORED)
    monkeypatch.setattr(builtin, "__file__", str(repo / "hyperscale" / "data" / "builtin.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYPERSCALE_DATA_ROOT", raising=False)
    assert data_root(DataConfig()).resolve() == VENDORED
    (repo / "datasets").unlink()
    with pytest.raises(ConfigError, match="data.root"):
        data_root(DataConfig())


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared/data on this machine to compare with")
def test_vendored_copy_is_verbatim():
    for path in sorted(SHARED.rglob("*")):
        if path.is_file() and path.parent != SHARED:  # the top README differs by its vendoring note
            assert (VENDORED / path.relative_to(SHARED)).read_bytes() == path.read_bytes(), path
