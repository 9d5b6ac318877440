"""`hyperscale` command line: train, compare, onboard, predict, bench.

Every subcommand validates its config completely before any model loads, so a
typo in a key costs a second, not a model load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hyperscale.errors import HyperscaleError


def _default_run_dir(config_path: str) -> str:
    return str(Path("runs") / f"{Path(config_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML run config, e.g. configs/demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.max_steps=50 (repeatable)")
    p.add_argument("--run-dir", default=None, help="where to write the run (default: runs/<config>-<time>)")


def cmd_train(args) -> int:
    from hyperscale.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.no_ray:  # one process, no Ray: for debugging and tests
        run_dir = args.run_dir or _default_run_dir(args.config)
        from hyperscale.worker import run_training

        metrics = run_training(cfg, run_dir)
    else:  # the default: Ray Train workers (a local Ray unless RAY_ADDRESS names a cluster)
        from hyperscale.launcher import default_run_dir, launch

        run_dir = str(args.run_dir or default_run_dir(cfg, args.config))
        metrics = launch(cfg, run_dir)
    print_summary(metrics, run_dir)
    return 0


def print_summary(metrics: dict, run_dir: str) -> None:
    base = metrics.get("majority_baseline", {})
    rows = [("macro_f1", "mean per-annotator macro-F1"), ("micro_f1", "macro-F1 over all pairs"),
            ("pos_f1", "F1 of the minority class"), ("accuracy", "accuracy")]
    print(f"\nevaluation ({metrics['n_examples']} rows, {metrics['n_annotators']} annotators scored, "
          f"{metrics.get('trainable_params', 0):,} trainable params)")
    print(f"{'metric':<10} {'model':>8} {'majority':>9}  meaning")
    for key, meaning in rows:
        if key in metrics:
            print(f"{key:<10} {metrics[key]:>8.4f} {base.get(key, float('nan')):>9.4f}  {meaning}")
    print(f"run directory: {run_dir}  (eval.json, metrics.jsonl, config.yaml)")


def cmd_compare(args) -> int:
    from hyperscale.compare import parse_seeds, run_compare

    run_dir = args.run_dir or str(Path("runs") / f"compare-{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    summary = run_compare(args.config, args.kinds, run_dir, args.overrides, seeds=parse_seeds(args.seeds))
    print((Path(run_dir) / "compare.md").read_text())
    print(f"run directory: {run_dir}  (compare.json, compare.md, *.png, one sub run per kind)")
    return 0 if summary["kinds"] else 1


def cmd_onboard(args) -> int:
    from hyperscale.onboard import main as onboard_main

    return onboard_main(args)


def cmd_predict(args) -> int:
    from hyperscale.predict import main as predict_main

    return predict_main(args)


def cmd_bench(args, rest: list[str]) -> int:
    if args.what == "kernels":
        from hyperscale.bench.kernels import main as bench_main
    else:
        raise SystemExit(f"unknown benchmark {args.what!r}")
    return bench_main(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hyperscale", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one run from a YAML config (on Ray Train workers)")
    _add_config_args(p)
    p.add_argument("--no-ray", action="store_true",
                   help="run the training loop in this process (world size 1), without Ray")
    p = sub.add_parser("compare", help="train several adapter kinds on identical data and budget; table + plots")
    _add_config_args(p)
    p.add_argument("--kinds", required=True, help="comma-separated adapter kinds, e.g. hyper_lora,shared_lora,"
                   "annotator_embedding,multi_head,per_annotator_lora (also shared_lora+agg)")
    p.add_argument("--seeds", help="comma-separated train.seed values, e.g. 0,1,2: each kind is trained once per "
                   "seed and the table shows mean ± std (default: the config's seed, one run per kind)")
    p = sub.add_parser("onboard", help="fit new annotators' own parameters on their first k labels")
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--data", required=True, help="CSV/JSONL/Parquet rows (text, annotator, label) of new annotators")
    p.add_argument("--k", type=int, default=16, help="labels per new annotator to fit on (the rest are scored)")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps (full batch of all fitting rows)")
    p.add_argument("--lr", type=float, default=0.05)
    p = sub.add_parser("predict", help="labels for texts from any set of annotators (a text x annotator matrix)")
    p.add_argument("run_dir", help="a finished run directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--texts", help="file with one text per line (or a CSV/JSONL with a 'text' column)")
    src.add_argument("--text", action="append", help="a text (repeatable)")
    p.add_argument("--annotators", default="all", help="comma-separated annotator ids, or 'all' (the run's vocabulary)")
    p.add_argument("--out", default=None, help="write the long table to .csv or .json instead of printing")
    p = sub.add_parser("bench", help="benchmarks (print a table, write JSON)")
    p.add_argument("what", choices=["kernels"])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "bench":
            return cmd_bench(args, rest)
        if rest:
            parser.error(f"unrecognised arguments: {' '.join(rest)}")
        return {"train": cmd_train, "compare": cmd_compare, "onboard": cmd_onboard,
                "predict": cmd_predict}[args.command](args)
    except HyperscaleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
