"""PNG plots of runs and comparisons (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: CI, Ray workers, ssh sessions
    import matplotlib.pyplot as plt

    return plt


def per_annotator_f1(per_kind: dict[str, list[float]], path: Path, baseline: float | None = None,
                     note: str | None = None) -> None:
    """Box plot of per-annotator macro-F1 per kind, each annotator drawn as a jittered dot."""
    plt = _pyplot()
    kinds = list(per_kind)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(kinds) + 3), 4.2))
    data = [np.asarray(per_kind[k], dtype=float) for k in kinds]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(kinds) + 1), kinds, rotation=20)
    rng = np.random.default_rng(0)  # fixed jitter: the same runs give the same picture
    for i, values in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=10, alpha=0.6, color="tab:blue")
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="majority class (mean)")
        # outside the axes: inside, it hid the annotators it sat on
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=8)
    ax.set_ylabel("per-annotator macro-F1")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("per-annotator macro-F1", fontsize=11)
    if note:
        ax.set_xlabel(note, fontsize=8)
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


def training_curves(records: list[dict], path: Path, majority_f1: float | None = None) -> None:
    """Loss per logged step, with eval macro-F1 and the majority-class reference on a second axis."""
    plt = _pyplot()
    train = [r for r in records if r.get("split") == "train" and r.get("loss") is not None]
    evals = [r for r in records if r.get("split") == "eval" and r.get("macro_f1") is not None]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    handles = ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue", label="train loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss", color="tab:blue")
    if evals or majority_f1 is not None:
        ax2 = ax.twinx()
        if evals:
            handles += ax2.plot([r["step"] for r in evals], [r["macro_f1"] for r in evals], "o-", color="tab:orange",
                                label="eval macro-F1")
        if majority_f1 is not None:
            handles.append(ax2.axhline(majority_f1, color="grey", linestyle="--", linewidth=1,
                                       label="eval macro-F1, majority class"))
        ax2.set_ylabel("eval macro-F1", color="tab:orange")
        ax2.set_ylim(0, 1)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.12, 1.0), borderaxespad=0, fontsize=8)
    ax.set_title("training curve", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_plots(run, metrics: dict, records: list[dict], min_items: int) -> None:
    """The PNGs of one run (a RunDir): `training_curve.png` and `per_annotator_f1.png` (the annotators
    macro_f1 averages: those with at least `min_items` eval rows)."""
    from hyperscale.rundir import PER_ANNOTATOR_PLOT, TRAINING_CURVE

    base = metrics.get("majority_baseline", {}).get("macro_f1")
    if records:
        training_curves(records, run / TRAINING_CURVE, base)
    per = metrics.get("per_annotator", {}).values()
    scores = [v["macro_f1"] for v in per if "macro_f1" in v and v["n"] >= min_items]  # sft without labels: none
    if scores:
        note = f"{len(scores)} annotators with >= {min_items} eval rows ({len(per) - len(scores)} with fewer left out)"
        per_annotator_f1({metrics.get("adapter_kind", "model"): scores}, run / PER_ANNOTATOR_PLOT, base, note)
