"""`hyperscale predict RUN_DIR --data FILE --out OUT.parquet`: label a whole corpus for every requested annotator.

The corpus is streamed: texts are read in chunks (pyarrow record batches for
Parquet, pandas' chunksize for CSV / JSONL), each chunk of texts x annotators goes
through `Predictor.predict` (which batches eval.batch_size rows per forward and
generates adapters for each batch's unique annotators only), and each chunk's rows
are written as one part file, OUT.parts/part-000123.parquet (written under a
temporary name and renamed, so a part on disk is complete). No more than one chunk
of texts or predictions is in memory at a time.

Interrupted? Run the same command again: parts already on disk are skipped (their
texts are read past, not predicted). OUT.parts/manifest.json records what the parts
were made from (run, data file size and modification time, annotators, chunk size);
a different request refuses to mix with them and names the fix. When every part is
there they are streamed into OUT (again via a temporary file) and OUT.parts is removed.

Output, one row per (text, annotator): `row` (the text's 0-based position in the
file), the file's `id` / `item_id` column if it has one, `annotator`, `known`
(False: an annotator the run never saw, given the kind's fallback), `label`, and
`p_<class>` per class.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from hyperscale.errors import DataError, RunDirError

FORMATS = (".csv", ".jsonl", ".parquet")
ID_COLUMNS = ("id", "item_id")
PAIRS_PER_PART = 8192  # text x annotator rows per part file: a few MB of Parquet, seconds of work on a CPU


def _check_data(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"--data {str(path)!r} is not a file. Fix: pass a .csv, .jsonl or .parquet file with a "
                        f"'text' column.")
    if path.suffix not in FORMATS:
        raise DataError(f"--data {str(path)!r}: unsupported format {path.suffix!r}. Fix: pass a .csv, .jsonl or "
                        f".parquet file with a 'text' column.")


def columns(path: Path) -> list[str]:
    """The file's column names, read from its header (Parquet schema, CSV header, first JSONL record)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).schema_arrow.names
    if path.suffix == ".csv":
        return list(pd.read_csv(path, dtype=str, nrows=0).columns)
    with open(path, encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "{}")
    try:
        return list(json.loads(first))
    except (json.JSONDecodeError, TypeError) as e:
        raise DataError(f"--data {str(path)!r}: the first line is not a JSON object. Fix: write one JSON object "
                        f"per line (JSONL) with a 'text' field.") from e


def count_texts(path: Path) -> int | None:
    """Rows in the file when that is cheap to know exactly (Parquet metadata, JSONL lines), else None."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if path.suffix == ".jsonl":
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    return None  # a CSV cell may hold newlines: counting lines would be wrong


def read_chunks(path: Path, texts_per_chunk: int) -> Iterator[pd.DataFrame]:
    """DataFrames of at most `texts_per_chunk` rows with a 'text' column (and an id column if the file has one)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        file = pq.ParquetFile(path)
        names = file.schema_arrow.names
        _need_text(path, names)
        columns = ["text"] + [c for c in ID_COLUMNS if c in names][:1]
        for batch in file.iter_batches(batch_size=texts_per_chunk, columns=columns):
            yield batch.to_pandas()
        return
    reader = (pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=texts_per_chunk)
              if path.suffix == ".csv" else pd.read_json(path, lines=True, dtype=False, chunksize=texts_per_chunk))
    with reader:
        for frame in reader:
            _need_text(path, list(frame.columns))
            yield frame[["text"] + [c for c in ID_COLUMNS if c in frame][:1]]


def _need_text(path: Path, columns: list[str]) -> None:
    if "text" not in columns:
        raise DataError(f"--data {str(path)!r} has no 'text' column (columns: {columns}). Fix: name the column "
                        f"holding the texts 'text'.")


