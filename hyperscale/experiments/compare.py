"""`hyperscale compare CONFIG --kinds a,b,c`: every adapter kind on identical data, seeds and budget.

Each kind is the same config with only `adapter.kind` changed (plus, for the
pseudo-kind `shared_lora+agg`, `adapter.aggregate_labels=true`), trained through
the same entry point as `hyperscale train` into its own sub run directory
RUN_DIR/<kind>/. Every config is built and validated before the first run
starts, so a typo in the fifth kind costs a second, not four trainings.

With `seeds` (`--seeds 0,1,2`) every kind is trained once per `train.seed` (weight
init and batch order; the data split stays fixed) into RUN_DIR/<kind>/seed<s>/; a
kind's record then holds the mean of each metric over seeds, its standard deviation
(`<metric>_std`, ddof=1) and every seed's value (`per_seed`), and compare.md shows
"mean ± std". One seed on a small eval set can rank kinds by noise.

Outputs in RUN_DIR: compare.json (one record per kind plus the majority-class
reference), compare.md (the same as a Markdown table), per_annotator_f1.png
(per-annotator F1 distribution per kind) and macro_f1_vs_params.png. With two or
more kinds, also a paired bootstrap over eval items of each kind's difference to the
best other kind (experiments/stats.py): compare.json's `bootstrap`, a second table in
compare.md and bootstrap_intervals.png. Each sub run keeps its predictions.parquet.

`kind_overrides` (name -> `--set` strings) gives a kind its own settings on top of
the shared ones: `hyperscale compare --from-tune DIR` passes each kind's tuned choice.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hyperscale.adapters.kinds import kind_names
from hyperscale.config import RunConfig, load_config
from hyperscale.errors import ConfigError, RunDirError
from hyperscale.rundir import RunDir, read_metrics, to_json, write_atomic

# Pseudo-kinds: a name in --kinds -> (adapter.kind, extra overrides).
PSEUDO_KINDS = {"shared_lora+agg": ("shared_lora", ["adapter.aggregate_labels=true"])}
# (key in the record, column title, format) of compare.md, in order.
COLUMNS = (("macro_f1", "macro-F1", ".4f"), ("micro_f1", "micro-F1", ".4f"), ("pos_f1", "pos-F1", ".4f"),
           ("majority_vote_f1", "maj-vote F1", ".4f"), ("soft_ce", "soft CE", ".4f"),
           ("soft_manhattan", "Manhattan", ".4f"), ("soft_jsd", "JSD", ".4f"),
           ("trainable_params", "trainable params", ","), ("params_per_annotator", "params / new annotator", ","),
           ("samples_per_s", "samples/s", ".1f"), ("wall_s", "wall s", ".1f"))
# eval.decision=validation: the same F1s under the plain argmax, shown after the decided ones
ARGMAX_COLUMNS = (("argmax_macro_f1", "argmax macro-F1", ".4f"), ("argmax_micro_f1", "argmax micro-F1", ".4f"))


def parse_kinds(text: str) -> list[tuple[str, str, list[str]]]:
    """'a,b+agg' -> [(name, adapter.kind, extra overrides)]; unknown names are ConfigErrors."""
    out = []
    for name in [k.strip() for k in text.split(",") if k.strip()]:
        if name in PSEUDO_KINDS:
            kind, extra = PSEUDO_KINDS[name]
        elif name in kind_names():
            kind, extra = name, []
        else:
            raise ConfigError("--kinds", f"unknown kind {name!r}.",
                              f"use any of {kind_names() + list(PSEUDO_KINDS)}, comma-separated.")
        out.append((name, kind, [f"adapter.kind={kind}", *extra]))
    if not out:
        raise ConfigError("--kinds", "is empty.", "name at least one kind, e.g. --kinds hyper_lora,shared_lora.")
    if len({n for n, _, _ in out}) != len(out):
        raise ConfigError("--kinds", f"{text!r} names a kind twice.")
    return out


def default_trainer(cfg: RunConfig, run_dir: Path) -> dict:
    """What `hyperscale train` does: in this process for one worker, on Ray Train workers for more
    (distributed.num_workers is honoured, never ignored)."""
    from hyperscale.api import train

    return train(cfg, run_dir, use_ray=cfg.distributed.num_workers > 1)


def mean_samples_per_s(run_dir: Path) -> float:
    """Mean of the logged training throughput (metrics.jsonl train records).

    A run always logs at least its last step, so a missing log or one without a
    train record is a broken run directory, not a number to average."""
    path = RunDir(run_dir).metrics
    if not path.exists():
        raise RunDirError(f"{path} is missing: the run in {run_dir} did not write its metrics. Fix: re-run that kind "
                          f"(delete {run_dir} first).")
    values = [r["samples_per_s"] for r in read_metrics(path) if r.get("split") == "train" and "samples_per_s" in r]
    if not values:
        raise RunDirError(f"{path} holds no train record. Fix: re-run that kind (delete {run_dir} first).")
    return float(np.mean(values))


def _record(name: str, metrics: dict, run_dir: Path, wall: float, min_items: int) -> dict:
    keep = ("macro_f1", "micro_f1", "pos_f1", "accuracy", "majority_vote_f1", "majority_vote_accuracy",
            "soft_ce", "soft_manhattan", "soft_jsd", "trainable_params", "params_per_annotator",
            "n_annotators", "n_examples", "n_unknown_annotators")
    rec = {"kind": name, "adapter_kind": metrics.get("adapter_kind"), "run_dir": str(run_dir)}
    rec.update({k: metrics[k] for k in keep if k in metrics})
    if "argmax" in metrics:  # eval.decision=validation: the headline F1s are the decided ones
        rec.update({f"argmax_{k}": v for k, v in metrics["argmax"].items()})
        rec["decision"] = metrics["decision"]
    # the annotators macro_f1 averages (eval.min_items_per_annotator), as in eval.json
    rec["per_annotator_macro_f1"] = {a: r["macro_f1"] for a, r in metrics.get("per_annotator", {}).items()
                                     if r["n"] >= min_items}
    rec.update(samples_per_s=mean_samples_per_s(run_dir), wall_s=wall)
    return rec


# Metrics averaged over seeds (the rest of a record is identical across seeds or a
# count; wall_s is summed: the kind's total).
SEED_METRICS = ("macro_f1", "micro_f1", "pos_f1", "accuracy", "majority_vote_f1", "majority_vote_accuracy",
                "soft_ce", "soft_manhattan", "soft_jsd", "samples_per_s", "argmax_macro_f1", "argmax_micro_f1")


def merge_seeds(records: list[dict], seeds: list[int]) -> dict:
    """One kind's per-seed records -> mean record with <metric>_std and per_seed values."""
    out = dict(records[0])
    out["seeds"] = list(seeds)
    out["run_dir"] = [r["run_dir"] for r in records]
    out["per_seed"] = {k: [r.get(k) for r in records] for k in (*SEED_METRICS, "wall_s") if k in records[0]}
    for k in SEED_METRICS:
        if k in out["per_seed"]:
            v = np.asarray(out["per_seed"][k], dtype=np.float64)
            out[k] = float(v.mean())
            out[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    out["wall_s"] = float(sum(out["per_seed"]["wall_s"]))
    per = [r["per_annotator_macro_f1"] for r in records]
    out["per_annotator_macro_f1"] = {a: float(np.mean([p[a] for p in per if a in p])) for a in per[0]}
    return out


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return format(value, spec)


def _cell(record: dict, key: str, spec: str) -> str:
    std = record.get(f"{key}_std")
    if std is None or len(record.get("seeds", [])) < 2:
        return _fmt(record.get(key), spec)
    return f"{_fmt(record.get(key), spec)} ± {_fmt(std, spec)}"


def markdown_table(records: list[dict], baseline: dict | None) -> str:
    columns = COLUMNS[:2] + ARGMAX_COLUMNS + COLUMNS[2:] if any("argmax_macro_f1" in r for r in records) else COLUMNS
    head = "| kind | " + " | ".join(title for _, title, _ in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for r in records:
        lines.append(f"| {r['kind']} | " + " | ".join(_cell(r, k, f) for k, _, f in columns) + " |")
    if baseline:
        lines.append("| majority class | " + " | ".join(
            _fmt(baseline.get(k.removeprefix("argmax_")), f)
            if k not in ("trainable_params", "params_per_annotator", "samples_per_s", "wall_s")
            else "-" for k, _, f in columns) + " |")
    return "\n".join(lines) + "\n"


def parse_seeds(text: str | None) -> list[int] | None:
    """'0,1,2' -> [0, 1, 2]; None -> None (the config's train.seed, one run per kind)."""
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError("--seeds", f"{text!r} is not a comma-separated list of integers.", "e.g. --seeds 0,1,2.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError("--seeds", f"{text!r} is empty or names a seed twice.", "e.g. --seeds 0,1,2.")
    return seeds


def run_compare(config_path: str, kinds: str, run_dir: str | Path, overrides: list[str] | None = None,
                trainer=default_trainer, seeds: list[int] | None = None,
                kind_overrides: dict[str, list[str]] | None = None, n_boot: int = 1000) -> dict:
    """Train every kind (once per seed), then write compare.json, compare.md and the plots; returns the summary."""
    run_dir = Path(run_dir)
    kind_overrides = kind_overrides or {}
    seed_runs = [(None, [])] if not seeds else [(s, [f"train.seed={s}"]) for s in seeds]
    plan = [(name, [(seed, run_dir / name / (f"seed{seed}" if seeds else ""),
                     load_config(config_path, [*(overrides or []), *extra, *kind_overrides.get(name, []),
                                               *seed_extra]))
                    for seed, seed_extra in seed_runs])
            for name, _, extra in parse_kinds(kinds)]
    for _, runs in plan:
        for _, sub, _ in runs:
            if RunDir(sub).metrics.exists():
                raise ConfigError("--run-dir", f"{sub} already holds a run (metrics.jsonl would be appended to).",
                                  "pass a new --run-dir.")
    run_dir.mkdir(parents=True, exist_ok=True)
    records, baseline, min_items = [], None, plan[0][1][0][2].eval.min_items_per_annotator
    for name, runs in plan:
        per_seed = []
        for seed, sub, cfg in runs:
            t0 = time.perf_counter()
            metrics = trainer(cfg, sub)
            per_seed.append(_record(name, metrics, sub, time.perf_counter() - t0, cfg.eval.min_items_per_annotator))
            baseline = baseline or metrics.get("majority_baseline")
            tag = f" seed {seed}" if seed is not None else ""
            print(f"[compare] {name}{tag}: macro_f1={metrics.get('macro_f1', float('nan')):.4f} "
                  f"({per_seed[-1]['wall_s']:.1f} s)", flush=True)
        records.append(merge_seeds(per_seed, seeds) if seeds else per_seed[0])
    summary = {"config": str(config_path), "overrides": list(overrides or []), "seeds": seeds,
               "kind_overrides": kind_overrides, "scored_split": plan[0][1][0][2].eval.split,
               "kinds": records, "majority_baseline": baseline}
    table = markdown_table(records, baseline)
    if len(records) > 1:
        from hyperscale.experiments import stats

        t0 = time.perf_counter()
        dirs = {name: [sub for _, sub, _ in runs] for name, runs in plan}
        summary["bootstrap"] = stats.bootstrap_run_dirs(dirs, min_items, n_boot=n_boot)
        summary["bootstrap"]["wall_s"] = time.perf_counter() - t0
        table += "\n" + stats.markdown(summary["bootstrap"], summary["scored_split"])
        stats.plot_intervals(summary["bootstrap"], run_dir / "bootstrap_intervals.png")
    write_atomic(run_dir / "compare.json", to_json(summary, indent=2))
    write_atomic(run_dir / "compare.md", table)
    from hyperscale.eval import plots

    base_f1 = baseline.get("macro_f1") if baseline else None
    plots.per_annotator_f1({r["kind"]: list(r["per_annotator_macro_f1"].values()) for r in records},
                           run_dir / "per_annotator_f1.png", base_f1)
    plots.metric_vs_params(records, "macro_f1", run_dir / "macro_f1_vs_params.png", base_f1)
    return summary
