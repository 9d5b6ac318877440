"""hyper_lora options on the VALIDATION split (issue 11 method work): the tuned hyper_lora setting alone and with
each option, 3 seeds each, paired bootstrap over validation items. Usage: RUNS=runs/comparison python scripts/experiments/options.py DATASET (after chain.sh DATASET)"""
import json, os, sys, time
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
from hyperscale.api import train
from hyperscale.config import load_config
from hyperscale.experiments.stats import bootstrap_run_dirs, markdown

d = sys.argv[1]
R = Path(os.environ.get("RUNS", "runs/comparison")) / d
tuned = json.loads((R / "tune" / "tune.json").read_text())
shared = tuned["overrides"]  # includes eval.split=validation
chosen = tuned["kinds"]["hyper_lora"]["chosen_overrides"]
variants = {"hyper_lora (tuned)": [], "+shared_base": ["adapter.hypernet.shared_base=true"],
            "+condition_dropout=0.2": ["adapter.hypernet.condition_dropout=0.2"],
            "+head_rank=16": ["adapter.hypernet.head_rank=16"]}
dirs, rows = {}, {}
for name, extra in variants.items():
    tag = name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "").replace("=", "")
    dirs[name] = []
    for seed in (0, 1, 2):
        run_dir = R / "options" / tag / f"seed{seed}"
        t0 = time.perf_counter()
        m = train(load_config(tuned["config"], [*shared, *chosen, *extra, f"train.seed={seed}"]), run_dir, use_ray=False)
        assert m["scored_split"] == "validation"
        rows.setdefault(name, []).append({k: m[k] for k in ("macro_f1", "micro_f1", "soft_ce")} | {"wall_s": time.perf_counter() - t0, "trainable_params": m["trainable_params"]})
        dirs[name].append(run_dir)
boot = bootstrap_run_dirs(dirs, 5, n_boot=1000)
out = {"dataset": d, "base_overrides": [*shared, *chosen], "variants": variants, "runs": rows, "bootstrap": boot}
(R / "options.json").write_text(json.dumps(out, indent=1, default=str))
lines = ["| variant | val macro-F1 | val micro-F1 | val soft CE | trainable params |", "|---|---|---|---|---|"]
for name, rs in rows.items():
    cell = lambda k: f"{np.mean([r[k] for r in rs]):.4f} ± {np.std([r[k] for r in rs], ddof=1):.4f}"
    lines.append(f"| {name} | {cell('macro_f1')} | {cell('micro_f1')} | {cell('soft_ce')} | {rs[0]['trainable_params']:,} |")
(R / "options.md").write_text("\n".join(lines) + "\n\n" + markdown(boot, "validation"))
print((R / "options.md").read_text())
