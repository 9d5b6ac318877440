"""Paired bootstrap over eval items: is one kind's lead over another more than noise?

Every kind of a comparison is scored on the same eval rows (same split, same order;
checked), so the kinds can be compared *paired*: one bootstrap resample draws eval
ITEMS with replacement and keeps all of each drawn item's annotator rows (an item's
rows are not independent: they share the text), and every kind and seed is scored
on that same resample with the functions of eval/metrics.py:

- `macro_f1`: mean per-annotator macro-F1 (annotators with >= eval.min_items_per_annotator
  rows in the resample), as eval.json computes it;
- `micro_f1`: macro-F1 over all (item, annotator) rows of the resample;
- `soft_ce`: cross-entropy of each drawn item's gold label distribution against the mean
  predicted distribution of its annotators (a duplicated item counts twice).

Seeds: a kind's value on a resample is the MEAN over its seeds of each seed's metric
on that resample (every seed sees the same resample), so the point estimate of a
difference is exactly the difference of compare.md's "mean over seeds" columns and the
interval covers the uncertainty that comes from which eval items were drawn. The
alternative, averaging the seeds' probabilities per row first, would score an ensemble
that no single run is, and rank kinds by how much they gain from ensembling.

For each kind and metric the difference is taken to the best OTHER kind (by the full-data
mean: highest F1, lowest CE); `diff = kind - best_other`. The 95% interval is the
2.5 and 97.5 percentiles of the bootstrap differences; an interval that contains 0 is a
`tie`, otherwise `better` or `worse` (for soft_ce, lower is better).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hyperscale.errors import RunDirError
from hyperscale.eval.metrics import (
    macro_f1_present,
    perspectivist_metrics,
    soft_label_metrics,
)
from hyperscale.eval.report import PREDICTIONS

METRICS = ("macro_f1", "micro_f1", "soft_ce")
LOWER_IS_BETTER = {"soft_ce"}


class ScoredRun:
    """One run's predictions.parquet as arrays: gold and predicted class indices, probabilities."""

    def __init__(self, frame: pd.DataFrame, labels: list[str], argmax: bool = False):
        index = {name: i for i, name in enumerate(labels)}
        self.item_ids = frame["item_id"].astype(str).to_numpy()
        self.annotators = frame["annotator"].astype(str).to_numpy()
        self.gold = frame["gold"].astype(str).map(index).to_numpy(np.int64)
        self.probs = frame[[f"p_{c}" for c in labels]].to_numpy(np.float64)  # (n_rows, C)
        # the run's own decision (eval.decision), or the plain argmax (`argmax`, or no pred column)
        self.pred = (frame["pred"].astype(str).map(index).fillna(len(labels)).to_numpy(np.int64)
                     if "pred" in frame and not argmax else self.probs.argmax(1))


def labels_of(frame: pd.DataFrame) -> list[str]:
    """Class names in logit order, from the p_<class> columns."""
    return [c[2:] for c in frame.columns if c.startswith("p_")]