def _texts(frame: pd.DataFrame, first_row: int, path: Path) -> list[str]:
    texts = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in frame["text"]]
    blank = [first_row + i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise DataError(f"--data {str(path)!r}: row(s) {', '.join(map(str, blank[:5]))} (0-based) have an empty "
                        f"text; there is nothing to label. Fix: drop or fill those rows.")
    return texts


def _manifest(run_dir, path: Path, annotators: list[str], texts_per_part: int) -> dict:
    st = path.stat()
    return {"run_dir": str(Path(run_dir).absolute()), "data": str(path.absolute()), "data_bytes": st.st_size,
            "data_mtime_ns": st.st_mtime_ns, "annotators": annotators, "texts_per_part": texts_per_part}


def _open_parts(parts: Path, manifest: dict) -> None:
    file = parts / "manifest.json"
    if file.exists():
        old = json.loads(file.read_text())
        if old != manifest and any(parts.glob("part-*.parquet")):
            changed = sorted(k for k in manifest if old.get(k) != manifest[k])
            raise RunDirError(f"{parts} holds parts of a different request (changed: {', '.join(changed)}); they "
                              f"cannot be mixed with this one. Fix: re-run the interrupted command unchanged to "
                              f"finish it, or remove {parts} to start over.")
        if old == manifest:
            return
    parts.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, file)


def predict_file(predictor, data: str | Path, out: str | Path, annotators="all", *,
                 pairs_per_part: int = PAIRS_PER_PART, progress: bool = True, stop_after: int | None = None) -> dict:
    """Label every text of `data` for every requested annotator into `out` (.parquet); resumable.

    `predictor`: a serve.predict.Predictor. `stop_after`: write at most that many new parts
    and return (for tests of resuming; None = run to the end). Returns a summary dict.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    path, out = Path(data), Path(out)
    _check_data(path)
    if out.suffix != ".parquet":
        raise DataError(f"--out {str(out)!r}: corpus predictions are written as Parquet. Fix: name the output "
                        f"file *.parquet.")
    if isinstance(annotators, str):
        annotators = predictor.annotators if annotators == "all" else \
            [a.strip() for a in annotators.split(",") if a.strip()]
    annotators = list(dict.fromkeys(str(a) for a in annotators))
    if not annotators:
        raise DataError("no annotator to predict for. Fix: pass --annotators a,b,c or 'all'.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"--out {str(out)!r}: cannot create its folder ({e.strerror}). Fix: pass a path in a "
                          f"folder you can write.") from e
    _need_text(path, columns(path))  # before any folder is made
    texts_per_part = max(1, pairs_per_part // len(annotators))
    parts = out.with_name(out.name + ".parts")
    _open_parts(parts, _manifest(predictor.run.run_dir, path, annotators, texts_per_part))

    total = count_texts(path)
    bar = tqdm(total=None if total is None else total * len(annotators), unit="pair", disable=not progress,
               desc=f"{path.name} x {len(annotators)} annotators")
    n_texts, n_parts, skipped, written = 0, 0, 0, 0
    complete = True
    for k, chunk in enumerate(read_chunks(path, texts_per_part)):
        part = parts / f"part-{k:06d}.parquet"
        first, n = n_texts, len(chunk)
        n_texts += n
        n_parts += 1
        if part.exists():
            skipped += 1
            bar.update(n * len(annotators))
            continue
        if stop_after is not None and written >= stop_after:
            complete = False
            break
        long = predictor.predict(_texts(chunk, first, path), annotators)
        long.insert(0, "row", long.pop("text_index").to_numpy() + first)
        long = long.drop(columns=["text"])
        id_cols = [c for c in ID_COLUMNS if c in chunk][:1]
        if id_cols:
            long.insert(1, id_cols[0], chunk[id_cols[0]].astype(str).to_numpy().repeat(len(annotators)))
        tmp = part.with_suffix(".tmp")
        pq.write_table(pa.Table.from_pandas(long, preserve_index=False), tmp)
        os.replace(tmp, part)
        written += 1
        bar.update(len(long))
    bar.close()
    summary = {"texts": n_texts, "annotators": len(annotators), "rows": n_texts * len(annotators),
               "parts": n_parts, "parts_skipped": skipped, "parts_written": written, "complete": complete,
               "out": str(out), "parts_dir": str(parts)}
    if not complete:
        return summary
    if n_texts == 0:
        raise DataError(f"--data {str(path)!r} holds no rows. Fix: pass a file with at least one text.")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    writer = None
    try:
        for k in range(n_parts):  # streamed part by part: the whole table is never in memory
            table = pq.read_table(parts / f"part-{k:06d}.parquet")
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    shutil.rmtree(parts)
    return summary
