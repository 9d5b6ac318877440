"""PNG plots of `hyperscale bench train` (bench.json's content): step time against each sweep, and the
variants' phases side by side. matplotlib with the Agg backend, imported only here."""

from __future__ import annotations

from pathlib import Path

PHASES = ("hypernet", "forward", "backward", "optimizer")
PHASE_LABELS = {"hypernet": "hypernetwork", "forward": "backbone forward", "backward": "backward",
                "optimizer": "optimizer"}
LOG_X = {"perspectives", "conditions", "batch", "rank", "seq_len"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def train_plots(report: dict, out: Path) -> list[Path]:
    """variants.png (base group, stacked phases) and step_vs_<key>.png per sweep group."""
    paths = []
    points = [p for p in report["points"] if not p.get("skipped") and p.get("step")]
    base = [p for p in points if p["group"] == "base"]
    if base:
        paths.append(_variants_plot(base, report, out / "variants.png"))
    for group in report["groups"]:
        if group == "base":
            continue
        members = [p for p in points if p["group"] == group]
        if members:
            paths.append(_sweep_plot(members, group, report, out / f"step_vs_{group}.png"))
    return paths


def _variants_plot(points: list[dict], report: dict, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [p["variant"] for p in points]
    bottom = [0.0] * len(points)
    for phase in PHASES:
        vals = [1e3 * (p[phase]["median"] or 0.0) for p in points]
        ax.bar(names, vals, bottom=bottom, label=PHASE_LABELS[phase])
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, p in enumerate(points):  # whiskers: min-max of the whole step
        st = p["step"]
        ax.plot([i, i], [1e3 * st["min"], 1e3 * st["max"]], color="black", lw=1)
        ax.text(i, 1e3 * st["max"], f"{1e3 * st['median']:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("ms per optimizer step\n(median phases; line: min-max)")
    s = points[0]["setting"]
    ax.set_title(f"variants side by side: P={s['perspectives']} k={s['conditions']} T={s['seq_len']} "
                 f"B={s['batch']} r={s['rank']}\n{_env_line(report)}", fontsize=9)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _sweep_plot(points: list[dict], key: str, report: dict, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant in dict.fromkeys(p["variant"] for p in points):
        rows = sorted((p for p in points if p["variant"] == variant), key=lambda p: p["setting"][key])
        xs = [p["setting"][key] for p in rows]
        med = [1e3 * p["step"]["median"] for p in rows]
        lo = [m - 1e3 * p["step"]["min"] for m, p in zip(med, rows)]
        hi = [1e3 * p["step"]["max"] - m for m, p in zip(med, rows)]
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=variant)
    if key in LOG_X:
        ax.set_xscale("log")
    ax.set_xlabel({"perspectives": "perspectives in the vocabulary", "conditions": "distinct conditions per batch",
                   "seq_len": "tokens per row", "batch": "rows per step", "rank": "LoRA rank",
                   "zero_stage": "DeepSpeed ZeRO stage"}.get(key, key))
    ax.set_ylabel("ms per optimizer step (median, min-max)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"step time vs {key}\n{_env_line(report)}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _env_line(report: dict) -> str:
    env = report["environment"]
    clock = "CPU time" if report.get("clock") == "cpu" else "wall clock"
    return (f"{env['device']}, {env['compute_dtype']}, {env['torch_threads']} thread(s), {clock}, "
            f"{report['rounds']} interleaved rounds")
