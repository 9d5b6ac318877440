"""`hyperscale` command line: train, compare, onboard, predict, export, config, bench.

Argument parsing and printing only; the work is the public API (hyperscale/api.py).
Every subcommand validates its config completely before any model loads, so a
typo in a key costs a second, not a model load.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hyperscale.errors import HyperscaleError


def _add_config_args(p: argparse.ArgumentParser, config_required: bool = True) -> None:
    p.add_argument("config", nargs=None if config_required else "?", help="YAML run config, e.g. configs/demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.max_steps=50 (repeatable; `hyperscale config` "
                        "lists every key)")
    p.add_argument("--run-dir", default=None, help="where to write the run (default: runs/<config>-<time>); an "
                   "existing one is resumed from its newest complete checkpoint")


def cmd_train(args) -> int:
    from hyperscale.api import default_run_dir, train
    from hyperscale.config import load_config
    from hyperscale.errors import ConfigError, RunDirError
    from hyperscale.eval.report import summary_text

    cfg = load_config(args.config, args.overrides)
    run_dir = args.run_dir or str(default_run_dir(cfg, Path(args.config).stem))
    try:
        metrics = train(cfg, run_dir, use_ray=not args.no_ray)
    except (ConfigError, RunDirError):
        raise  # refused before the run started: nothing to resume
    except (HyperscaleError, KeyboardInterrupt) as e:
        print("interrupted" if isinstance(e, KeyboardInterrupt) else f"error: {e}", file=sys.stderr)
        _resume_hint(args, run_dir)
        return 130 if isinstance(e, KeyboardInterrupt) else 2
    print(summary_text(metrics, run_dir))
    return 0


def _resume_hint(args, run_dir: str) -> None:
    from hyperscale.rundir import RunDir

    if not RunDir(run_dir).checkpoints():
        return
    sets = "".join(f" --set {o}" for o in args.overrides)
    print(f"the run directory keeps its checkpoints; to resume it: hyperscale train {args.config}{sets} "
          f"--run-dir {run_dir}{' --no-ray' if args.no_ray else ''}", file=sys.stderr)


def cmd_compare(args) -> int:
    from hyperscale.api import compare, default_run_dir
    from hyperscale.config import load_config
    from hyperscale.errors import ConfigError
    from hyperscale.experiments.compare import parse_seeds

    if args.from_tune:
        if args.config or args.kinds:
            raise ConfigError("--from-tune", "takes the config and kinds from tune.json.", "drop CONFIG and --kinds.")
        from hyperscale.experiments.tune import compare_from_tune

        run_dir = args.run_dir or str(Path(args.from_tune) / "compare")
        summary = compare_from_tune(args.from_tune, run_dir, parse_seeds(args.seeds), overrides=args.overrides)
    else:
        if not args.config or not args.kinds:
            raise ConfigError("compare", "needs CONFIG and --kinds (or --from-tune DIR).",
                              "e.g. hyperscale compare configs/synthetic.yaml --kinds hyper_lora,shared_lora.")
        run_dir = args.run_dir or str(default_run_dir(load_config(args.config, args.overrides),
                                                      f"compare-{Path(args.config).stem}"))
        summary = compare(args.config, args.kinds, run_dir, overrides=args.overrides, seeds=parse_seeds(args.seeds))
    print((Path(run_dir) / "compare.md").read_text())
    print(f"run directory: {run_dir}  (compare.json, compare.md, *.png, one sub run per kind)")
    return 0 if summary["kinds"] else 1


def cmd_tune(args) -> int:
    from hyperscale.api import default_run_dir
    from hyperscale.config import load_config
    from hyperscale.experiments.compare import parse_seeds
    from hyperscale.experiments.tune import parse_grid, run_tune

    if args.space and args.set_grid:
        from hyperscale.errors import ConfigError

        raise ConfigError("--space", "and --set-grid both given.", "use one of them.")
    space = None
    if args.space:
        import yaml

        space = yaml.safe_load(Path(args.space).read_text())
    run_dir = args.run_dir or str(default_run_dir(load_config(args.config, args.overrides),
                                                  f"tune-{Path(args.config).stem}"))
    out = run_tune(args.config, args.kinds, run_dir, args.overrides, trials=args.trials, space=space,
                   grid=parse_grid(args.set_grid) if args.set_grid else None, seed=args.seed,
                   concurrency=args.concurrency, scheduler=args.scheduler,
                   trial_seeds=parse_seeds(args.trial_seeds) if args.trial_seeds else None)
    for name, rec in out["kinds"].items():
        c = rec["chosen"]
        print(f"{name:<22} trial {c['trial']}  validation macro_f1 {c['macro_f1']:.4f}  soft_ce {c['soft_ce']:.4f}  "
              f"{' '.join(rec['chosen_overrides'])}")
    print(f"run directory: {run_dir}  (tune.json, chosen_<kind>.yaml; next: hyperscale compare --from-tune "
          f"{run_dir} --seeds 0,1,2)")
    return 0


def cmd_onboard(args) -> int:
    from hyperscale.api import onboard

    result = onboard(args.run_dir, args.data, k=args.k, steps=args.steps, lr=args.lr, out=args.out, field=args.field)
    print(f"onboarded {result['n_new_ids']} new {args.field}s on k={args.k} labels each "
          f"({result['params_per_annotator']:,} parameters each); scored on {result['n_scored_rows']} later rows:")
    print(f"  mean per-annotator macro-F1  fallback {result['macro_f1_fallback']:.4f}  "
          f"onboarded {result['macro_f1_onboarded']:.4f}")
    print(f"written: {result['out']} (a run directory that predict serves with the new annotators known; "
          f"onboard.json inside)")
    return 0


def cmd_predict(args) -> int:
    import pandas as pd

    from hyperscale.serve.predict import Predictor, read_texts

    if args.data:
        return _predict_file(args)
    predictor = Predictor.from_run(args.run_dir)
    texts = read_texts(args.texts) if args.texts else list(args.text)
    long = predictor.predict(texts, args.annotators)
    n_unknown = int((~long.drop_duplicates("annotator")["known"]).sum())
    if args.out:
        if args.out.endswith(".json"):
            Path(args.out).write_text(json.dumps(long.to_dict(orient="records"), indent=1))
        else:
            long.to_csv(args.out, index=False)
        print(f"{len(long)} predictions ({len(texts)} texts x {long['annotator'].nunique()} annotators) -> {args.out}")
    else:
        with pd.option_context("display.max_columns", 50, "display.width", 200):
            print(predictor.matrix(long).to_string())
    if n_unknown:
        from hyperscale.adapters.kinds import get_kind

        kind = get_kind(predictor.run.cfg.adapter.kind)
        print(f"{n_unknown} annotator(s) unknown to this run (marked *): adapter.kind={kind.name} gives them "
              f"{kind.unknown_annotator}.", file=sys.stderr)
    return 0


def _predict_file(args) -> int:
    from hyperscale.api import predict_file
    from hyperscale.errors import DataError

    if not args.out:
        raise DataError("--data needs --out: a corpus's predictions are written, not printed. Fix: add "
                        "--out FILE.parquet.")
    s = predict_file(args.run_dir, args.data, args.out, args.annotators)
    print(f"{s['rows']} predictions ({s['texts']} texts x {s['annotators']} annotators) -> {s['out']} "
          f"({s['parts_written']} parts predicted, {s['parts_skipped']} already on disk from an interrupted run)")
    return 0


def cmd_export(args) -> int:
    from hyperscale.api import export

    annotators = "all" if args.all else (args.annotators or "")
    s = export(args.run_dir, args.out, annotators, task=args.task, language=args.language, merged=args.merged,
               with_base=args.with_base)
    fallback = [a["dir"] for a in s["adapters"] if a["fallback"]]
    if s.get("merged"):
        print(f"merged checkpoint for {s['adapters'][0]['condition']} -> {args.out} ({s['seconds']:.1f} s)")
    else:
        print(f"{s['n_adapters']} adapters ({s['task_type']}, {s['adapters'][0]['bytes']:,} bytes each) -> "
              f"{args.out} in {s['seconds']:.1f} s; index: {args.out}/export.json")
    if fallback:
        print(f"{len(fallback)} condition(s) unknown to this run got the fallback ({s['fallback_means']}), flagged "
              f"in their hyperscale.json: {', '.join(fallback[:5])}", file=sys.stderr)
    return 0


def cmd_generate(args) -> int:
    from hyperscale.serve.predict import Predictor

    predictor = Predictor.from_run(args.run_dir)
    out = predictor.generate(list(args.prompt), args.annotators, max_new_tokens=args.max_new_tokens,
                             do_sample=args.sample, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                             template=not args.raw)
    if args.out:
        if args.out.endswith(".jsonl"):
            out.to_json(args.out, orient="records", lines=True)
        else:
            out.to_csv(args.out, index=False)
        print(f"{len(out)} completions -> {args.out}")
    else:
        for r in out.itertuples():
            print(f"[{r.prompt_index}] {r.annotator}{'' if r.known else '*'}: {r.completion!r}")
    if not out["known"].all():
        print("* unknown to this run: generated with the kind's fallback adapter.", file=sys.stderr)
    return 0


def cmd_config(args) -> int:
    from hyperscale.config.docs import render

    print(render(args.key))
    return 0


BENCHES = ["kernels", "train", "memory"]


def cmd_bench(args, rest: list[str]) -> int:
    # Each benchmark parses its own arguments (`hyperscale bench train --help`).
    import importlib

    return importlib.import_module(f"hyperscale.bench.{args.what}").main(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hyperscale", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hyperscale {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one run from a YAML config (on Ray Train workers)")
    _add_config_args(p)
    p.add_argument("--no-ray", action="store_true",
                   help="run the training loop in this process (one worker), without Ray")
    p = sub.add_parser("compare", help="train several adapter kinds on identical data and budget; table + plots")
    _add_config_args(p, config_required=False)
    p.add_argument("--from-tune", default=None, metavar="DIR", help="train each kind's choice from a finished "
                   "`hyperscale tune` (its tune.json) and score the eval split; replaces CONFIG, --kinds and --set")
    p.add_argument("--kinds", help="comma-separated adapter kinds, e.g. hyper_lora,shared_lora,"
                   "annotator_embedding,multi_head,per_annotator_lora (also shared_lora+agg)")
    p.add_argument("--seeds", help="comma-separated train.seed values, e.g. 0,1,2: each kind is trained once per "
                   "seed and the table shows mean ± std (default: the config's seed, one run per kind)")
    p = sub.add_parser("tune", help="the same Ray Tune search budget per kind, selected on a validation split")
    _add_config_args(p)
    p.add_argument("--kinds", required=True, help="comma-separated adapter kinds (as for compare)")
    p.add_argument("--trials", type=int, default=4, help="trials per kind (each kind gets the same number)")
    p.add_argument("--space", default=None, help="YAML search space {kind or all or tables: {key: [values] or "
                   "{loguniform: [lo, hi]}}} (default: experiments/tune.py DEFAULT_SPACE)")
    p.add_argument("--set-grid", action="append", default=[], metavar="KEY=[V1,V2]",
                   help="grid over these values instead of sampling (repeatable; the same grid for every kind)")
    p.add_argument("--seed", type=int, default=0, help="seed of the trial draws")
    p.add_argument("--concurrency", type=int, default=2, help="trials at once (1 CPU each)")
    p.add_argument("--scheduler", choices=["fifo", "asha"], default="fifo", help="fifo: every trial runs its "
                   "budget; asha: validation every max_steps/4 steps, the bottom half of each rung stopped (per kind)")
    p.add_argument("--trial-seeds", default=None, metavar="S1,S2", help="train every trial once per seed and "
                   "score it by the seeds' mean validation metrics (the same seeds for every kind)")
    p = sub.add_parser("onboard", help="fit new annotators' own parameters on their first k labels")
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--data", required=True, help="CSV/JSONL/Parquet rows (text, annotator, label) of new annotators")
    p.add_argument("--k", type=int, default=16, help="labels per new annotator to fit on (the rest are scored)")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps (full batch of all fitting rows)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--field", default="annotator", choices=["annotator", "task", "language"],
                   help="what is new: annotators (default), or languages / tasks of a hyper_lora run conditioned on "
                        "them (its task / language embedding table grows)")
    p.add_argument("--out", default=None, help="the new run directory to write (default: RUN_DIR-onboarded); the "
                   "finished run itself is never changed")
    p = sub.add_parser("predict", help="labels for texts from any set of annotators (a text x annotator matrix)")
    p.add_argument("run_dir", help="a finished run directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--texts", help="file with one text per line (or a CSV/JSONL with a 'text' column)")
    src.add_argument("--text", action="append", help="a text (repeatable)")
    src.add_argument("--data", help="a corpus (.csv / .jsonl / .parquet with a 'text' column) to label for every "
                     "requested annotator, streamed and resumable; needs --out FILE.parquet")
    p.add_argument("--annotators", default="all", help="comma-separated annotator ids, or 'all' (the run's vocabulary)")
    p.add_argument("--out", default=None, help="write the long table to .csv or .json instead of printing")
    p = sub.add_parser("export", help="one PEFT LoRA directory per annotator (or condition), loadable by peft and "
                       "multi-LoRA servers")
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--out", required=True, help="the folder to write (replaced whole if it is an earlier export)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--annotators", help="comma-separated annotator ids (an unknown one gets the flagged fallback)")
    who.add_argument("--all", action="store_true", help="every annotator in the run's vocabulary")
    p.add_argument("--task", help="the task id, for runs conditioned on task")
    p.add_argument("--language", help="the language id, for runs conditioned on language")
    p.add_argument("--merged", action="store_true", help="write one full merged model for one condition instead "
                   "(unquantized backbones only)")
    p.add_argument("--with-base", action="store_true", help="also write the exact unquantized base model to OUT/base "
                   "and name it in every adapter_config.json (built-in backbones are on no hub under their name)")
    p = sub.add_parser("generate", help="completions of prompts from many perspectives in one batched decode "
                       "(each row with its own generated adapter; model.task sft or causal_lm runs)")
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--prompt", action="append", required=True, help="a prompt (repeatable)")
    p.add_argument("--annotators", default="all", help="comma-separated annotator ids, or 'all'")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--raw", action="store_true", help="do not wrap prompts in the run's model.prompt_template")
    p.add_argument("--out", default=None, help="write .csv or .jsonl instead of printing")
    p = sub.add_parser("config", help="every config key with its type, default and meaning")
    p.add_argument("key", nargs="?", help="a key or section, e.g. train.lr or adapter (default: all)")
    # add_help=False: `hyperscale bench train --help` is the benchmark's own help (its parser reads the rest).
    p = sub.add_parser("bench", help="benchmarks (print a table, write JSON)", add_help=False)
    p.add_argument("what", choices=BENCHES,
                   help="kernels: the batched low-rank op; train: end-to-end optimizer steps against peft, the "
                        "frozen base and the seed loop; memory: bytes per device predicted (and --measure'd)")
    return parser


def _version() -> str:
    from hyperscale import __version__

    return __version__


COMMANDS = {"train": cmd_train, "compare": cmd_compare, "tune": cmd_tune, "onboard": cmd_onboard, "predict": cmd_predict,
            "config": cmd_config, "export": cmd_export,
            "generate": cmd_generate}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "bench":
            return cmd_bench(args, rest)
        if rest:
            parser.error(f"unrecognised arguments: {' '.join(rest)}")
        return COMMANDS[args.command](args)
    except HyperscaleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
