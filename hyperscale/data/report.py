"""What loading found: row counts, malformed rows by reason, and the rows themselves.

Malformed rows are never dropped silently: each one is kept here with its file, row
number, reason and raw content, and `save(run_dir)` writes them next to the run.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from hyperscale.errors import DataError

# Reasons a row is malformed, in the order they are checked (a row gets the first that applies).
REASONS = (
    "malformed_json",  # a JSON Lines line that is not a JSON object (e.g. truncated)
    "non_utf8",  # the raw row holds bytes that are not UTF-8
    "missing_text",
    "missing_annotator",
    "missing_label",
    "missing_item",  # data.item_column is set and the cell is empty
    "missing_task",  # data.task_column is set and the cell is empty
    "missing_language",  # data.language_column is set and the cell is empty
    "unknown_label",  # not in data.labels (or, for eval files, not seen in train)
    "invalid_one_hot",  # built-in ConvAbuse: an answer that is not exactly one of the five classes
    "malformed_messages",  # sft chat rows: not a list of {role, content}, or the last is not the assistant's
    "empty_completion",  # sft: the completion (column, or last chat message) is empty or blank
)

# How many bad rows an error message quotes; the rest are in bad_rows.jsonl.
_QUOTED = 5


@dataclass(kw_only=True)
class BadRow:
    file: str
    row: int  # 1-based record number in the file (CSV: data rows, header excluded; JSON Lines: the line)
    reason: str
    raw: dict  # the row as read, every value as a string (undecodable bytes shown as \xNN)

    def where(self) -> str:
        return f"{self.file}:{self.row} ({self.reason})"


@dataclass(kw_only=True)
class RowReport:
    """Counts per file and overall; `bad_rows` lists every malformed row."""

    n_rows: int = 0
    n_bad: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    per_file: dict[str, dict] = field(default_factory=dict)  # file -> {"n_rows", "n_bad", "reasons"}
    bad_rows: list[BadRow] = field(default_factory=list)
    # Facts about the good rows that are legal but worth knowing (e.g. repeated labels).
    notes: dict[str, int | float | str] = field(default_factory=dict)

    def add_file(self, file: str, n_rows: int, bad: list[BadRow]) -> None:
        reasons = Counter(b.reason for b in bad)
        self.per_file[file] = {"n_rows": n_rows, "n_bad": len(bad), "reasons": dict(reasons)}
        self.n_rows += n_rows
        self.n_bad += len(bad)
        for r, n in reasons.items():
            self.reasons[r] = self.reasons.get(r, 0) + n
        self.bad_rows.extend(bad)

    def merge(self, other: RowReport) -> None:
        for file, stats in other.per_file.items():
            self.add_file(file, stats["n_rows"], [b for b in other.bad_rows if b.file == file])
        self.notes.update(other.notes)

    def check(self, max_bad_fraction: float) -> None:
        """Raise DataError for the first file whose share of malformed rows is too high."""
        for file, stats in self.per_file.items():
            n, n_bad = stats["n_rows"], stats["n_bad"]
            if n_bad and n_bad > max_bad_fraction * n:
                first = [b.where() for b in self.bad_rows if b.file == file][:_QUOTED]
                raise DataError(
                    f"{file}: {n_bad} of {n} rows ({n_bad / max(n, 1):.1%}) are malformed, more than "
                    f"data.max_bad_fraction={max_bad_fraction}. By reason: {stats['reasons']}. "
                    f"First bad rows: {'; '.join(first)}. Fix: clean the file (every bad row is listed "
                    f"in bad_rows.jsonl of the run directory) or raise data.max_bad_fraction."
                )

    def summary(self) -> str:
        """What loading read, dropped, merged and inferred, for the console (the details are in
        data_report.json and bad_rows.jsonl)."""
        n = self.notes
        lines = [f"data: {self.n_rows:,} rows read"
                 + (f", {self.n_bad:,} malformed and dropped ({', '.join(f'{r} {c}' for r, c in self.reasons.items())};"
                    f" every one in bad_rows.jsonl)" if self.n_bad else ", none malformed")]
        if "train_rows" in n:
            lines.append(f"      train {n['train_rows']:,} rows ({n['train_items']:,} items, {n['train_annotators']:,} "
                         f"annotators), eval {n['eval_rows']:,} rows ({n['eval_items']:,} items, "
                         f"{n['eval_annotators']:,} annotators)")
            counts = n["train_label_counts"]
            total = max(1, sum(counts.values()))
            lines.append("      train labels: " + ", ".join(f"{k} {v:,} ({v / total:.0%})" for k, v in counts.items()))
            rare = [k for k, v in counts.items() if v < 5 or v < 0.005 * total]
            if rare and not n.get("labels_declared"):
                lines.append(f"      note: label value(s) {rare} are rare enough to be typos and are classes of "
                             f"their own now; declare data.labels to refuse values outside it")
        for split in ("train", "eval"):
            rep, bad = n.get(f"{split}_repeated_item_annotator_pairs", 0), n.get(
                f"{split}_contradicting_item_annotator_pairs", 0)
            if rep:
                lines.append(f"      {split}: {rep:,} repeated (item, annotator) pairs kept as separate rows "
                             f"({bad:,} of them with contradicting labels)")
        if n.get("eval_items_also_in_train"):
            lines.append(f"      note: {n['eval_items_also_in_train']} eval items also appear in train (the given split)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"n_rows": self.n_rows, "n_bad": self.n_bad, "reasons": dict(self.reasons),
                "per_file": self.per_file, "notes": self.notes}

    def save(self, run_dir: str) -> None:
        """Write data_report.json (counts) and bad_rows.jsonl (one malformed row per line)."""
        from hyperscale import rundir

        run = rundir.RunDir(run_dir)
        run.path.mkdir(parents=True, exist_ok=True)
        rundir.write_json(run.data_report, self.to_dict())
        lines = [json.dumps({"file": b.file, "row": b.row, "reason": b.reason, "raw": b.raw},
                            ensure_ascii=False) for b in self.bad_rows]
        rundir.write_atomic(run.bad_rows, "".join(line + "\n" for line in lines))