def read_predictions(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / PREDICTIONS
    if not path.exists():
        raise RunDirError(f"{path} is missing: the run in {run_dir} did not finish its evaluation (or predates "
                          f"predictions.parquet). Fix: re-run it into a new run directory.")
    return pd.read_parquet(path)


def metric_values(run: ScoredRun, rows: np.ndarray, item_key: np.ndarray, labels: list[str],
                  min_items: int) -> dict[str, float]:
    """The three metrics of `run` on the rows `rows`, whose items are `item_key` (one key per drawn item)."""
    gold, pred = run.gold[rows], run.pred[rows]
    pm = perspectivist_metrics(gold, pred, run.annotators[rows], labels, min_items)
    return {"macro_f1": pm["macro_f1"], "micro_f1": macro_f1_present(gold, pred, len(labels)),
            "soft_ce": soft_label_metrics(gold, run.probs[rows], item_key, len(labels))["soft_ce"]}


def _check_aligned(runs: dict[str, list[ScoredRun]]) -> ScoredRun:
    ref_name, ref_runs = next(iter(runs.items()))
    ref = ref_runs[0]
    for name, seeds in runs.items():
        for s, run in enumerate(seeds):
            if (len(run.gold) != len(ref.gold) or not (run.item_ids == ref.item_ids).all()
                    or not (run.annotators == ref.annotators).all() or not (run.gold == ref.gold).all()):
                raise RunDirError(f"the predictions of {name} (seed #{s}) are not on the same eval rows as "
                                  f"{ref_name}'s: a paired comparison needs one split. Fix: train every kind with "
                                  f"the same data.* settings (compare does).")
    return ref


def paired_bootstrap(runs: dict[str, list[ScoredRun]], labels: list[str], min_items: int = 5,
                     n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """kind -> its seeds' scored runs (same eval rows) -> the differences to the best other kind.

    Returns {"n_boot", "n_items", "confidence", "seeds_pairing", "metrics": {metric: {kind: {
    "value", "best_other", "diff", "lo", "hi", "verdict"}}}}.
    """
    if len(runs) < 2:
        raise ValueError("a paired bootstrap needs at least two kinds")
    ref = _check_aligned(runs)
    items, row_item = np.unique(ref.item_ids, return_inverse=True)
    rows_of = [np.flatnonzero(row_item == i) for i in range(len(items))]
    names = list(runs)

    def score(rows: np.ndarray, item_key: np.ndarray) -> np.ndarray:  # (kinds, metrics), mean over seeds
        out = np.zeros((len(names), len(METRICS)))
        for k, name in enumerate(names):
            vals = [metric_values(r, rows, item_key, labels, min_items) for r in runs[name]]
            out[k] = [np.mean([v[m] for v in vals]) for m in METRICS]
        return out

    full = score(np.arange(len(ref.gold)), ref.item_ids)
    rng = np.random.default_rng(seed)
    boot = np.zeros((n_boot, len(names), len(METRICS)))
    for b in range(n_boot):
        drawn = rng.integers(0, len(items), len(items))
        rows = np.concatenate([rows_of[i] for i in drawn])
        # a drawn position is its own item: an item drawn twice counts twice in soft_ce
        key = np.concatenate([np.full(len(rows_of[i]), j) for j, i in enumerate(drawn)])
        boot[b] = score(rows, key)

    alpha = (1.0 - confidence) / 2
    out = {"n_boot": n_boot, "n_items": len(items), "confidence": confidence, "seed": seed,
           "seeds_pairing": "per-seed metrics averaged over seeds on each shared item resample",
           "metrics": {}}
    for m, metric in enumerate(METRICS):
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        per_kind = {}
        for k, name in enumerate(names):
            others = [j for j in range(len(names)) if j != k]
            best = max(others, key=lambda j: sign * full[j, m])
            diffs = boot[:, k, m] - boot[:, best, m]
            diffs = diffs[np.isfinite(diffs)]
            lo, hi = (np.quantile(diffs, [alpha, 1 - alpha]) if len(diffs) else (np.nan, np.nan))
            diff = float(full[k, m] - full[best, m])
            if lo <= 0 <= hi or not np.isfinite(lo):
                verdict = "tie"
            else:
                verdict = "better" if sign * diff > 0 else "worse"
            per_kind[name] = {"value": float(full[k, m]), "best_other": names[best], "diff": diff,
                              "lo": float(lo), "hi": float(hi), "verdict": verdict}
        out["metrics"][metric] = per_kind
    return out


def bootstrap_run_dirs(run_dirs: dict[str, list[str | Path]], min_items: int = 5, n_boot: int = 1000,
                       seed: int = 0, argmax: bool = False) -> dict:
    """paired_bootstrap over the predictions.parquet of each kind's run directories (one per seed); the F1s
    of each run's own decision (eval.decision), or of the plain argmax with `argmax`."""
    frames = {k: [read_predictions(d) for d in dirs] for k, dirs in run_dirs.items()}
    labels = labels_of(next(iter(frames.values()))[0])
    runs = {k: [ScoredRun(f, labels, argmax) for f in fs] for k, fs in frames.items()}
    return paired_bootstrap(runs, labels, min_items, n_boot, seed)


def markdown(result: dict, split: str = "eval") -> str:
    """compare.md's second table: each kind's difference to the best other kind, with its interval
    (`split`: the scored split's name, for the caption)."""
    pct = round(100 * result["confidence"])
    lines = [(f"Paired bootstrap over {result['n_items']} {split} items ({result['n_boot']} resamples; "
             f"{pct}% percentile intervals; {result['seeds_pairing']}). `diff` = kind - best other kind "
             f"(soft CE: lower is better); an interval containing 0 is a tie."), "",
             "| kind | " + " | ".join(f"{m}: diff [{pct}% CI] vs best other" for m in METRICS) + " |",
             "|" + "---|" * (len(METRICS) + 1)]
    kinds = list(result["metrics"][METRICS[0]])
    for kind in kinds:
        cells = []
        for m in METRICS:
            r = result["metrics"][m][kind]
            cells.append(f"{r['diff']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}] vs {r['best_other']} ({r['verdict']})")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_intervals(result: dict, path: str | Path) -> None:
    """One panel per metric: each kind's difference to the best other kind with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(result["metrics"][METRICS[0]])
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 0.5 * len(kinds) + 1.6), sharey=True)
    for ax, m in zip(axes, METRICS):
        recs = [result["metrics"][m][k] for k in kinds]
        y = np.arange(len(kinds))
        diff = np.array([r["diff"] for r in recs])
        err = np.array([[r["diff"] - r["lo"] for r in recs], [r["hi"] - r["diff"] for r in recs]])
        colors = ["tab:gray" if r["verdict"] == "tie" else ("tab:green" if r["verdict"] == "better" else "tab:red")
                  for r in recs]
        err = np.clip(err, 0, None)
        for i, color in enumerate(colors):
            ax.errorbar(diff[i], y[i], xerr=err[:, i:i + 1], fmt="o", color=color, capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{m}: kind - best other" + (" (lower better)" if m in LOWER_IS_BETTER else ""), fontsize=9)
        ax.set_yticks(y, kinds)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
