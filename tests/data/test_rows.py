"""Row loading from files: formats, malformed rows, thresholds, error messages, load_data."""

import json

import pandas as pd
import pytest

from hyperscale.data.config import DataConfig, SyntheticConfig
from hyperscale.data.load import load_data
from hyperscale.data.rows import read_file
from hyperscale.errors import ConfigError, DataError

ROWS = [
    {"text": "good movie", "annotator": "007", "label": "1", "item": "i1"},
    {"text": "good movie", "annotator": "a2", "label": "0", "item": "i1"},
    {"text": "bad movie", "annotator": "007", "label": "0", "item": "i2"},
    {"text": "ok movie, I guess", "annotator": "a3", "label": "1", "item": "i3"},
    {"text": "line\nbreak \"quoted\"", "annotator": "a2", "label": "1", "item": "i4"},
]


def _write(frame: pd.DataFrame, path, fmt: str) -> str:
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path, index=False)
    return str(path)


def _cfg(files, **kw) -> DataConfig:
    return DataConfig(source="files", train_files=list(files), **kw)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_round_trip_every_format(tmp_path, fmt):
    path = _write(pd.DataFrame(ROWS), tmp_path / f"rows.{fmt}", fmt)
    frame, bad, n = read_file(path, _cfg([path], item_column="item"), None)
    assert (n, len(bad)) == (5, 0)
    assert frame["text"].tolist() == [r["text"] for r in ROWS]
    # "007" must stay a string id, not become the integer 7.
    assert frame["annotator"].tolist() == ["007", "a2", "007", "a3", "a2"]
    assert frame["label"].tolist() == ["1", "0", "0", "1", "1"]
    assert frame["item_id"].tolist() == ["i1", "i1", "i2", "i3", "i4"]
    assert frame["source_row"].tolist() == [1, 2, 3, 4, 5]
    assert frame["task"].isna().all() and frame["language"].isna().all()


def test_item_defaults_to_text_and_optional_condition_columns(tmp_path):
    rows = [dict(r, task="nli", lang="en") for r in ROWS]
    path = _write(pd.DataFrame(rows), tmp_path / "rows.jsonl", "jsonl")
    frame, _, _ = read_file(path, _cfg([path], task_column="task", language_column="lang"), None)
    # Same text -> same item id; different text -> different id.
    assert frame["item_id"].nunique() == 4 and frame["item_id"][0] == frame["item_id"][1]
    assert set(frame["task"]) == {"nli"} and set(frame["language"]) == {"en"}


def test_json_numbers_become_strings(tmp_path):
    path = tmp_path / "num.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "annotator": i, "label": i % 2}) + "\n" for i in range(4)))
    frame, bad, _ = read_file(str(path), _cfg([str(path)]), None)
    assert not bad and frame["annotator"].tolist() == ["0", "1", "2", "3"] and frame["label"].tolist() == ["0", "1"] * 2


def _malformed_csv(path) -> str:
    lines = [
        b"text,annotator,label",
        b"fine,a1,pos",  # 1 good
        b",a1,pos",  # 2 missing_text
        b"   ,a1,pos",  # 3 missing_text (blank)
        b"fine,,pos",  # 4 missing_annotator
        b"fine,a2,",  # 5 missing_label
        b"caf\xe9 latin-1,a2,pos",  # 6 non_utf8
        b"fine,a3,maybe",  # 7 unknown_label (labels declared)
        b"also fine,a3,neg",  # 8 good
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def test_each_malformed_reason_is_counted_and_written(tmp_path):
    path = _malformed_csv(tmp_path / "bad.csv")
    cfg = _cfg([path], labels=["neg", "pos"], max_bad_fraction=0.9)
    frame, bad, n = read_file(path, cfg, cfg.labels)
    assert n == 8 and len(frame) == 2
    assert [(b.row, b.reason) for b in bad] == [
        (2, "missing_text"), (3, "missing_text"), (4, "missing_annotator"), (5, "missing_label"),
        (6, "non_utf8"), (7, "unknown_label")]
    # The undecodable byte is shown, not lost; the rest of the row is intact.
    assert bad[4].raw == {"text": "caf\\xE9 latin-1", "annotator": "a2", "label": "pos"}


def test_report_saved_with_every_bad_row(tmp_path):
    path = _malformed_csv(tmp_path / "bad.csv")
    ok = tmp_path / "ok.csv"
    pd.DataFrame({"text": [f"x{i}" for i in range(10)], "annotator": "a1", "label": ["neg", "pos"] * 5}).to_csv(ok, index=False)
    cfg = _cfg([path, str(ok)], labels=["neg", "pos"], max_bad_fraction=0.8)
    data = load_data(cfg, run_dir=str(tmp_path / "run"))
    assert (data.report.n_rows, data.report.n_bad) == (18, 6)
    assert data.report.reasons == {"missing_text": 2, "missing_annotator": 1, "missing_label": 1,
                                   "non_utf8": 1, "unknown_label": 1}
    saved = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert saved["n_bad"] == 6 and saved["per_file"][path]["n_bad"] == 6 and saved["per_file"][str(ok)]["n_bad"] == 0
    lines = [json.loads(s) for s in (tmp_path / "run" / "bad_rows.jsonl").read_text().splitlines()]
    assert [(r["file"], r["row"], r["reason"]) for r in lines][4] == (path, 6, "non_utf8")
    assert len(lines) == 6
    assert len(data.train) + len(data.eval) == 12


def test_threshold_raises_naming_file_rows_and_fix(tmp_path):
    path = _malformed_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError) as e:
        load_data(_cfg([path], labels=["neg", "pos"]), run_dir=str(tmp_path / "run"))
    msg = str(e.value)
    assert f"{path}:2 (missing_text)" in msg and f"{path}:6 (non_utf8)" in msg
    assert "6 of 8 rows" in msg and "data.max_bad_fraction" in msg and "clean the file" in msg
    # The report is on disk even though loading failed.
    assert len((tmp_path / "run" / "bad_rows.jsonl").read_text().splitlines()) == 6


