"""hyper_lora method pilot on the VALIDATION split (issue 11): one base setting, each variant trained over a few
seeds with eval.split=validation (the eval split is never encoded), scored by validation macro-F1 / micro-F1 /
soft CE and a paired bootstrap over validation items. Nothing here reads the eval split.

Usage (1 torch thread per run; run one data set per process):
  python scripts/experiments/options.py DATASET --out runs/comparison/DATASET/options [--seeds 0,1] \
      [--base mid|res_h0.1] [--set key=value ...] [--variants name,name]
Writes OUT/options.json, OUT/options.md and OUT/options.png.
--base mid (the default): the pilot before the third measurement. --base res_h0.1: the tune config's defaults with
the residual form and the A/B heads at 0.1x lr, the base of the session-7 pilot (docs/results.md), e.g.
  python scripts/experiments/options.py pipa --out runs/pilot7/pipa --base res_h0.1 \
      --variants hyper_lora,+condition_head64,+condition_bias+condition_head64,+condition_dim16,+trunk_dropout0.1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

# The base: a middle-of-the-space setting (not a tuned one: the pilot must not see the tune's choice either).
BASE = ["train.lr=0.003", "train.annotator_lr_scale=10", "adapter.hypernet.hidden_dim=64"]
RES = ["adapter.hypernet.shared_base=true"]
BASES = {"mid": BASE, "res_h0.1": [*RES, "adapter.hypernet.head_lr_scale=0.1"]}
BIAS = ["adapter.hypernet.condition_bias=true"]
VARIANTS = {
    "hyper_lora": [],
    "+residual": RES,
    "+condition_bias": BIAS,
    "+residual+bias": RES + BIAS,
    "+residual+bias+cdrop0.2": RES + BIAS + ["adapter.hypernet.condition_dropout=0.2"],
    "+residual+bias+head_lr0.3": RES + BIAS + ["adapter.hypernet.head_lr_scale=0.3"],
    "+residual+bias+head_rank16": RES + BIAS + ["adapter.hypernet.head_rank=16"],
    # session 7, on --base res_h0.1
    "+condition_head64": ["adapter.hypernet.condition_head=64"],
    "+condition_bias+condition_head64": BIAS + ["adapter.hypernet.condition_head=64"],
    "+condition_dim16": ["adapter.hypernet.condition_dim=16"],
    "+trunk_dropout0.1": ["adapter.hypernet.dropout=0.1"],
}
DEFAULT_VARIANTS = list(VARIANTS)[:7]  # the pilot before the third measurement


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    p.add_argument("--base", choices=list(BASES), default="mid")
    args = p.parse_args()
    torch.set_num_threads(1)
    from hyperscale.api import train
    from hyperscale.config import load_config
    from hyperscale.experiments.stats import (
        bootstrap_run_dirs,
        markdown,
        plot_intervals,
    )

    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.variants.split(",")
    shared = [*args.set, "eval.split=validation", "logging.wandb.mode=disabled", "adapter.kind=hyper_lora",
              *BASES[args.base]]
    dirs, rows = {}, {}
    for name in names:
        tag = name.replace("+", "_").replace(".", "p").strip("_") or "base"
        for seed in seeds:
            run_dir = out / tag / f"seed{seed}"
            t0 = time.perf_counter()
            cfg = load_config(f"configs/tune_{args.dataset}.yaml", [*shared, *VARIANTS[name], f"train.seed={seed}"])
            done = run_dir / "eval.json"
            if done.exists() and (run_dir / "predictions.parquet").exists():  # a finished run of an interrupted pilot
                m = json.loads(done.read_text())
            else:
                m = train(cfg, run_dir, use_ray=False)
            assert m["scored_split"] == "validation", m["scored_split"]
            rows.setdefault(name, []).append({k: m[k] for k in ("macro_f1", "micro_f1", "soft_ce", "trainable_params")}
                                             | {"seed": seed, "wall_s": round(time.perf_counter() - t0, 1)})
            dirs.setdefault(name, []).append(run_dir)
            print(name, seed, rows[name][-1], flush=True)
    boot = bootstrap_run_dirs(dirs, 5, n_boot=1000)
    result = {"dataset": args.dataset, "base": args.base, "base_overrides": shared, "seeds": seeds,
              "variants": {n: VARIANTS[n] for n in names}, "runs": rows, "bootstrap": boot}
    (out / "options.json").write_text(json.dumps(result, indent=1, default=str))
    lines = ["| variant | val macro-F1 | val micro-F1 | val soft CE | trainable params | wall s / run |",
             "|---|---|---|---|---|---|"]
    for name, rs in rows.items():
        def cell(k, rs=rs):
            v = [r[k] for r in rs]
            return f"{np.mean(v):.4f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.4f}"
        lines.append(f"| {name} | {cell('macro_f1')} | {cell('micro_f1')} | {cell('soft_ce')} | "
                     f"{rs[0]['trainable_params']:,} | {np.mean([r['wall_s'] for r in rs]):.0f} |")
    (out / "options.md").write_text("\n".join(lines) + "\n\n" + markdown(boot, "validation"))
    plot_intervals(boot, out / "options.png")
    print((out / "options.md").read_text())


if __name__ == "__main__":
    main()
