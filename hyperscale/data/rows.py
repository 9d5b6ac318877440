"""Reading perspectivist rows from CSV / JSONL / Parquet into one long-format frame.

Every file goes through the `datasets` packaged builders (csv, json, parquet), then each
row is checked; malformed rows are counted by reason and kept in a RowReport, never
dropped silently. The frame has one row per (item, annotator) label:

    item_id  text  annotator  label  task  language  source_file  source_row

all strings except task/language (None when the config names no such column) and
source_row (int, 1-based record number in source_file).

Non-UTF-8 bytes: pandas and pyarrow fail a whole file on one bad byte, so a file that
is not clean UTF-8 is first rewritten to a temporary copy in which each undecodable
byte becomes a marker (U+FDD0, a Unicode noncharacter that never occurs in real text,
followed by its hex value); rows holding a marker are flagged "non_utf8" and the rest
of the file loads normally.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import os
import re
import tempfile
import warnings

import numpy as np
import pandas as pd

from hyperscale.data.config import DataConfig
from hyperscale.data.report import BadRow, RowReport
from hyperscale.errors import DataError

COLUMNS = ["item_id", "text", "annotator", "label", "task", "language", "source_file", "source_row"]

_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".pq": "parquet"}
_MARK = "\ufdd0"
_MARK_RE = re.compile(_MARK + "([0-9A-F]{2})")
_CHUNK = 1 << 24  # 16 MiB: the UTF-8 check streams, so a large file never sits in memory twice


def _mark_bytes(err: UnicodeDecodeError):
    bad = err.object[err.start:err.end]
    return "".join(f"{_MARK}{b:02X}" for b in bad), err.end


codecs.register_error("hyperscale_mark_bytes", _mark_bytes)


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in COLUMNS})


def text_item_id(texts) -> list[str]:
    """Item id of rows identified by their text: a short stable hash (same text, same id)."""
    return ["t" + hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest() for t in texts]


def read_files(files: list[str], cfg: DataConfig, labels: list[str] | None,
               task: str = "classification") -> tuple[pd.DataFrame, RowReport]:
    """Read and check every file; good rows in one frame, everything else in the report.

    `task` sft: rows also carry a `completion` column (data/sft.py says which columns are read)."""
    report = RowReport()
    frames = []
    for path in files:
        frame, bad, n = read_file(path, cfg, labels, task)
        report.add_file(path, n, bad)
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if frames else empty_frame()
    return frame, report


def read_file(path: str, cfg: DataConfig, labels: list[str] | None,
              task: str = "classification") -> tuple[pd.DataFrame, list[BadRow], int]:
    """One file -> (good rows, bad rows, number of rows read)."""
    if os.path.isdir(path):
        raise DataError(f"data file {path!r} is a directory, not a file. Fix: list the CSV / JSONL / Parquet files "
                        f"inside it in data.train_files / data.eval_files.")
    if not os.path.isfile(path):
        raise DataError(f"data file {path!r} does not exist (cwd: {os.getcwd()}). "
                        f"Fix: correct the path in data.train_files / data.eval_files.")
    ext = os.path.splitext(path)[1].lower()
    fmt = _FORMATS.get(ext)
    if fmt is None:
        raise DataError(f"data file {path!r}: unknown extension; expected one of {sorted(_FORMATS)}. "
                        f"Fix: rename the file or convert it to CSV, JSONL or Parquet.")
    with tempfile.TemporaryDirectory(prefix="hyperscale-rows-") as tmp:
        load_path = path if fmt == "parquet" else _utf8_copy(path, tmp)
        if ext == ".jsonl":
            table, line_numbers, broken = _load_jsonl(load_path, path)
        else:
            table, line_numbers, broken = _load_with_datasets(fmt, load_path, path, tmp), None, []
    frame, bad, n = _check_rows(table, path, cfg, labels, line_numbers, task)
    bad = sorted(bad + broken, key=lambda b: b.row)
    return frame, bad, n + len(broken)


def _load_jsonl(load_path: str, shown_path: str) -> tuple[dict[str, list], list[int], list[BadRow]]:
    """JSON Lines read line by line: a line that is not a JSON object (a truncated last line, a
    stray character) is one malformed row with its 1-based line number, not a failed file."""
    records, numbers, broken = [], [], []
    with open(load_path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                record, why = None, e.msg
            else:
                why = "not a JSON object"
            if not isinstance(record, dict):
                broken.append(BadRow(file=shown_path, row=number, reason="malformed_json",
                                     raw={"line": _show(line.rstrip("\n"))[:500], "error": why}))
                continue
            records.append(record)
            numbers.append(number)
    if not records and not broken:
        raise DataError(f"data file {shown_path!r} is empty. Fix: add rows (one JSON object per line), or remove "
                        f"the file from the config.")
    columns = list(dict.fromkeys(k for r in records for k in r))
    return {c: [r.get(c) for r in records] for c in columns}, numbers, broken


def _utf8_copy(path: str, tmp: str) -> str:
    """`path` itself if it is clean UTF-8, else a copy with undecodable bytes marked."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        return path
    except UnicodeDecodeError:
        pass
    out = os.path.join(tmp, "utf8" + os.path.splitext(path)[1])
    # newline="" keeps CSV line endings (and quoted newlines) exactly as in the source.
    with open(path, encoding="utf-8", errors="hyperscale_mark_bytes", newline="") as src, \
            open(out, "w", encoding="utf-8", newline="") as dst:
        while chunk := src.read(_CHUNK):
            dst.write(chunk)
    return out


