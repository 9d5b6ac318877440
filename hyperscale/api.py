"""The functions behind the public API (`hyperscale.train`, `hyperscale.compare`, ...), which the
CLI calls too: every command is one of these plus argument parsing and printing.

Imports are deferred to the call: `import hyperscale` loads no torch, and the Ray
driver path (`train(..., use_ray=True)`) never loads deepspeed, bitsandbytes or triton.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from hyperscale.config import RunConfig, load_config
from hyperscale.errors import ConfigError


def _config(config: RunConfig | str | Path, overrides) -> RunConfig:
    if isinstance(config, RunConfig):
        if overrides:
            from hyperscale.config import build_config

            return build_config(config.to_dict(), list(overrides))
        return config
    return load_config(str(config), list(overrides or []))


def default_run_dir(cfg: RunConfig, name: str) -> Path:
    """`<distributed.storage_path or runs>/<name>-<time>`."""
    return Path(cfg.distributed.storage_path or "runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(config: RunConfig | str | Path, run_dir: str | Path | None = None, *, overrides=(),
          use_ray: bool = True, address: str | None = None) -> dict:
    """Train and evaluate one run; returns eval.json's metrics.

    `config`: a RunConfig or a YAML path (with `overrides`, `--set`-style strings).
    `use_ray`: run on Ray Train workers (a local Ray unless `address` / RAY_ADDRESS names a
    cluster), as `hyperscale train` does; False runs the loop in this process (world size 1).
    An existing `run_dir` is resumed from its newest complete checkpoint.
    """
    from hyperscale.training import run_state

    cfg = _config(config, overrides)
    if run_dir is None:
        run_dir = default_run_dir(cfg, Path(config).stem if not isinstance(config, RunConfig) else "run")
    if not use_ray and cfg.distributed.num_workers > 1:
        raise ConfigError("distributed.num_workers", f"is {cfg.distributed.num_workers}, but this run is in one "
                          "process (--no-ray / use_ray=False), which has one worker.",
                          "drop --no-ray (Ray places the workers), or set distributed.num_workers=1.")
    # Decided here, before Ray or any model starts: nothing in an existing run is written first.
    state = run_state.inspect(run_dir, cfg)
    if state.kind == "complete":
        print(state.describe(), flush=True)
        return json.loads(state.run.eval.read_text())
    run_state.check_writable(run_dir)
    if state.kind != "new":
        print(state.describe(), flush=True)
    if state.kind == "extend":
        print(f"its results so far are kept in {run_state.keep_finished_results(state)}", flush=True)
    if not use_ray:
        from hyperscale.training.loop import run_training

        return run_training(cfg, run_dir)
    from hyperscale.cluster import launch

    return launch(cfg, run_dir, address=address)


def build_model(config: RunConfig | str | Path, condition_sizes: dict[str, int], labels: list[str], *,
                overrides=(), backbone=None, device="cpu"):
    """The model a run trains (backbone loaded from `config` unless given), before any training."""
    from hyperscale.model import build_model as _build

    return _build(_config(config, overrides), condition_sizes, labels, backbone, device=device)


def compare(config: str | Path, kinds: str, run_dir: str | Path | None = None, *, overrides=(),
            seeds: list[int] | None = None) -> dict:
    """Train every kind of `kinds` ("hyper_lora,shared_lora,...") on identical data, seeds and budget."""
    from hyperscale.experiments.compare import run_compare

    if run_dir is None:
        run_dir = default_run_dir(load_config(str(config), list(overrides)), f"compare-{Path(config).stem}")
    return run_compare(str(config), kinds, run_dir, list(overrides), seeds=seeds)


def onboard(run_dir: str | Path, data: str | Path, *, k: int = 16, steps: int = 100, lr: float = 0.05,
            out: str | Path | None = None, field: str = "annotator") -> dict:
    """Fit the new annotators of `data` on their first k labels each.

    The finished run stays as it was; the result is a new run directory `out` (default
    `<run_dir>-onboarded`) that `predict` serves with the new annotators known, holding
    onboard.json (their F1 against the zero-shot fallback). Returns onboard.json's content.
    `field="language"` (or "task") onboards new languages (tasks) of a hyper_lora run conditioned on them.
    """
    from hyperscale.errors import DataError
    from hyperscale.serve.onboard import check_out_free, read_rows, save_onboarded
    from hyperscale.serve.onboard import onboard as _onboard
    from hyperscale.serve.run import load_run

    # both checked before the model loads
    out = check_out_free(out or f"{str(run_dir).rstrip('/')}-onboarded")
    if not Path(data).is_file():
        raise DataError(f"--data {str(data)!r} is not a file. Fix: pass a CSV / JSONL / Parquet file of rows "
                        f"(text, annotator, label) of the annotators to onboard.")
    run = load_run(run_dir)
    result = _onboard(run, read_rows(run, str(data)), k, steps, lr, field=field)
    result["out"] = str(save_onboarded(run, out, result))
    return result


def export(run_dir: str | Path, out: str | Path, annotators="all", *, task: str | None = None,
           language: str | None = None, merged: bool = False, with_base: bool = False) -> dict:
    """One PEFT LoRA directory per requested condition under `out` (serve/export.py); returns export.json.

    `annotators`: "all", a list or "a,b,c"; `merged`: one full merged checkpoint for one condition instead;
    `with_base`: also the exact base model in out/base, which every adapter_config.json then names.
    """
    from hyperscale.serve.export import export as _export

    return _export(run_dir, out, annotators, task=task, language=language, merged=merged, with_base=with_base)


def predict_file(run_dir: str | Path, data: str | Path, out: str | Path, annotators="all", *,
                 progress: bool = True) -> dict:
    """Label every text of a CSV / JSONL / Parquet file for every requested annotator into `out` (.parquet),
    streamed and resumable (serve/corpus.py). Returns a summary (texts, rows, parts written and skipped)."""
    from hyperscale.serve.corpus import _check_data
    from hyperscale.serve.corpus import predict_file as _predict_file
    from hyperscale.serve.predict import Predictor

    _check_data(Path(data))  # before the model loads
    return _predict_file(Predictor.from_run(run_dir), data, out, annotators, progress=progress)
