"""`hyperscale compare CONFIG --kinds a,b,c`: every adapter kind on identical data, seeds and budget.

Each kind is the same config with only `adapter.kind` changed (plus, for the
pseudo-kind `shared_lora+agg`, `adapter.aggregate_labels=true`), trained through
the same entry point as `hyperscale train` into its own sub run directory
RUN_DIR/<kind>/. Every config is built and validated before the first run
starts, so a typo in the fifth kind costs a second, not four trainings.

Outputs in RUN_DIR: compare.json (one record per kind plus the majority-class
reference), compare.md (the same as a Markdown table), per_annotator_f1.png
(per-annotator F1 distribution per kind) and macro_f1_vs_params.png.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from hyperscale.config import ADAPTER_KINDS, RunConfig, load_config
from hyperscale.errors import ConfigError

# Pseudo-kinds: a name in --kinds -> (adapter.kind, extra overrides).
PSEUDO_KINDS = {"shared_lora+agg": ("shared_lora", ["adapter.aggregate_labels=true"])}
# (key in the record, column title, format) of compare.md, in order.
COLUMNS = (("macro_f1", "macro-F1", ".4f"), ("micro_f1", "micro-F1", ".4f"), ("pos_f1", "pos-F1", ".4f"),
           ("majority_vote_f1", "maj-vote F1", ".4f"), ("soft_ce", "soft CE", ".4f"),
           ("soft_manhattan", "Manhattan", ".4f"), ("soft_jsd", "JSD", ".4f"),
           ("trainable_params", "trainable params", ","), ("params_per_annotator", "params / new annotator", ","),
           ("samples_per_s", "samples/s", ".1f"), ("wall_s", "wall s", ".1f"))


def parse_kinds(text: str) -> list[tuple[str, str, list[str]]]:
    """'a,b+agg' -> [(name, adapter.kind, extra overrides)]; unknown names are ConfigErrors."""
    out = []
    for name in [k.strip() for k in text.split(",") if k.strip()]:
        if name in PSEUDO_KINDS:
            kind, extra = PSEUDO_KINDS[name]
        elif name in ADAPTER_KINDS:
            kind, extra = name, []
        else:
            raise ConfigError("--kinds", f"unknown kind {name!r}.",
                              f"use any of {list(ADAPTER_KINDS) + list(PSEUDO_KINDS)}, comma-separated.")
        out.append((name, kind, [f"adapter.kind={kind}", *extra]))
    if not out:
        raise ConfigError("--kinds", "is empty.", "name at least one kind, e.g. --kinds hyper_lora,shared_lora.")
    if len({n for n, _, _ in out}) != len(out):
        raise ConfigError("--kinds", f"{text!r} names a kind twice.")
    return out


def default_trainer(cfg: RunConfig, run_dir: Path) -> dict:
    """The entry point `hyperscale train` uses in-process: the training worker itself."""
    from hyperscale.worker import run_training

    return run_training(cfg, run_dir)


def mean_samples_per_s(run_dir: Path) -> float:
    """Mean of the logged training throughput (metrics.jsonl train records)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return float("nan")
    values = [r["samples_per_s"] for r in map(json.loads, path.read_text().splitlines())
              if r.get("split") == "train" and "samples_per_s" in r]
    return float(np.mean(values)) if values else float("nan")


def _record(name: str, metrics: dict, run_dir: Path, wall: float) -> dict:
    keep = ("macro_f1", "micro_f1", "pos_f1", "accuracy", "majority_vote_f1", "majority_vote_accuracy",
            "soft_ce", "soft_manhattan", "soft_jsd", "trainable_params", "params_per_annotator",
            "n_annotators", "n_examples", "n_unknown_annotators")
    rec = {"kind": name, "adapter_kind": metrics.get("adapter_kind"), "run_dir": str(run_dir)}
    rec.update({k: metrics[k] for k in keep if k in metrics})
    rec["per_annotator_macro_f1"] = {a: r["macro_f1"] for a, r in metrics.get("per_annotator", {}).items()}
    rec.update(samples_per_s=mean_samples_per_s(run_dir), wall_s=wall)
    return rec


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return format(value, spec)


def markdown_table(records: list[dict], baseline: dict | None) -> str:
    head = "| kind | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in records:
        lines.append(f"| {r['kind']} | " + " | ".join(_fmt(r.get(k), f) for k, _, f in COLUMNS) + " |")
    if baseline:
        lines.append("| majority class | " + " | ".join(
            _fmt(baseline.get(k), f) if k not in ("trainable_params", "params_per_annotator", "samples_per_s", "wall_s")
            else "-" for k, _, f in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def run_compare(config_path: str, kinds: str, run_dir: str | Path, overrides: list[str] | None = None,
                trainer=default_trainer) -> dict:
    """Train every kind, then write compare.json, compare.md and the plots; returns the summary."""
    run_dir = Path(run_dir)
    plan = [(name, load_config(config_path, [*(overrides or []), *extra])) for name, _, extra in parse_kinds(kinds)]
    for name, _ in plan:
        if (run_dir / name / "metrics.jsonl").exists():
            raise ConfigError("--run-dir", f"{run_dir / name} already holds a run (metrics.jsonl would be appended to).",
                              "pass a new --run-dir.")
    run_dir.mkdir(parents=True, exist_ok=True)
    records, baseline = [], None
    for name, cfg in plan:
        sub = run_dir / name
        t0 = time.perf_counter()
        metrics = trainer(cfg, sub)
        records.append(_record(name, metrics, sub, time.perf_counter() - t0))
        baseline = baseline or metrics.get("majority_baseline")
        print(f"[compare] {name}: macro_f1={metrics.get('macro_f1', float('nan')):.4f} "
              f"({records[-1]['wall_s']:.1f} s)", flush=True)
    summary = {"config": str(config_path), "overrides": list(overrides or []),
               "kinds": records, "majority_baseline": baseline}
    _write(run_dir / "compare.json", json.dumps(summary, indent=2))
    _write(run_dir / "compare.md", markdown_table(records, baseline))
    from hyperscale import plots

    base_f1 = baseline.get("macro_f1") if baseline else None
    plots.per_annotator_f1({r["kind"]: list(r["per_annotator_macro_f1"].values()) for r in records},
                           run_dir / "per_annotator_f1.png", base_f1)
    plots.metric_vs_params(records, "macro_f1", run_dir / "macro_f1_vs_params.png", base_f1)
    return summary


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