def _load_with_datasets(fmt: str, load_path: str, shown_path: str, tmp: str) -> dict[str, list]:
    """Columns of the file as python lists, read by the `datasets` packaged builder."""
    import datasets  # heavy import, only when files are actually read
    from datasets.exceptions import DatasetGenerationError

    kwargs = {}
    if fmt == "csv":
        # Every column as a string, empty cells as "" (not NaN): annotator ids like "007"
        # and labels like "1" must survive exactly as written.
        # utf-8-sig: pandas drops a leading byte-order mark from the header, so must we.
        with open(load_path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            first_row = next(reader, None)
        if not header:
            raise DataError(f"data file {shown_path!r} is empty (no header row). Fix: add a header naming "
                            f"the columns, or remove the file from the config.")
        if first_row is None:
            raise DataError(f"data file {shown_path!r} has a header ({', '.join(header)}) but no rows. Fix: add "
                            f"rows, or remove the file from the config.")
        # index_col=False: otherwise pandas silently takes extra leading fields of a ragged
        # first row as an index and shifts every column; with it, that is a ParserWarning
        # (raised below) and a ragged later row a ParserError, both reported with the file.
        kwargs = dict(features=datasets.Features({c: datasets.Value("string") for c in header}),
                      keep_default_na=False, na_values=[], index_col=False)
    elif fmt == "json" and not _has_content(load_path):
        raise DataError(f"data file {shown_path!r} is empty. Fix: add rows, or remove the file from the config.")
    progress_was_on = datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            ds = datasets.load_dataset(fmt, data_files=load_path, split="train",
                                       cache_dir=os.path.join(tmp, "cache"), keep_in_memory=True, **kwargs)
    except DatasetGenerationError as e:  # what the parser said, wrapped: name the file, not a cache path
        root = e
        while root.__cause__ is not None:
            root = root.__cause__
        raise DataError(f"data file {shown_path!r} could not be parsed as {fmt}: {type(root).__name__}: "
                        f"{str(root).strip().rstrip('.')}. "
                        f"Fix: repair the file (e.g. unbalanced quotes or a wrong number of fields).") from e
    finally:
        if progress_was_on:
            datasets.utils.logging.enable_progress_bar()
    return {c: ds.data.column(c).to_pylist() for c in ds.column_names}


def _has_content(path: str) -> bool:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            if chunk.strip():
                return True
    return False


def _as_str(v) -> str | None:
    """A cell as a string; None for missing. Integral floats lose ".0" (JSON may type 1 as 1.0)."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):  # a Parquet binary column
        return v.decode("utf-8", errors="hyperscale_mark_bytes")
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _show(v: str | None) -> str | None:
    return None if v is None else _MARK_RE.sub(r"\\x\1", v)


def _check_rows(table: dict[str, list], path: str, cfg: DataConfig, labels: list[str] | None,
                line_numbers: list[int] | None = None,
                task: str = "classification") -> tuple[pd.DataFrame, list[BadRow], int]:
    """Check every row; `line_numbers`: each row's 1-based number in the file (default: its position)."""
    roles = {"text": cfg.text_column, "annotator": cfg.annotator_column, "label": cfg.label_column,
             "item": cfg.item_column, "task": cfg.task_column, "language": cfg.language_column}
    if task == "sft":
        from hyperscale.data import sft

        roles.update(sft.roles(table, path, cfg))  # completion / messages; label (and text) may then be absent
    for role, col in roles.items():
        if col is not None and col not in table:
            key = "item_column" if role == "item" else f"{role}_column"
            raise DataError(f"data file {path!r} has no column {col!r} (the {role} column). Columns present: "
                            f"{sorted(table)}. Fix: set data.{key} to the right column name.")
    n = len(next(iter(table.values()), []))
    number = np.asarray(line_numbers if line_numbers is not None else np.arange(1, n + 1), dtype=np.int64)
    raw = {c: [_as_str(v) for v in vals] for c, vals in table.items()}
    cells = {role: raw[col] if col is not None else [None] * n for role, col in roles.items()}
    malformed_messages = None
    if roles.get("messages") is not None:  # sft chat rows: text = the prompt messages (JSON), completion = the last
        cells["text"], cells["completion"], malformed_messages = sft.split_messages(cells["messages"])
    # Ids and labels are compared as written minus surrounding blanks (" 1" in a CSV is "1").
    for role in ("annotator", "label", "item", "task", "language"):
        cells[role] = [v.strip() if v is not None else None for v in cells[role]]

    reason = np.full(n, None, dtype=object)

    def flag(mask, why):
        mask = np.asarray(mask, dtype=bool) & (reason == None)  # noqa: E711 (elementwise)
        reason[mask] = why

    flag([any(v is not None and _MARK in v for v in row) for row in zip(*raw.values())], "non_utf8")
    if malformed_messages is not None:
        flag(malformed_messages, "malformed_messages")
    flag([not (t and t.strip()) for t in cells["text"]], "missing_text")
    flag([not a for a in cells["annotator"]], "missing_annotator")
    if roles["label"] is not None:  # sft rows with a completion need no label
        flag([not y for y in cells["label"]], "missing_label")
    for role in ("item", "task", "language"):
        if roles[role] is not None:
            flag([not v for v in cells[role]], f"missing_{role}")
    if task == "sft" and (roles.get("completion") or roles.get("messages")):
        flag([not (c and c.strip()) for c in cells["completion"]], "empty_completion")
    if labels is not None and roles["label"] is not None:
        known = set(labels)
        flag([y not in known for y in cells["label"]], "unknown_label")

    good = reason == None  # noqa: E711
    bad = [BadRow(file=path, row=int(number[i]), reason=reason[i], raw={c: _show(raw[c][i]) for c in raw})
           for i in np.flatnonzero(~good)]
    idx = np.flatnonzero(good)
    text = [cells["text"][i] for i in idx]
    item = [cells["item"][i] for i in idx] if cfg.item_column else text_item_id(text)
    frame = pd.DataFrame({
        "item_id": pd.Series(item, dtype=object),
        "text": pd.Series(text, dtype=object),
        "annotator": pd.Series([cells["annotator"][i] for i in idx], dtype=object),
        "label": pd.Series([cells["label"][i] for i in idx], dtype=object),
        "task": pd.Series([cells["task"][i] for i in idx], dtype=object),
        "language": pd.Series([cells["language"][i] for i in idx], dtype=object),
        "source_file": pd.Series([path] * len(idx), dtype=object),
        "source_row": number[idx],
    })
    if task == "sft":  # None: the completion is the label's verbalizer (data/sft.py)
        frame["completion"] = pd.Series([cells.get("completion", [None] * n)[i] for i in idx], dtype=object)
    return frame, bad, n
