"""Pool the seeds of several `hyperscale compare --from-tune` runs of the same tune (e.g. seeds 0,1,2 and a later
3,4) into one table and one paired bootstrap, under the decision rule and under the plain argmax (issue 11).

Usage: python scripts/experiments/pool_seeds.py OUT.json COMPARE_DIR [COMPARE_DIR ...]
Each COMPARE_DIR holds compare.json; a kind's runs are the union of its run_dir lists, in the order given.
Prints the markdown; writes OUT.json (per-kind means / stds over the pooled seeds and both bootstraps).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

METRICS = ("macro_f1", "micro_f1", "soft_ce", "argmax_macro_f1", "argmax_micro_f1")


def main() -> None:
    from hyperscale.experiments.stats import bootstrap_run_dirs, markdown

    out, dirs = Path(sys.argv[1]), [Path(d) for d in sys.argv[2:]]
    runs: dict[str, list[str]] = {}
    for d in dirs:
        for k in json.loads((d / "compare.json").read_text())["kinds"]:
            runs.setdefault(k["kind"], []).extend(k["run_dir"] if isinstance(k["run_dir"], list) else [k["run_dir"]])
    table = {}
    for kind, run_dirs in runs.items():
        evals = [json.loads((Path(r) / "eval.json").read_text()) for r in run_dirs]
        vals = {m: [e[m] for e in evals] for m in METRICS[:3]}
        vals |= {m: [e.get("argmax", e)[m.removeprefix("argmax_")] for e in evals] for m in METRICS[3:]}
        table[kind] = {m: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "values": v}
                       for m, v in vals.items()} | {"run_dirs": run_dirs}
    boot = bootstrap_run_dirs(runs, 5)
    plain = bootstrap_run_dirs(runs, 5, argmax=True)
    out.write_text(json.dumps({"compare_dirs": [str(d) for d in dirs], "kinds": table, "bootstrap": boot,
                               "bootstrap_argmax": plain}, indent=1))
    n = len(next(iter(runs.values())))
    print(f"{n} seeds per kind, pooled from {', '.join(map(str, dirs))}\n")
    print("| kind | " + " | ".join(METRICS) + " |\n|" + "---|" * (len(METRICS) + 1))
    for kind, rec in table.items():
        print(f"| {kind} | " + " | ".join(f"{rec[m]['mean']:.3f} ± {rec[m]['std']:.3f}" for m in METRICS) + " |")
    print("\nDecision rule:\n\n" + markdown(boot) + "\n\nPlain argmax:\n\n" + markdown(plain))
    # The README's compact table: the majority reference is the same for every compare dir (same eval split).
    from tables import summary_table

    majority = json.loads((dirs[0] / "compare.json").read_text())["majority_baseline"]
    kinds = [{"kind": kind} | {m: rec[m]["mean"] for m in METRICS[:3]} | {f"{m}_std": rec[m]["std"] for m in METRICS[:3]}
             for kind, rec in table.items()]
    print("\nIn short (bold: best mean; each kind against the best other kind):\n")
    print(summary_table({"kinds": kinds, "bootstrap": boot, "majority_baseline": majority}))


if __name__ == "__main__":
    main()