def test_under_threshold_passes(tmp_path):
    # 1 bad row in 200 = 0.5% < the default 1%.
    rows = [{"text": f"t{i}", "annotator": f"a{i % 7}", "label": str(i % 2)} for i in range(199)]
    rows.append({"text": "", "annotator": "a1", "label": "1"})
    path = _write(pd.DataFrame(rows), tmp_path / "r.csv", "csv")
    data = load_data(_cfg([path]))
    assert data.report.n_bad == 1 and len(data.train) + len(data.eval) == 199
    assert data.labels == ["0", "1"]


def test_eval_labels_unseen_in_train_are_flagged(tmp_path):
    tr = _write(pd.DataFrame({"text": ["a", "b"], "annotator": "x", "label": ["0", "1"]}), tmp_path / "tr.csv", "csv")
    ev = _write(pd.DataFrame({"text": ["c", "d"], "annotator": "x", "label": ["1", "2"]}), tmp_path / "ev.csv", "csv")
    data = load_data(_cfg([tr], eval_files=[ev], max_bad_fraction=0.5))
    assert data.labels == ["0", "1"] and data.report.reasons == {"unknown_label": 1}
    assert data.eval["label"].tolist() == ["1"]


def test_missing_column_names_column_present_and_key(tmp_path):
    path = _write(pd.DataFrame({"sentence": ["a"], "annotator": ["x"], "label": ["1"]}), tmp_path / "r.csv", "csv")
    with pytest.raises(DataError) as e:
        load_data(_cfg([path]))
    msg = str(e.value)
    assert "'text'" in msg and "['annotator', 'label', 'sentence']" in msg and "data.text_column" in msg


def test_missing_file_and_bad_extension(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(_cfg([str(tmp_path / "nope.csv")]))
    (tmp_path / "r.txt").write_text("x")
    with pytest.raises(DataError, match="unknown extension"):
        load_data(_cfg([str(tmp_path / "r.txt")]))


def test_config_checks_name_the_key():
    cases = [
        (dict(source="files"), "data.train_files"),
        (dict(source="synthetic", eval_fraction=1.0), "data.eval_fraction"),
        (dict(source="synthetic", eval_fraction=0.0), "data.eval_fraction"),
        (dict(source="hub"), "data.source"),
        (dict(source="pipa_toxicity", label_scheme="five"), "data.label_scheme"),
        (dict(source="convabuse", label_scheme="ternary"), "data.label_scheme"),
        (dict(source="files", train_files=["a.csv"], labels=["x"]), "data.labels"),
        (dict(source="files", train_files=["a.csv"], text_column="t", label_column="t"), "data.text_column"),
        (dict(source="convabuse", train_files=["a.csv"]), "data.train_files"),
        (dict(max_bad_fraction=1.0), "data.max_bad_fraction"),
    ]
    for kwargs, key in cases:
        with pytest.raises(ConfigError) as e:
            DataConfig(**kwargs)
        assert e.value.key == key, kwargs
    for kwargs, key in [(dict(n_groups=9), "n_groups"), (dict(n_annotators=3, n_groups=4), "n_annotators"),
                        (dict(n_annotators=1000, n_items=100, annotators_per_item=5), "n_items"),
                        (dict(label_noise=0.5), "label_noise")]:
        with pytest.raises(ConfigError) as e:
            SyntheticConfig(**kwargs)
        assert e.value.key == "data.synthetic." + key
    assert DataConfig().source == "synthetic"  # the bare default must be valid


def test_max_items_subsample_is_deterministic(tmp_path):
    rows = [{"text": f"item {i}", "annotator": f"a{j}", "label": str((i + j) % 2)} for i in range(100) for j in range(3)]
    path = _write(pd.DataFrame(rows), tmp_path / "r.parquet", "parquet")
    a = load_data(_cfg([path], max_items=20))
    b = load_data(_cfg([path], max_items=20))
    items = set(a.train["item_id"]) | set(a.eval["item_id"])
    assert len(items) == 20 and items == set(b.train["item_id"]) | set(b.eval["item_id"])
    assert a.eval["item_id"].nunique() == 4 and len(a.train) + len(a.eval) == 60


def test_non_utf8_row_flagged_in_jsonl_and_parquet_binary(tmp_path):
    jl = tmp_path / "r.jsonl"
    jl.write_bytes(b'{"text": "ok", "annotator": "a", "label": "1"}\n'
                   b'{"text": "bad \xff\xfe bytes", "annotator": "a", "label": "1"}\n'
                   b'{"text": "ok too", "annotator": "b", "label": "0"}\n')
    frame, bad, n = read_file(str(jl), _cfg([str(jl)]), None)
    assert n == 3 and frame["text"].tolist() == ["ok", "ok too"]
    assert [(b.row, b.reason, b.raw["text"]) for b in bad] == [(2, "non_utf8", "bad \\xFF\\xFE bytes")]

    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"text": pa.array([b"fine", b"caf\xe9"], pa.binary()),
                             "annotator": ["a", "b"], "label": ["1", "0"]}), tmp_path / "r.parquet")
    frame, bad, _ = read_file(str(tmp_path / "r.parquet"), _cfg([str(tmp_path / "r.parquet")]), None)
    assert frame["text"].tolist() == ["fine"] and [(b.row, b.reason) for b in bad] == [(2, "non_utf8")]


