"""Raw condition ids (annotator, task, language) <-> integer indices.

The hypernetwork's embedding tables are indexed by these integers, so the mapping is
part of every checkpoint: a checkpoint trained with annotator "a7" at index 3 must not
be resumed or served with "a7" at index 5. `fingerprint()` hashes the mapping so that
such a mismatch is caught before any weight is loaded.

Unknown ids map to -1 (never an exception): an eval or serving row from an annotator
never seen in training is normal in perspectivist data, and the caller applies its
documented fallback (e.g. the mean embedding) for -1.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import numpy as np
import pandas as pd

from hyperscale.errors import CheckpointError

CONDITION_FIELDS = ("annotator", "task", "language")
UNKNOWN = -1


class ConditionVocab:
    """Per condition field, raw id (str) -> index in [0, size). Initial ids are sorted."""

    def __init__(self, ids: dict[str, list[str]] | None = None):
        self._ids: dict[str, list[str]] = {}
        self._index: dict[str, dict[str, int]] = {}
        for field_name, values in (ids or {}).items():
            self._set(field_name, [str(v) for v in values])

    def _set(self, field_name: str, values: list[str]) -> None:
        if field_name not in CONDITION_FIELDS:
            raise ValueError(f"unknown condition field {field_name!r}; expected one of {CONDITION_FIELDS}")
        if len(set(values)) != len(values):
            raise ValueError(f"condition field {field_name!r} has repeated ids")
        self._ids[field_name] = list(values)
        self._index[field_name] = {v: i for i, v in enumerate(values)}

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, fields: Iterable[str] = ("annotator",)) -> ConditionVocab:
        """Sorted distinct non-null ids of each field; sorting makes indices independent of row order."""
        ids = {}
        for f in fields:
            col = frame[f]
            ids[f] = sorted({str(v) for v in col[col.notna()].unique()})
        return cls(ids)

    @property
    def fields(self) -> list[str]:
        return list(self._ids)

    def size(self, field_name: str) -> int:
        return len(self._ids[field_name])

    def ids(self, field_name: str) -> list[str]:
        return list(self._ids[field_name])

    def index(self, field_name: str, values: Iterable) -> np.ndarray:
        """Indices (int64) of raw ids; UNKNOWN (-1) for ids not in the vocabulary or missing."""
        table = self._index[field_name]
        return np.fromiter((table.get(str(v), UNKNOWN) if v is not None else UNKNOWN for v in values),
                           dtype=np.int64)

    def extend(self, field_name: str, new_ids: Iterable) -> list[str]:
        """Append ids not yet known (in the order given, repeats ignored); existing indices stay.

        Used to onboard annotators after training: only their embedding rows are new.
        Returns the ids actually added.
        """
        if field_name not in self._ids:
            self._set(field_name, [])
        table, ids = self._index[field_name], self._ids[field_name]
        added = []
        for v in map(str, new_ids):
            if v not in table:
                table[v] = len(ids)
                ids.append(v)
                added.append(v)
        return added

    # -- persistence ---------------------------------------------------------
    def to_dict(self) -> dict:
        return {"version": 1, "fields": {f: list(v) for f, v in self._ids.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> ConditionVocab:
        if d.get("version") != 1 or "fields" not in d:
            raise CheckpointError(f"condition vocabulary has an unknown layout (keys {sorted(d)}); "
                                  f"it was written by another hyperscale version.")
        return cls(d["fields"])

    def save(self, path) -> None:
        from hyperscale.rundir import write_atomic

        # atomic: never a half-written vocabulary beside a checkpoint
        write_atomic(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: str) -> ConditionVocab:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def fingerprint(self) -> str:
        """Hash of every field's ordered ids: equal iff every id has the same index."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def is_prefix_of(self, other: ConditionVocab) -> bool:
        """True if `other` is this vocabulary extended (same fields, same leading ids)."""
        return set(self._ids) == set(other._ids) and all(
            other._ids[f][: len(v)] == v for f, v in self._ids.items())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConditionVocab) and self._ids == other._ids

    def __repr__(self) -> str:
        sizes = ", ".join(f"{f}={len(v)}" for f, v in self._ids.items())
        return f"ConditionVocab({sizes})"
