"""docs/results.md's tables from a measurement chain's outputs, and the copies under docs/ (issue 11).

Usage: python scripts/experiments/tables.py RUNS DATASET[:NAME] [DATASET[:NAME] ...]
Reads RUNS/DATASET/{tune/tune.json, compare/compare.json, compare/compare.md, options/options.{json,md}} and
RUNS/DATASET.walls; copies the JSON to docs/results/NAME.{tune,compare,options}.json and the plots to
docs/img/comparison/ (NAME: DATASET unless given, e.g. pipa:pipa640 for a second measurement of pipa);
prints the markdown tables. Run it from the folder the chain ran in (compare.json names its run directories
relative to it; the argmax bootstrap reads their predictions).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def _setting(setting: dict) -> str:
    out = []
    for key, value in setting.items():
        short = key.split(".")[-1]
        out.append(f"{short}={value:.3g}" if isinstance(value, float) else f"{short}={value}")
    return ", ".join(out)


def tune_table(t: dict) -> str:
    n = t["trials_per_kind"]
    lines = [f"| kind | chosen setting | val macro-F1 | val soft CE | the {n} trials' val macro-F1 | trial wall s |",
             "|---|---|---|---|---|---|"]
    for kind, v in t["kinds"].items():
        c = v["chosen"]
        f1s = ", ".join(f"{r['macro_f1']:.3f}" + (" (" + "/".join(f"{x:.2f}" for x in r["per_seed_macro_f1"]) + ")"
                                                   if r.get("per_seed_macro_f1") else "") for r in v["trials"])
        walls = ", ".join(f"{r['wall_s']:.0f}" for r in v["trials"])
        lines.append(f"| {kind} | {_setting(c['setting'])} | {c['macro_f1']:.4f} | {c['soft_ce']:.4f} | {f1s} | "
                     f"{walls} |")
    return "\n".join(lines) + (f"\n\ntune wall: {t['wall_s']:.0f} s ({len(t['kinds'])} kinds x {n} trials, "
                               f"concurrency {t['concurrency']})\n")


def _verdict_cell(mean: float, std: float, b: dict, best: bool) -> str:
    value = f"{mean:.3f} ± {std:.3f}"
    return (f"**{value}**" if best else value) + \
        f" — {b['verdict']} ({b['diff']:+.3f} [{b['lo']:+.3f}, {b['hi']:+.3f}] vs {b['best_other']})"


def summary_table(c: dict) -> str:
    """Mean ± std per kind with its bootstrap verdict against the best other kind (README's compact tables)."""
    from hyperscale.experiments.stats import LOWER_IS_BETTER, METRICS

    boot, kinds = c["bootstrap"]["metrics"], c["kinds"]
    best = {m: (min if m in LOWER_IS_BETTER else max)(kinds, key=lambda k: k[m])["kind"] for m in METRICS}
    lines = ["| kind | macro-F1 | micro-F1 | soft CE |", "|---|---|---|---|"]
    for k in kinds:
        cells = [_verdict_cell(k[m], k.get(f"{m}_std", 0.0), boot[m][k["kind"]], best[m] == k["kind"]) for m in best]
        lines.append(f"| {k['kind']} | " + " | ".join(cells) + " |")
    m = c["majority_baseline"]
    lines.append(f"| majority class | {m['macro_f1']:.3f} | {m['micro_f1']:.3f} | {m['soft_ce']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    runs, datasets = Path(sys.argv[1]), sys.argv[2:]
    docs, img = Path("docs/results"), Path("docs/img/comparison")
    for arg in datasets:
        src, _, d = arg.partition(":")
        d = d or src
        base = runs / src
        print(f"### {d}\n")
        walls = (runs / f"{src}.walls").read_text() if (runs / f"{src}.walls").exists() else ""
        if (base / "options" / "options.json").exists():
            o = json.loads((base / "options" / "options.json").read_text())
            shutil.copy(base / "options" / "options.json", docs / f"{d}.options.json")
            shutil.copy(base / "options" / "options.png", img / f"{d}_options.png")
            print(f"#### {d}: hyper_lora variants on the validation split (seeds {o['seeds']})\n")
            print((base / "options" / "options.md").read_text())
        if (base / "tune" / "tune.json").exists():
            t = json.loads((base / "tune" / "tune.json").read_text())
            shutil.copy(base / "tune" / "tune.json", docs / f"{d}.tune.json")
            print(f"#### {d}: chosen settings (validation split)\n")
            print(tune_table(t))
        if (base / "compare" / "compare.json").exists():
            c = json.loads((base / "compare" / "compare.json").read_text())
            shutil.copy(base / "compare" / "compare.json", docs / f"{d}.compare.json")
            for png in (base / "compare").glob("bootstrap_intervals.png"):
                shutil.copy(png, img / f"{d}_bootstrap.png")
            print(f"#### {d}: eval split, chosen settings retrained over seeds {c['seeds']}\n")
            print((base / "compare" / "compare.md").read_text())
            print("In short (bold: best mean; each kind against the best other kind):\n")
            print(summary_table(c))
            train_wall = sum(k["wall_s"] for k in c["kinds"])
            print(f"bootstrap wall: {c['bootstrap'].get('wall_s', float('nan')):.0f} s; "
                  f"compare: {train_wall:.0f} s of training runs\n")
            if any("argmax_macro_f1" in k for k in c["kinds"]):  # eval.decision=validation: the argmax view too
                from hyperscale.experiments.stats import bootstrap_run_dirs, markdown

                dirs = {k["kind"]: k["run_dir"] if isinstance(k["run_dir"], list) else [k["run_dir"]]
                        for k in c["kinds"]}
                plain = bootstrap_run_dirs(dirs, c.get("min_items", 5), argmax=True)
                (base / "compare" / "bootstrap_argmax.json").write_text(json.dumps(plain, indent=2))
                shutil.copy(base / "compare" / "bootstrap_argmax.json", docs / f"{d}.bootstrap_argmax.json")
                print("The same bootstrap with every kind's plain argmax decisions (soft CE is unchanged):\n")
                print(markdown(plain))
        if walls:
            print("walls: " + " ".join(walls.split()) + "\n")


if __name__ == "__main__":
    main()
