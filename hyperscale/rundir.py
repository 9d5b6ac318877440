"""The run-directory contract: every path a run writes, the one atomic write, metrics.jsonl, trainable weights.

A run directory holds (field names are a README contract):

    config.yaml                  the resolved config, plus a `runtime:` section (backend, device, versions)
    metrics.jsonl                one JSON object per line: a `start` record, `train` / `eval` records per
                                 logged step, a `resume` record wherever a run resumed
    eval.json, per_annotator.csv final metrics
    training_curve.png, per_annotator_f1.png
    data_report.json, bad_rows.jsonl   what loading found
    vocab.json, labels.json      condition vocabulary and class names (the index order of the weights)
    model/trainable.safetensors  the trainable weights (the frozen backbone is reloaded from its source)
    checkpoint_<step>/           complete checkpoints (training/checkpoint.py)

Everything here is plain Python (no torch at import), so the Ray driver and the
CLI can read a run without loading a model.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from hyperscale.errors import CheckpointError, RunDirError

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
PER_ANNOTATOR = "per_annotator.csv"
VOCAB = "vocab.json"
LABELS = "labels.json"
TRAINABLE = "model/trainable.safetensors"
DATA_REPORT = "data_report.json"
BAD_ROWS = "bad_rows.jsonl"
TRAINING_CURVE = "training_curve.png"
PER_ANNOTATOR_PLOT = "per_annotator_f1.png"
CHECKPOINT_PREFIX = "checkpoint_"


class RunDir:
    """Paths of one run directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    config = property(lambda self: self.path / CONFIG)
    metrics = property(lambda self: self.path / METRICS)
    eval = property(lambda self: self.path / EVAL)
    per_annotator = property(lambda self: self.path / PER_ANNOTATOR)
    vocab = property(lambda self: self.path / VOCAB)
    labels = property(lambda self: self.path / LABELS)
    trainable = property(lambda self: self.path / TRAINABLE)
    data_report = property(lambda self: self.path / DATA_REPORT)
    bad_rows = property(lambda self: self.path / BAD_ROWS)

    def checkpoint(self, step: int) -> Path:
        return self.path / checkpoint_name(step)

    def checkpoints(self) -> list[Path]:
        """Every `checkpoint_*` folder, oldest first (complete or not)."""
        if not self.path.is_dir():
            return []
        return sorted((p for p in self.path.glob(CHECKPOINT_PREFIX + "*") if p.is_dir()), key=lambda p: p.name)


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:06d}"


# -- the one atomic write ------------------------------------------------------------

def write_atomic(path: str | os.PathLike, data: str | bytes, *, fsync: bool = False) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never a torn one.

    The temporary file sits beside the target (same filesystem, so the rename is
    atomic) and is removed if writing fails; `fsync` also makes the new content
    durable before the rename (checkpoint manifests).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def finite_json(obj):
    """`obj` with every non-finite float replaced by None: JSON has no NaN, and a result
    that is not a number must read as missing, not as a value."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def to_json(obj, **kwargs) -> str:
    """Strict JSON (never a bare NaN token)."""
    return json.dumps(finite_json(obj), allow_nan=False, **kwargs)


def write_json(path: str | os.PathLike, obj) -> None:
    write_atomic(path, to_json(obj, indent=2) + "\n")


# -- metrics.jsonl ----------------------------------------------------------------

def append_metrics(path: str | os.PathLike, record: dict) -> None:
    """One record as one line of strict JSON. Appends are not atomic; a crash can tear the
    last line, which `read_metrics` and `truncate_metrics` recognise."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(to_json(record) + "\n")


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Every record of a metrics.jsonl. A torn last line (a crash mid-append) is skipped;
    any other line that is not JSON is damage and raises RunDirError naming it."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break  # the line a crash cut short
            raise RunDirError(f"{path}:{i + 1} is not a JSON record ({e.msg}): {line[:80]!r}. Fix: repair or "
                              f"delete that line; metrics.jsonl holds one JSON object per line.") from None
    return records


def truncate_metrics(path: str | os.PathLike, step: int) -> None:
    """Drop records past `step` (written by the attempt that crashed), so the log reads as one run."""
    path = Path(path)
    if not path.exists():
        return
    keep = [r for r in read_metrics(path)
            if r["step"] < step or (r["step"] == step and r.get("split") != "resume")]
    write_atomic(path, "".join(to_json(r) + "\n" for r in keep))


# -- trainable weights ------------------------------------------------------------

# Parameter names written before the package layout of 0.2 (the LoRA part was
# called the "source"); a finished run of that version still loads.
LEGACY_PREFIXES = {"source.": "lora."}


def save_trainable(state: dict, path: str | os.PathLike) -> None:
    """{name: CPU tensor} -> safetensors, atomically (`state` from trainable_state)."""
    from safetensors.torch import save as to_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, to_bytes(state))


def trainable_state(model) -> dict:
    """Full CPU copies of a model's trainable parameters (not under ZeRO-3: see training/checkpoint.py)."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model, path: str | os.PathLike) -> None:
    """Copy saved trainable weights into `model`, strictly: a tensor missing, extra or of
    another shape is a CheckpointError naming it (a half-loaded adapter would silently
    predict like an untrained one)."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(path))
    for old, new in LEGACY_PREFIXES.items():
        state = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in state.items()}
    own = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = sorted(n for n in set(own) & set(state) if own[n].shape != state[n].shape)
    if missing or extra or bad:
        raise CheckpointError(f"{path} does not match the model built from its config.yaml: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}, shape mismatch {bad[:3]}. Fix: load it with the config.yaml, "
                              f"vocab.json and labels.json it was saved with (an edited vocabulary changes the "
                              f"tables' shapes), or with the hyperscale version that wrote it.")
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(state[name].to(p.dtype))
