"""PNG plots of runs and comparisons (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: CI, Ray workers, ssh sessions
    import matplotlib.pyplot as plt

    return plt


def per_annotator_f1(per_kind: dict[str, list[float]], path: Path, baseline: float | None = None) -> None:
    """Box plot of per-annotator macro-F1 per kind, each annotator drawn as a jittered dot."""
    plt = _pyplot()
    kinds = list(per_kind)
    fig, ax = plt.subplots(figsize=(1.6 * len(kinds) + 2, 4))
    data = [np.asarray(per_kind[k], dtype=float) for k in kinds]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(kinds) + 1), kinds, rotation=20)
    rng = np.random.default_rng(0)  # fixed jitter: the same runs give the same picture
    for i, values in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=10, alpha=0.6, color="tab:blue")
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="majority class")
        ax.legend(loc="lower right")
    ax.set_ylabel("per-annotator macro-F1")
    ax.set_title("per-annotator macro-F1 by adapter kind")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def metric_vs_params(rows: list[dict], metric: str, path: Path, baseline: float | None = None) -> None:
    """`metric` against trainable parameters (log x), one labelled point per kind."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        x, y = r["trainable_params"], r.get(metric)
        if y is None or not np.isfinite(y):
            continue
        ax.scatter([x], [y], s=40)
        ax.annotate(r["kind"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="majority class")
        ax.legend(loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs trainable parameters")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def training_curves(records: list[dict], path: Path) -> None:
    """Loss per logged step, with eval macro-F1 (and the majority reference) on a second axis."""
    plt = _pyplot()
    train = [r for r in records if r.get("split") == "train"]
    evals = [r for r in records if r.get("split") == "eval" and "macro_f1" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue", label="train loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss", color="tab:blue")
    if evals:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in evals], [r["macro_f1"] for r in evals], "o-", color="tab:orange",
                 label="eval macro-F1")
        ax2.set_ylabel("eval macro-F1", color="tab:orange")
    ax.set_title("training curve")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_plots(run, metrics: dict, records: list[dict]) -> None:
    """The PNGs of one run (a RunDir): `training_curve.png` and `per_annotator_f1.png`."""
    from hyperscale.rundir import PER_ANNOTATOR_PLOT, TRAINING_CURVE

    if records:
        training_curves(records, run / TRAINING_CURVE)
    scores = [v["macro_f1"] for v in metrics.get("per_annotator", {}).values()]
    if scores:
        base = metrics.get("majority_baseline", {}).get("macro_f1")
        per_annotator_f1({metrics.get("adapter_kind", "model"): scores}, run / PER_ANNOTATOR_PLOT, base)
