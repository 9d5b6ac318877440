"""Recipe 2 (issue 14), Hyper-X: zero-shot (task, language) pairs and few-shot onboarding of a new language.

    python scripts/recipes/hyperx.py [--seeds 0,1] [--lrs 0.001,0.003] [--steps 300] [--k 4,16] [--out docs/recipes]

Data: hyperscale/data/synthetic_sft.py::hyperx_frames: 4 tasks (shifts +1, +2, -1, +3 on the cycle 1..9)
x 5 languages (en, ord, low, up, fr); one pair per language is held out of training entirely
(`held_out_pairs`) and appears only in WORK/data/eval.jsonl (split `eval_unseen`); seen pairs are
split by prompt into train / validation / eval (`eval_seen`).
Arms (same data, steps, batch, rank, backbone): hyper_lora with adapter.conditions [task, language]
(configs/recipes/hyperx_hyper_lora.yaml), shared_lora (hyperx_shared_lora.yaml) and a per-pair
adapter, per_annotator_lora over the pair id in the annotator column (hyperx_per_pair_lora.yaml),
which an unseen pair cannot have (it gets the mean A and mean B).
Protocol: each lr of the grid at seed 0, chosen on the validation prompts (seen pairs; greedy exact
match, ties by token accuracy); the chosen lr at every seed, scored on eval (seen and held-out pairs).
Onboarding: the chosen hyper_lora run of every seed gets a new language (Spanish, every task) through
serve/onboard.py with field="language": one new row of the language table fitted on the language's
first k rows, scored by exact match on the rest, before (the unknown-language fallback: the mean
language embedding) and after. Writes OUT/hyperx.json and OUT/hyperx.png.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

ARMS = {"hyper_lora": "configs/recipes/hyperx_hyper_lora.yaml",
        "shared_lora": "configs/recipes/hyperx_shared_lora.yaml",
        "per_pair_lora": "configs/recipes/hyperx_per_pair_lora.yaml"}


def main(argv=None) -> int:
    p = common.parser(__doc__, "hyperx", "0.001,0.003")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--k", default="4,16", help="rows of the new language to onboard on (first k, tasks interleaved)")
    p.add_argument("--onboard-steps", type=int, default=60)
    p.add_argument("--onboard-lr", type=float, default=0.05)
    p.add_argument("--new-language", default="es")
    p.add_argument("--prompts-per-pair", type=int, default=60, help="at most 9 ** --content")
    p.add_argument("--content", type=int, default=1, help="numbers per prompt (2 did not train in 200 steps here)")
    p.add_argument("--fillers", type=int, default=2, help="filler words before the number (more distinct prompts)")
    args = p.parse_args(argv)
    common.set_threads(args.threads)

    from hyperscale.data.synthetic_sft import (
        LANGUAGES,
        HyperXSpec,
        held_out_pairs,
        hyperx_frames,
        new_language_frame,
        task_blind_ceiling,
    )

    work, out = Path(args.work), Path(args.out)
    n_content = args.content if args.task == "sft" else 1
    spec = HyperXSpec(n_content=n_content, n_fillers=args.fillers,
                      prompts_per_pair=min(args.prompts_per_pair, 9 ** n_content * 16 ** args.fillers))
    frames = hyperx_frames(spec)
    new_lang = new_language_frame(spec, args.new_language)
    columns = ["item_id", "text", "completion", "annotator", "task", "language", "split"]
    if args.task == "causal_lm":
        for f in (*frames.values(), new_lang):
            f["label"] = f["completion"].str.strip()
        columns.append("label")
    files = {s: common.write_jsonl(f, work / "data" / f"{s}.jsonl", columns) for s, f in frames.items()}
    common.write_jsonl(new_lang, work / "data" / f"new_language_{args.new_language}.jsonl", columns)
    cut = common.cut_backbone(args.layers, work.parent)
    base = [f"model.name_or_path={cut}", "model.num_layers=null", f"model.task={args.task}",
            f"data.train_files=[{files['train']}]", f"data.eval_files=[{files['validation']}]"]
    if args.steps:
        base.append(f"train.max_steps={args.steps}")
    if args.task == "causal_lm":
        words = sorted({w for lang in (*spec.languages, args.new_language) for w in LANGUAGES[lang]})
        base.append(f"data.labels={words}".replace("'", '"'))
    seeds = [int(s) for s in args.seeds.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]
    ks = [int(k) for k in args.k.split(",")]
    max_new = 2 * n_content + 1  # a word may take 2 tokens (" deux"); + end-of-sequence
    eval_frame = frames["eval"]
    result = {"recipe": "hyperx", "task": args.task, "seeds": seeds, "lr_grid": lrs,
              "data": {"languages": list(spec.languages), "tasks": list(spec.tasks), "n_content": n_content,
                       "n_fillers": args.fillers,
                       "held_out_pairs": [list(p) for p in held_out_pairs(spec)],
                       "rows": {s: len(f) for s, f in frames.items()},
                       "eval_rows": eval_frame["split"].value_counts().to_dict()},
              "task_blind_ceiling": task_blind_ceiling(spec),
              "backbone": f"SmolLM2-135M, first {args.layers} blocks, float32", "threads": args.threads, "arms": {}}
    previous = out / "hyperx.json"
    if previous.exists():  # arms run by an earlier call (--arms) are kept beside this call's
        result["arms"] = {a: r for a, r in json.loads(previous.read_text())["arms"].items()
                          if a not in args.arms.split(",")}
    t_all = time.perf_counter()
    for arm in args.arms.split(","):
        config = ARMS[arm]
        record, runs = common.select_then_seeds(arm, config, base, lrs, seeds, work, frames["validation"], max_new)
        for seed in seeds:
            run = runs[seed]
            gen = common.generate(run, eval_frame, max_new)
            scored = {}
            for split in ("eval_seen", "eval_unseen"):
                m = (eval_frame["split"] == split).to_numpy()
                scored[split] = common.scores_by(eval_frame[m].reset_index(drop=True),
                                                 [g for g, keep in zip(gen, m) if keep], by="annotator")
            record["eval"][str(seed)] = scored
            record.setdefault("examples", {})[str(seed)] = [
                {"pair": a, "split": s, "prompt": t, "gold": g, "generated": c} for a, s, t, g, c in
                list(zip(eval_frame["annotator"], eval_frame["split"], eval_frame["text"], eval_frame["completion"],
                         gen))[:: max(1, len(gen) // 10)]]
            print(arm, f"seed={seed}", {s: {k: v for k, v in d.items() if k != "by_annotator"}
                                        for s, d in scored.items()}, flush=True)
            if arm == "hyper_lora" and ks:
                record.setdefault("onboarding", {})[str(seed)] = onboard_language(
                    run, new_lang, ks, args.onboard_steps, args.onboard_lr, max_new, seed)
        for split in ("eval_seen", "eval_unseen"):
            for key in ("exact_match", "token_accuracy"):
                record[f"{split}_{key}"] = common.mean_std([record["eval"][str(s)][split][key] for s in seeds])
        result["arms"][arm] = record
        common.dump(result, out / "hyperx.json")  # partial results survive an interruption
    result["total_wall_s"] = time.perf_counter() - t_all
    common.dump(result, out / "hyperx.json")
    plot(result, out / "hyperx.png")
    print(f"wrote {out / 'hyperx.json'} and {out / 'hyperx.png'}")
    return 0


def onboard_language(run_dir: Path, frame, ks: list[int], steps: int, lr: float, max_new: int, seed: int) -> dict:
    """serve/onboard.py on a new language, scored by greedy exact match per pair (before = fallback)."""
    from hyperscale.serve.onboard import onboard
    from hyperscale.serve.run import load_run

    def score(run, rows):
        s = common.scores_by(rows.reset_index(drop=True), common.generate_with(run, rows, max_new), by="annotator")
        return ({k: v for k, v in s.items() if k != "by_annotator"},
                {a: d["exact_match"] for a, d in s["by_annotator"].items()})

    out = {}
    for k in ks:
        run = load_run(run_dir)  # LoadedRun.encode encodes sft rows as training does
        t0 = time.perf_counter()
        r = onboard(run, frame, k=k, steps=steps, lr=lr, seed=seed, field="language", score=score)
        out[str(k)] = {key: r[key] for key in ("k", "steps", "lr", "n_fit_rows", "n_scored_rows", "params_per_annotator",
                                               "fallback", "onboarded", "score_fallback", "score_onboarded",
                                               "loss_first", "loss_last")}
        out[str(k)]["wall_s"] = time.perf_counter() - t0
        print("onboard", run_dir, f"k={k}", "fallback", r["fallback"], "onboarded", r["onboarded"], flush=True)
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(result["arms"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    width = 0.38
    for ax, key, title in zip(axes, ("exact_match", "token_accuracy"), ("exact match", "token accuracy")):
        for j, (split, label) in enumerate((("eval_seen", "seen pairs"), ("eval_unseen", "held-out pairs"))):
            xs = [i + (j - 0.5) * width for i in range(len(arms))]
            ax.bar(xs, [result["arms"][a][f"{split}_{key}"]["mean"] for a in arms], width,
                   label=label, color=["tab:blue", "tab:orange"][j], alpha=0.85)
            for x, a in zip(xs, arms):
                vals = result["arms"][a][f"{split}_{key}"]["values"]
                ax.scatter([x] * len(vals), vals, color="black", s=12, zorder=3)
        ax.axhline(result["task_blind_ceiling"]["seen_pairs"], color="tab:red", ls="--", lw=1,
                   label="task-blind ceiling, seen pairs")
        ax.set_xticks(range(len(arms)), [f"{a}\n(lr {result['arms'][a]['chosen_lr']:g})" for a in arms], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Hyper-X recipe ({result['task']}, {len(result['seeds'])} seeds; dots = seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