def test_ragged_csv_is_an_error_not_a_silent_shift(tmp_path):
    # pandas alone would take the 2 extra fields of the first row as an index and shift columns.
    first = tmp_path / "first.csv"
    first.write_text("text,annotator,label\na,b,c,d,e\nf,g,h\n")
    later = tmp_path / "later.csv"
    later.write_text("text,annotator,label\nf,g,h\na,b,c,d,e\n")
    for path, needle in ((first, "does not match length of data"), (later, "Expected 3 fields in line 3, saw 5")):
        with pytest.raises(DataError) as e:
            read_file(str(path), _cfg([str(path)]), None)
        assert str(path) in str(e.value) and needle in str(e.value)
    short = tmp_path / "short.csv"
    short.write_text("text,annotator,label\nf,g\nk,l,m\n")
    frame, bad, _ = read_file(str(short), _cfg([str(short)]), None)
    assert frame["text"].tolist() == ["k"] and [(b.row, b.reason) for b in bad] == [(1, "missing_label")]


def test_empty_files_name_the_real_problem(tmp_path):
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,annotator,label\n")
    with pytest.raises(DataError, match="has a header \\(text, annotator, label\\) but no rows"):
        read_file(str(header_only), DataConfig(source="files", train_files=[str(header_only)]), None)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="is empty"):
        read_file(str(empty), DataConfig(source="files", train_files=[str(empty)]), None)


def test_a_truncated_jsonl_line_is_one_bad_row_and_a_directory_is_named(tmp_path):
    """D11: one truncated line rejected the whole file as 'Invalid encoding' with a 0-based row number;
    a directory was reported as missing."""
    path = tmp_path / "rows.jsonl"
    good = [json.dumps({"text": f"item {i}", "annotator": f"a{i % 3}", "label": str(i % 2)}) for i in range(200)]
    path.write_text("\n".join(good) + '\n{"text": "cut sho')
    frame, bad, n = read_file(str(path), DataConfig(source="files", train_files=[str(path)]), None)
    assert len(frame) == 200 and n == 201 and [(b.row, b.reason) for b in bad] == [(201, "malformed_json")]
    assert frame["source_row"].tolist()[:3] == [1, 2, 3]
    with pytest.raises(DataError, match="is a directory, not a file.*Fix"):
        read_file(str(tmp_path), DataConfig(source="files", train_files=[str(tmp_path)]), None)


def test_the_console_summary_names_what_loading_dropped_merged_and_inferred(tmp_path):
    """D12: dropped rows, repeated or contradicting (item, annotator) pairs and stray label values reached
    only data_report.json."""
    rows = ["item,text,annotator,label"] + [f"i{i},text {i},a{i % 4},{'yes' if i % 3 else 'no'}" for i in range(300)]
    rows += ["i1,text 1,a1,no", "i2,text 2,a2,yes", "i5,text 5,a3,yse", ",x,a1,yes"]  # contradiction, repeat, typo, bad
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(rows) + "\n")
    cfg = DataConfig(source="files", train_files=[str(path)], item_column="item", max_bad_fraction=0.05)
    summary = load_data(cfg).report.summary()
    assert "1 malformed and dropped (missing_item 1" in summary
    assert "2 repeated (item, annotator) pairs kept as separate rows (1 of them with contradicting labels)" in summary
    assert "label value(s) ['yse'] are rare enough to be typos" in summary and "declare data.labels" in summary
