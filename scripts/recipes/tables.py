"""Markdown tables of the recipe results (docs/recipes/*.json), as docs/recipes.md shows them.

    python scripts/recipes/tables.py [--dir docs/recipes]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def ms(d: dict | None) -> str:
    if not d:
        return "–"
    return f"{d['mean']:.3f} ± {d['std']:.3f}" if len(d["values"]) > 1 else f"{d['mean']:.3f}"


def hyperdecoders(r: dict) -> str:
    lines = ["| arm | exact match | token accuracy | chosen lr (validation exact match per lr) | trainable params |",
             "|---|---|---|---|---|"]
    for arm, a in r["arms"].items():
        grid = ", ".join(f"{lr}: {v['exact_match']:.3f}" for lr, v in a["validation"].items())
        lines.append(f"| {arm} | {ms(a['exact_match'])} | {ms(a['token_accuracy'])} | {a['chosen_lr']:g} ({grid}) "
                     f"| {a.get('trainable_params') or '–':,} |")
    c = r["key_blind_ceiling"]
    lines.append(f"| key-blind ceiling (closed form) | {c['exact_match']:.3f} | {c['token_accuracy']:.3f} | – | – |")
    return "\n".join(lines)


def hyperx(r: dict) -> str:
    lines = [("| arm | held-out pairs: exact match | held-out: token acc. | seen pairs: exact match | seen: token acc. "
             "| chosen lr (validation exact match per lr) | trainable params |"), "|---|---|---|---|---|---|---|"]
    for arm, a in r["arms"].items():
        grid = ", ".join(f"{lr}: {v['exact_match']:.3f}" for lr, v in a["validation"].items())
        lines.append(f"| {arm} | {ms(a['eval_unseen_exact_match'])} | {ms(a['eval_unseen_token_accuracy'])} "
                     f"| {ms(a['eval_seen_exact_match'])} | {ms(a['eval_seen_token_accuracy'])} | {a['chosen_lr']:g} "
                     f"({grid}) | {a.get('trainable_params') or '–':,} |")
    c = r["task_blind_ceiling"]
    lines.append(f"| task-blind ceiling | {c['held_out_pairs']:.3f} (training-optimal) | – | {c['seen_pairs']:.3f} | – "
                 "| – | – |")
    onboarding = r["arms"].get("hyper_lora", {}).get("onboarding")
    if onboarding:
        lines += ["", ("| new language, k rows | exact match before (fallback) | after | token acc. before | after "
                  "| rows scored | params fitted |"), "|---|---|---|---|---|---|---|"]
        for seed, per_k in onboarding.items():
            for k, o in per_k.items():
                lines.append(f"| seed {seed}, k={k} | {o['fallback']['exact_match']:.3f} | "
                             f"{o['onboarded']['exact_match']:.3f} | {o['fallback']['token_accuracy']:.3f} | "
                             f"{o['onboarded']['token_accuracy']:.3f} | {o['n_scored_rows']} | "
                             f"{o['params_per_annotator']} |")
    return "\n".join(lines)


def pipa(r: dict) -> str:
    keys = ("macro_f1", "micro_f1", "pos_f1", "accuracy")
    lines = ["| hyper_lora, model.task | macro-F1 | micro-F1 | pos-F1 | accuracy | unparsed | wall s |",
             "|---|---|---|---|---|---|---|"]
    for arm, a in r["arms"].items():
        unparsed = [s.get("unparsed_fraction") for s in a["seeds"].values()]
        u = "–" if all(x is None for x in unparsed) else ", ".join(f"{x:.3f}" for x in unparsed if x is not None)
        wall = ", ".join(f"{w:.0f}" for w in a["wall_s"].values())
        lines.append(f"| {arm} | " + " | ".join(ms(a[k]) for k in keys) + f" | {u} | {wall} |")
    m = r.get("majority_baseline") or next(iter(next(iter(r["arms"].values()))["seeds"].values()))["majority_baseline"]
    lines.append("| majority class | " + " | ".join("–" if m.get(k) is None else f"{m[k]:.3f}" for k in keys)
                 + " | – | – |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default="docs/recipes")
    d = Path(p.parse_args().dir)
    for name, fn in (("hyperdecoders", hyperdecoders), ("hyperx", hyperx), ("pipa_generation", pipa)):
        path = d / f"{name}.json"
        if path.exists():
            print(f"### {name}\n\n{fn(json.loads(path.read_text()))}\n")


if __name__ == "__main__":
    main()
