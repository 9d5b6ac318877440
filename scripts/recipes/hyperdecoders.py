"""Recipe 1 (issue 14), Hyperdecoders: instance-conditioned hyper_lora against shared_lora at equal budget.

    python scripts/recipes/hyperdecoders.py [--seeds 0,1] [--lrs 0.003,0.01] [--steps 300] [--out docs/recipes]

Data: hyperscale/data/synthetic_sft.py::hyperdecoder_frames (a key word chooses which of K rules maps
the last word; the completion applies the rule twice), written to WORK/data/{train,validation,eval}.jsonl.
Arms: configs/recipes/hyperdecoders_hyper_lora.yaml (adapter.conditions: [instance]) and
configs/recipes/hyperdecoders_shared_lora.yaml; the same data, steps, batch, rank, backbone.
Protocol: every lr of the grid is trained for each arm at seed 0 and scored on the validation
prompts (greedy exact match, ties by token accuracy); the chosen lr is then trained at every seed
and scored on the eval prompts, which no run ever trained on or chose by. Writes
OUT/hyperdecoders.json and OUT/hyperdecoders.png.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

ARMS = {"hyper_lora": "configs/recipes/hyperdecoders_hyper_lora.yaml",
        "shared_lora": "configs/recipes/hyperdecoders_shared_lora.yaml"}


def main(argv=None) -> int:
    p = common.parser(__doc__, "hyperdecoders", "0.003,0.01")
    p.add_argument("--rules", type=int, default=6)
    p.add_argument("--words", type=int, default=6)
    p.add_argument("--prompts", type=int, default=3000)
    p.add_argument("--fillers", type=int, default=2, help="filler words around the key, before the last word")
    args = p.parse_args(argv)
    common.set_threads(args.threads)

    from hyperscale.data.synthetic_sft import (
        WORDS,
        hyperdecoder_frames,
        key_blind_ceiling,
        latin_table,
    )

    work, out = Path(args.work), Path(args.out)
    n_out = 2 if args.task == "sft" else 1
    frames = hyperdecoder_frames(n_rules=args.rules, n_words=args.words, n_out=n_out, n_fillers=args.fillers,
                                 n_prompts=args.prompts)
    columns = ["item_id", "text", "completion", "annotator", "rule"]
    if args.task == "causal_lm":
        for f in frames.values():
            f["label"] = f["completion"].str.strip()
        columns.append("label")
    files = {s: common.write_jsonl(f, work / "data" / f"{s}.jsonl", columns) for s, f in frames.items()}
    ceiling = key_blind_ceiling(latin_table(args.rules, args.words, 0), n_out)
    cut = common.cut_backbone(args.layers, work.parent)
    base = [f"model.name_or_path={cut}", "model.num_layers=null", f"model.task={args.task}",
            f"data.train_files=[{files['train']}]", f"data.eval_files=[{files['validation']}]"]
    if args.steps:
        base.append(f"train.max_steps={args.steps}")
    if args.task == "causal_lm":
        base += [f"data.labels={list(WORDS[:args.words])}".replace("'", '"')]
    seeds = [int(s) for s in args.seeds.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]
    max_new = n_out + 1  # the words and the end-of-sequence token

    result = {"recipe": "hyperdecoders", "task": args.task, "seeds": seeds, "lr_grid": lrs,
              "data": {"n_rules": args.rules, "n_words": args.words, "n_out_words": n_out, "n_fillers": args.fillers,
                       "rows": {s: len(f) for s, f in frames.items()}},
              "key_blind_ceiling": ceiling, "backbone": f"SmolLM2-135M, first {args.layers} blocks, float32",
              "threads": args.threads, "arms": {}}
    t_all = time.perf_counter()
    for arm, config in ARMS.items():
        record, runs = common.select_then_seeds(arm, config, base, lrs, seeds, work, frames["validation"], max_new)
        for seed in seeds:
            run = runs[seed]
            gen = common.generate(run, frames["eval"], max_new)
            record["eval"][str(seed)] = common.scores_by(frames["eval"], gen, by="rule")
            record.setdefault("examples", {})[str(seed)] = [
                {"prompt": t, "gold": g, "generated": c}
                for t, g, c in list(zip(frames["eval"]["text"], frames["eval"]["completion"], gen))[:8]]
            print(arm, f"seed={seed}", "eval", {k: v for k, v in record["eval"][str(seed)].items() if k != "by_rule"},
                  flush=True)
        for key in ("exact_match", "token_accuracy"):
            record[key] = common.mean_std([record["eval"][str(s)][key] for s in seeds])
        result["arms"][arm] = record
    result["total_wall_s"] = time.perf_counter() - t_all
    common.dump(result, out / "hyperdecoders.json")
    plot(result, out / "hyperdecoders.png")
    print(f"wrote {out / 'hyperdecoders.json'} and {out / 'hyperdecoders.png'}")
    return 0


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(result["arms"])
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, key, title in zip(axes, ("exact_match", "token_accuracy"), ("exact match", "token accuracy")):
        means = [result["arms"][a][key]["mean"] for a in arms]
        ax.bar(range(len(arms)), means, color=["tab:blue", "tab:gray"][: len(arms)], alpha=0.8)
        for i, a in enumerate(arms):
            vals = result["arms"][a][key]["values"]
            ax.scatter([i] * len(vals), vals, color="black", zorder=3, s=14)
        ax.axhline(result["key_blind_ceiling"][key], color="tab:red", ls="--", label="key-blind ceiling")
        ax.set_xticks(range(len(arms)), [f"{a}\n(lr {result['arms'][a]['chosen_lr']:g})" for a in arms])
        ax.set_ylim(0, 1)
        ax.set_title(f"{title}, held-out prompts")
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Hyperdecoders recipe ({result['task']}, {len(result['seeds'])} seeds; dots = seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
