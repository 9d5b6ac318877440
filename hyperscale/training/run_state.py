"""What a run directory already holds, and what this config may do with it, decided before anything is written.

    new        no run here yet: train from step 0
    resume     an unfinished run of the same config: continue from its newest complete checkpoint
    complete   a finished run of the same config: nothing to do (its own command exits in seconds)
    extend     a finished run, the same config but a larger train.max_steps: continue from the
               final checkpoint; the finished run's results are kept in results_step<N>/ first

A config that differs from the run's own (its config.yaml) in anything that changes
results is refused, with every differing key and the fix. What may differ: the
cadence and bookkeeping keys in `FREE_KEYS`, and a larger train.max_steps. (The LR
schedule is recomputed for the new max_steps, so an extended run continues with a
new schedule from where it stopped; it is not the run a larger budget would have
trained from scratch.) Nothing here imports torch: the Ray driver decides before any
worker starts, and every worker decides again (a restarted group, a direct call).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hyperscale.errors import ConfigError, RunDirError
from hyperscale.rundir import EVAL, PER_ANNOTATOR, PER_ANNOTATOR_PLOT, TRAINING_CURVE, RunDir

# Keys that change how a run reports or where it keeps things, never what it learns or scores.
FREE_KEYS = ("train.log_every", "train.eval_every", "train.save_every", "train.progress_bar",
             "train.keep_checkpoints", "train.max_nonfinite_steps", "eval.batch_size", "distributed.max_failures",
             "distributed.storage_path", "distributed.cpus_per_worker", "logging.")
RESULT_FILES = (EVAL, PER_ANNOTATOR, TRAINING_CURVE, PER_ANNOTATOR_PLOT, "predictions.parquet")


@dataclass
class RunState:
    kind: str  # new / resume / complete / extend
    run: RunDir
    finished_step: int | None = None  # complete / extend: the step the finished run stopped at

    def describe(self) -> str:
        return {"new": f"new run in {self.run.path}",
                "resume": f"resuming the unfinished run in {self.run.path}",
                "complete": f"the run in {self.run.path} is complete (step {self.finished_step}): nothing to do",
                "extend": f"extending the finished run in {self.run.path} from step {self.finished_step}"}[self.kind]


def _free(key: str) -> bool:
    return any(key == f or (f.endswith(".") and key.startswith(f)) for f in FREE_KEYS)


def _saved_config(run: RunDir):
    from hyperscale.config import load_config

    try:
        return load_config(str(run.config))
    except ConfigError as e:
        raise RunDirError(f"{run.config} cannot be read by this version of hyperscale ({e}). Fix: use a new "
                          f"--run-dir, or the hyperscale version that wrote that run.") from None


def inspect(run_dir, cfg) -> RunState:
    """Decide what `cfg` may do with `run_dir` (module docstring); raises RunDirError when it may not."""
    run = RunDir(run_dir)
    if not run.config.exists():
        return RunState("new", run)
    from hyperscale.config.parse import config_changes

    changed = {k: v for k, v in config_changes(_saved_config(run).to_dict(), cfg.to_dict()).items() if not _free(k)}
    steps = changed.get("train.max_steps")
    grows = steps is not None and steps[1] > steps[0]
    refused = [k for k in changed if not (k == "train.max_steps" and grows)]
    if refused:
        listing = "; ".join(f"{k}: {changed[k][0]!r} in the run, {changed[k][1]!r} now" for k in refused[:8])
        raise RunDirError(f"{run.path} holds a run with other settings ({listing}). Nothing was changed in it. "
                          f"Fix: to continue that run, use its own settings ({run.config}); to train these "
                          f"settings, pass a new --run-dir. Only cadence keys ({', '.join(FREE_KEYS)}) and a "
                          f"larger train.max_steps may differ.")
    finished = _finished_step(run)
    if finished is None:
        return RunState("resume", run)
    if grows:
        return RunState("extend", run, finished)
    return RunState("complete", run, finished)


def _finished_step(run: RunDir) -> int | None:
    """The step of a finished run's eval.json, or None when the run has not finished."""
    if not run.eval.exists():
        return None
    try:
        return int(json.loads(run.eval.read_text())["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise RunDirError(f"{run.eval} is damaged (not the eval.json a finished run writes). Fix: delete it; the run "
                          f"then re-evaluates from its final checkpoint.") from None


def keep_finished_results(state: RunState) -> Path:
    """Before extending a finished run: move its results into results_step<N>/ (nothing is overwritten)."""
    keep = state.run.path / f"results_step{state.finished_step:06d}"
    keep.mkdir(exist_ok=True)
    for name in RESULT_FILES:
        src = state.run.path / name
        if src.exists():
            os.replace(src, keep / name)
    shutil.copy2(state.run.config, keep / "config.yaml")
    return keep


def check_writable(run_dir) -> None:
    """Refuse, at start, a run directory this process cannot create or write (before any work)."""
    path = Path(run_dir)
    probe = path / f".hyperscale-write-check-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"cannot write the run directory {path}: {e.strerror or e}. Fix: pass a --run-dir you "
                          f"can write to (or distributed.storage_path), or fix that folder's permissions.") from None

