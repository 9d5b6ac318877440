"""`hyperscale tune CONFIG --kinds a,b --trials N`: the same search budget for every kind, on Ray Tune.

The protocol (issue 11): every choice is made on a validation split carved from the
TRAIN items (data.validation_fraction; 0.2 when the config has none), never on the
eval split, which tuning runs do not even encode (eval.split=validation, recorded in
each trial's eval.json as scored_split). Each kind gets exactly N trials over its own
space; a trial is `api.train(cfg, run_dir, use_ray=False)` in a Ray Tune worker process
(1 CPU and one torch thread each, at most `concurrency` at once), with the run-directory
layout of any run: RUN_DIR/<kind>/trial<i>/. The best trial of a kind has the highest
validation macro-F1, ties (within 1e-9) broken by the lower validation soft CE.

Scheduler: `fifo` (default: every trial runs its full budget) or `asha` (`--scheduler asha`):
every trial evaluates the validation split every max_steps/4 steps (train.eval_every; the
loop reports each evaluation to Tune through training/hooks.py) and ASHA (time attribute
`step`, metric validation macro-F1, reduction factor 2, grace period one evaluation) stops
trials in the bottom half of their rung. Each kind is searched by its own Tuner, so a
trial is only ever stopped against trials of its own kind (a scheduler shared across kinds
would spend one kind's budget on another's). A stopped trial is listed in tune.json with
the step it reached; only trials that ran the full budget can be chosen.

Trial seeds (`--trial-seeds 0,1`): each trial trains once per seed (RUN_DIR/<kind>/trial<i>/seed<s>/)
and is scored by the mean of its seeds' validation metrics; every kind gets the same seeds.

Search space: the trials of a kind are drawn up front from its space with a fixed seed
(`--space FILE`, or the DEFAULT_SPACE below) and handed to Tune as a grid of trial
specs, so the draws are recorded in tune.json and identical on a re-run. A `--set-grid
key=[v1,v2]` replaces sampling with the Cartesian product of the given values (the same
grid for every kind); --trials then caps it.

Space file (YAML): {kind or "all": {dotted key: [v1, v2, ...] (a choice) or
{loguniform: [lo, hi]} / {uniform: [lo, hi]} / {choice: [...]}}}; a kind's space is
"all" updated by its own entry.

Outputs in RUN_DIR: tune.json (every trial's settings, validation metrics and wall time,
the choice per kind) and chosen_<kind>.yaml (the full config of each kind's choice).
`hyperscale compare --from-tune RUN_DIR --seeds 0,1,2` retrains each choice over seeds
on the same training items and scores the eval split.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import yaml

from hyperscale.config import load_config
from hyperscale.errors import ConfigError, HyperscaleError
from hyperscale.rundir import to_json, write_atomic

# Kinds without per-annotator tables: train.annotator_lr_scale would change nothing.
NO_TABLES = {"shared_lora", "shared_lora+agg"}
DEFAULT_SPACE = {
    "all": {"train.lr": {"loguniform": [3e-4, 3e-2]}, "train.weight_decay": [0.0, 0.01]},
    "tables": {"train.annotator_lr_scale": {"loguniform": [1.0, 30.0]}},
    # hyper_lora's own knobs (issue 11): trunk width, factored A/B heads, condition dropout, the heads' lr, the
    # condition bias. The residual form (shared_base) is on: it helped on validation on both real sets (a
    # shared pair every row trains, the hypernetwork's heads at a lower lr learn each annotator's deviation;
    # docs/results.md's pilot); condition_bias helped on one set and hurt on the other, so the tune decides.
    # shared_lr_scale 4 (session 10's validation pilot on full pipa, split 0: macro-F1 0.629 against 0.605,
    # soft CE 0.651 against 0.669, over seeds 0-3): the shared pair and classifier head train at 4x the drawn lr.
    # Every value keeps its trainable parameters at 1,000 annotators under 2% of per_annotator_lora's
    # (experiments/params.py; tests/experiments/test_params.py).
    "hyper_lora": {"adapter.hypernet.shared_base": [True], "adapter.hypernet.shared_lr_scale": [4.0],
                   "adapter.hypernet.condition_bias": [False, True],
                   "adapter.hypernet.hidden_dim": [32, 64, 128], "adapter.hypernet.head_rank": [None, 16, 64],
                   "adapter.hypernet.condition_dropout": [0.0, 0.1, 0.2],
                   "adapter.hypernet.head_lr_scale": {"loguniform": [0.03, 1.0]}},
}
DEFAULT_VALIDATION_FRACTION = 0.2


def kind_space(name: str, space: dict) -> dict:
    """The space of one kind: `all`, then `tables` (kinds with annotator tables), then its own entry."""
    out = dict(space.get("all", {}))
    if name not in NO_TABLES:
        out.update(space.get("tables", {}))
    out.update(space.get(name, {}))
    return out


def _draw(spec, rng: np.random.Generator):
    if isinstance(spec, list):
        return spec[int(rng.integers(len(spec)))]
    if isinstance(spec, dict) and len(spec) == 1:
        (how, arg), = spec.items()
        if how == "choice":
            return arg[int(rng.integers(len(arg)))]
        lo, hi = (float(v) for v in arg)
        if how == "loguniform":
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if how == "uniform":
            return float(rng.uniform(lo, hi))
    raise ConfigError("--space", f"cannot read the space entry {spec!r}.",
                      "use a list of values, or {loguniform: [lo, hi]}, {uniform: [lo, hi]}, {choice: [...]}.")


def _fmt(value) -> str:
    """A drawn value as a --set right-hand side (YAML: None -> null, lists as JSON)."""
    if value is None:
        return "null"
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, list) else str(value)


def sample_trials(name: str, space: dict, n: int, seed: int) -> list[dict]:
    """n settings ({key: value}) for kind `name`, drawn from its space with a seed of its own."""
    ks = kind_space(name, space)
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    return [{k: _draw(spec, rng) for k, spec in ks.items()} for _ in range(n)]


def parse_grid(items: list[str]) -> dict[str, list]:
    """['train.lr=[1e-3,3e-3]'] -> {'train.lr': [0.001, 0.003]}."""
    grid = {}
    for item in items:
        key, sep, text = item.partition("=")
        values = yaml.safe_load(text) if sep else None
        if not sep or not isinstance(values, list) or not values:
            raise ConfigError("--set-grid", f"{item!r} is not KEY=[v1,v2,...].", "e.g. --set-grid train.lr=[1e-3,3e-3].")
        grid[key.strip()] = values
    return grid


def grid_trials(grid: dict[str, list], n: int | None) -> list[dict]:
    trials = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    return trials[:n] if n else trials


def _trainable(config: dict) -> None:
    """One trial, in a Ray Tune worker process: train, then report the validation metrics."""
    spec = config["spec"]
    os.chdir(spec["cwd"])  # Tune starts trials in their own folder; config paths are the driver's
    os.environ.update(spec["env"])
    # A trial is its own one-process world. Ray's workers start with the driver's environment, so
    # rendezvous variables a driver process set for itself (an earlier in-process run) would make
    # concurrent trials bind the same port (EADDRINUSE): drop them unless this process has a group.
    import torch.distributed as dist

    if not dist.is_initialized():
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(key, None)
    import torch
    from ray import tune

    torch.set_num_threads(spec["threads"])
    from hyperscale.api import train
    from hyperscale.training import hooks

    def report_mid_run(step: int, metrics: dict) -> None:  # ASHA reads these; the last one is the final report
        tune.report({**{k: float(metrics[k]) for k in ("macro_f1", "micro_f1", "soft_ce")},
                     "step": step, "final": 0, "failed": 0})

    hooks.set_on_eval(report_mid_run if spec.get("scheduler") == "asha" else None)

    t0 = time.perf_counter()
    try:
        seeds = spec.get("seeds") or [None]  # --trial-seeds: one training per seed, the trial scores their mean
        per_seed = []
        for s in seeds:
            extra = [] if s is None else [f"train.seed={s}"]
            cfg = load_config(spec["config"], [*spec["overrides"], *extra])
            run_dir = spec["run_dir"] if s is None else str(Path(spec["run_dir"]) / f"seed{s}")
            per_seed.append(train(cfg, run_dir, use_ray=False))
        out = {k: float(np.mean([m[k] for m in per_seed])) for k in ("macro_f1", "micro_f1", "soft_ce")}
        if spec.get("seeds"):
            out["per_seed_macro_f1"] = [float(m["macro_f1"]) for m in per_seed]
        out.update(failed=0, final=1, step=int(per_seed[-1]["step"]))
    except HyperscaleError as e:  # a diverged trial is a result (the worst), not a crash of the search
        Path(spec["run_dir"]).mkdir(parents=True, exist_ok=True)
        (Path(spec["run_dir"]) / "trial_error.txt").write_text(f"{type(e).__name__}: {e}\n")
        out = {"macro_f1": float("nan"), "micro_f1": float("nan"), "soft_ce": float("nan"), "failed": 1, "final": 1}
    out["wall_s"] = time.perf_counter() - t0
    tune.report(out)


def select(trials: list[dict]) -> dict:
    """The trial with the highest validation macro-F1; ties (1e-9) go to the lower soft CE. Trials an
    early-stopping scheduler stopped (`stopped_at_step`) are never chosen: their scores are at a smaller budget."""
    ok = [t for t in trials if not t["failed"] and not t.get("stopped_at_step") and np.isfinite(t["macro_f1"])]
    if not ok:
        crashed = [t["error"] for t in trials if t.get("error")]
        if crashed:
            raise HyperscaleError(f"every trial of {trials[0]['kind']} failed; the first crashed with {crashed[0]} "
                                  f"(the full traceback is in the trial's error.txt under RUN_DIR/ray_tune). Fix: "
                                  f"that error, then run tune again into a new --run-dir.")
        raise HyperscaleError(f"every trial of {trials[0]['kind']} failed (see trial_error.txt in their run "
                              f"directories). Fix: narrow the space (a lower train.lr).")
    best = max(t["macro_f1"] for t in ok)
    return min((t for t in ok if t["macro_f1"] >= best - 1e-9), key=lambda t: t["soft_ce"])


def run_tune(config_path: str, kinds: str, run_dir: str | Path, overrides: list[str] | None = None, *,
             trials: int = 4, space: dict | None = None, grid: dict[str, list] | None = None, seed: int = 0,
             concurrency: int = 2, scheduler: str = "fifo", trial_seeds: list[int] | None = None) -> dict:
    """Tune every kind with the same number of trials; write tune.json and chosen_<kind>.yaml.

    `scheduler`: "fifo" (every trial runs its full budget) or "asha" (per kind, module docstring).
    `trial_seeds`: train every trial once per seed (RUN_DIR/<kind>/trial<i>/seed<s>/) and score it by the mean of
    its seeds' validation metrics (a single seed's validation macro-F1 moves by as much as the settings differ)."""
    import ray
    from ray import tune

    from hyperscale.cluster import FORWARD_ENV
    from hyperscale.experiments.compare import parse_kinds

    run_dir = Path(run_dir).resolve()
    if (run_dir / "tune.json").exists():
        raise ConfigError("--run-dir", f"{run_dir} already holds a finished tuning (tune.json).", "pass a new --run-dir.")
    config_path = str(Path(config_path).resolve())
    from hyperscale.config.parse import apply_overrides, load_yaml

    shared = list(overrides or [])  # every trial's and every choice's
    raw = apply_overrides(load_yaml(config_path), shared)  # before validation: eval.decision needs the split
    if not (raw.get("data") or {}).get("validation_fraction"):
        shared.append(f"data.validation_fraction={DEFAULT_VALIDATION_FRACTION}")
    base = load_config(config_path, shared)
    if scheduler not in ("fifo", "asha"):
        raise ConfigError("--scheduler", f"{scheduler!r} is not a scheduler.", "use fifo or asha.")
    eval_every = max(1, base.train.max_steps // 4)
    if trial_seeds is not None and (not trial_seeds or len(set(trial_seeds)) != len(trial_seeds)):
        raise ConfigError("--trial-seeds", f"{trial_seeds} is empty or names a seed twice.", "e.g. --trial-seeds 0,1.")
    if scheduler == "asha":
        if trial_seeds and len(trial_seeds) > 1:
            raise ConfigError("--trial-seeds", "with --scheduler asha: ASHA compares one training's mid-run scores, "
                              "a trial of several seeds trains them one after the other.",
                              "use --scheduler fifo with --trial-seeds, or one seed.")
        if base.train.max_steps < 4:
            raise ConfigError("--scheduler", f"asha needs rungs: train.max_steps={base.train.max_steps} < 4.",
                              "raise train.max_steps or use --scheduler fifo.")
    # Trials only (a chosen config scores the eval split and has no rungs): tuning never scores (or encodes) the
    # eval split; ASHA compares trials at the rungs.
    tuning_only = ["eval.split=validation", *([f"train.eval_every={eval_every}"] if scheduler == "asha" else [])]
    plan = []
    for name, _, extra in parse_kinds(kinds):
        settings = grid_trials(grid, trials) if grid else sample_trials(name, space or DEFAULT_SPACE, trials, seed)
        for i, setting in enumerate(settings):
            sets = [*shared, *tuning_only, *extra, *(f"{k}={_fmt(v)}" for k, v in setting.items())]
            load_config(config_path, sets)  # every trial's config checked before the first starts
            plan.append({"kind": name, "trial": i, "setting": setting, "overrides": sets,
                         "run_dir": str(run_dir / name / f"trial{i}")})
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}
    specs = [{**p, "config": config_path, "cwd": os.getcwd(), "env": env, "threads": 1, "scheduler": scheduler,
              "seeds": list(trial_seeds) if trial_seeds else None} for p in plan]

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS", "local"), num_cpus=None if os.environ.get("RAY_ADDRESS")
                 else max(concurrency, 1), num_gpus=0, include_dashboard=False, log_to_driver=True)
    t0 = time.perf_counter()
    done, kind_wall = {}, {}
    for name in dict.fromkeys(s["kind"] for s in specs):  # one Tuner per kind: ASHA compares a kind's own trials
        k0 = time.perf_counter()
        asha = None
        if scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            asha = ASHAScheduler(time_attr="step", metric="macro_f1", mode="max", max_t=base.train.max_steps,
                                 grace_period=eval_every, reduction_factor=2)
        tuner = tune.Tuner(
            tune.with_resources(_trainable, {"cpu": 1}),
            param_space={"spec": tune.grid_search([s for s in specs if s["kind"] == name])},  # pre-drawn trials
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, num_samples=1, scheduler=asha),
            run_config=tune.RunConfig(storage_path=str(run_dir / "ray_tune"), name=f"trials_{name}", verbose=1),
        )
        for r in tuner.fit():
            spec = r.config["spec"]
            m = r.metrics or {}
            done[spec["run_dir"]] = {"kind": spec["kind"], "trial": spec["trial"], "setting": spec["setting"],
                                     "overrides": spec["overrides"], "run_dir": spec["run_dir"],
                                     "macro_f1": m.get("macro_f1", float("nan")),
                                     "micro_f1": m.get("micro_f1", float("nan")),
                                     "soft_ce": m.get("soft_ce", float("nan")), "wall_s": m.get("wall_s"),
                                     "per_seed_macro_f1": m.get("per_seed_macro_f1"),  # --trial-seeds only
                                     "failed": int(m.get("failed", 1) if r.error is None else 1)}
            if r.error is None and m.get("final") == 0:  # ASHA stopped it after this mid-run evaluation
                done[spec["run_dir"]]["stopped_at_step"] = int(m["step"])
            if r.error is not None:  # crashed outside training's own errors: keep why, for the message below
                done[spec["run_dir"]]["error"] = f"{type(r.error).__name__}: {str(r.error).strip().splitlines()[-1]}"
        kind_wall[name] = time.perf_counter() - k0
    wall = time.perf_counter() - t0
    described = {"fifo": "FIFO (every trial runs its full budget)",
                 "asha": f"ASHA per kind (validation macro_f1 every {eval_every} steps, reduction factor 2; "
                         f"stopped trials are never chosen)"}[scheduler]
    out = {"config": config_path, "overrides": shared, "trial_overrides": tuning_only, "trials_per_kind": trials,
           "seed": seed, "trial_seeds": list(trial_seeds) if trial_seeds else None,
           "scheduler": described, "kind_wall_s": kind_wall, "concurrency": concurrency,
           "selection": ("highest validation macro_f1, ties by lower validation soft_ce"
                         + (f" (each the mean over trial seeds {list(trial_seeds)})" if trial_seeds else "")),
           "search": {"grid": grid} if grid else {"space": space or DEFAULT_SPACE},
           "scored_split": "validation", "wall_s": wall, "kinds": {}}
    for name, _, extra in parse_kinds(kinds):
        rows = sorted((t for t in done.values() if t["kind"] == name), key=lambda t: t["trial"])
        chosen = select(rows)
        sets = [*extra, *(f"{k}={_fmt(v)}" for k, v in chosen["setting"].items())]
        cfg = load_config(config_path, [*shared, *sets])  # the choice, scoring the eval split
        yaml_path = run_dir / f"chosen_{name}.yaml"
        cfg.save(yaml_path)
        out["kinds"][name] = {"trials": rows, "chosen": chosen, "chosen_overrides": sets,
                              "chosen_config": str(yaml_path)}
        print(f"[tune] {name}: chose trial {chosen['trial']} {chosen['setting']} (validation macro_f1="
              f"{chosen['macro_f1']:.4f}, soft_ce={chosen['soft_ce']:.4f})", flush=True)
    write_atomic(run_dir / "tune.json", to_json(out, indent=2))
    return out


def compare_from_tune(tune_dir: str | Path, run_dir: str | Path, seeds: list[int] | None, n_boot: int = 1000,
                      overrides: list[str] | None = None) -> dict:
    """Train each kind's tuned choice (over `seeds`) on the same training items; score the eval split.

    `overrides` (`--set`) apply to every kind after its choice, the same for all: e.g. the chosen settings
    on another backbone (they were chosen on the tuned one; compare.json records the overrides)."""
    from hyperscale.experiments.compare import run_compare

    path = Path(tune_dir) / "tune.json"
    if not path.exists():
        raise ConfigError("--from-tune", f"{path} does not exist.", "pass the --run-dir of a finished hyperscale tune.")
    tuned = json.loads(path.read_text())
    # The same training items as the trials (validation items stay out of training), the eval split scored.
    # (tune.json before "trial_overrides" existed listed eval.split=validation among the shared overrides)
    shared = [o for o in tuned["overrides"] if o != "eval.split=validation"] + ["eval.split=eval"]
    kinds = list(tuned["kinds"])
    kind_overrides = {k: [*(o for o in v["chosen_overrides"] if not o.startswith("adapter.kind=")), *(overrides or [])]
                      for k, v in tuned["kinds"].items()}
    return run_compare(tuned["config"], ",".join(kinds), run_dir, shared, seeds=seeds,
                       kind_overrides=kind_overrides, n_boot=n_boot)
