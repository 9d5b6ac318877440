"""Recipe 3 (issue 14), perspectivist generation on real data: sft verbalized labels vs classification vs causal_lm.

    python scripts/recipes/pipa_generation.py [--seeds 0] [--steps 60] [--out docs/recipes]

Three hyper_lora runs per annotator on pipa_toxicity with SmolLM2-135M 4-bit (fp32 compute), at one
budget: the same items and split (data.*), steps, batch, lr and adapter; only model.task differs
(configs/recipes/pipa_{sft,classification,causal_lm}.yaml). The lr is the same fixed value for all
three (the configs', 0.002, the demo's): none is tuned, so none is favoured. The sft run's labels are
parsed from its greedy generations (eval.json counts the unparsed ones); the other two read an argmax.
Reports every eval.json's per-annotator macro-F1, micro-F1, positive-class F1, accuracy and the
majority-class reference, and writes OUT/pipa_generation.json and OUT/pipa_generation.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

ARMS = {"sft": "configs/recipes/pipa_sft.yaml",
        "classification": "configs/recipes/pipa_classification.yaml",
        "causal_lm": "configs/recipes/pipa_causal_lm.yaml"}
KEYS = ("macro_f1", "micro_f1", "pos_f1", "accuracy")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0")
    p.add_argument("--steps", type=int, default=None, help="train.max_steps (default: the configs')")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], help="an extra override for every arm")
    p.add_argument("--work", default="runs/recipes/pipa")
    p.add_argument("--out", default="docs/recipes")
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    work, out = Path(args.work), Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = [f"train.max_steps={args.steps}"] if args.steps else []
    base += args.set
    result = {"recipe": "pipa_generation", "seeds": seeds, "threads": args.threads, "overrides": base, "arms": {}}
    for arm in args.arms.split(","):
        record = {"config": ARMS[arm], "seeds": {}, "wall_s": {}}
        for seed in seeds:
            run = work / arm / f"seed{seed}"
            metrics, wall = common.train_arm(common.ROOT / ARMS[arm], run, [*base, f"train.seed={seed}"])
            keep = {k: metrics.get(k) for k in (*KEYS, "unparsed_fraction", "completion_loss", "perplexity",
                                                "n_examples", "n_annotators", "trainable_params")}
            keep["majority_baseline"] = {k: metrics.get("majority_baseline", {}).get(k) for k in KEYS}
            record["seeds"][str(seed)] = keep
            record["wall_s"][str(seed)] = wall
            record["run_dir"] = str(run)
            print(arm, f"seed={seed}", json.dumps(keep), flush=True)
        for k in KEYS:
            vals = [record["seeds"][str(s)][k] for s in seeds if record["seeds"][str(s)][k] is not None]
            record[k] = common.mean_std(vals) if vals else None
        result["arms"][arm] = record
        common.dump(result, out / "pipa_generation.json")
    first = next(iter(result["arms"].values()))["seeds"][str(seeds[0])]
    result["majority_baseline"] = first["majority_baseline"]
    common.dump(result, out / "pipa_generation.json")
    plot(result, out / "pipa_generation.png")
    print(f"wrote {out / 'pipa_generation.json'} and {out / 'pipa_generation.png'}")
    return 0


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(result["arms"])
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / len(arms)
    for j, arm in enumerate(arms):
        xs = [i + (j - (len(arms) - 1) / 2) * width for i in range(len(KEYS))]
        means = [(result["arms"][arm][k] or {"mean": 0.0})["mean"] for k in KEYS]
        ax.bar(xs, means, width, label=f"hyper_lora, task={arm}")
        for x, k in zip(xs, KEYS):
            vals = (result["arms"][arm][k] or {"values": []})["values"]
            ax.scatter([x] * len(vals), vals, color="black", s=10, zorder=3)
    for i, k in enumerate(KEYS):
        ref = result["majority_baseline"].get(k)
        if ref is not None:
            ax.hlines(ref, i - 0.45, i + 0.45, color="tab:red", ls="--", lw=1,
                      label="majority class" if i == 0 else None)
    ax.set_xticks(range(len(KEYS)), ["macro-F1\n(per annotator)", "micro-F1", "pos-F1", "accuracy"])
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"pipa_toxicity, SmolLM2-135M 4-bit, equal budget ({len(result['seeds'])} seed(s))", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
