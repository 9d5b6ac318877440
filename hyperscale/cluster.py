"""The Ray side of a run, in one place: connect to (or start) Ray, place the workers, run the one
loop, and hand checkpoints to Ray Train. No other module imports ray.

Driver process: builds a Ray Train `TorchTrainer` whose workers each call
`hyperscale.training.loop.run_training` — the same function `hyperscale train --no-ray`
runs in-process — with a `RayStore` for checkpoints. The driver never imports
deepspeed, bitsandbytes or triton (not even through transformers): only workers
do, inside `run_training`. That keeps the head node free of CUDA-only packages
and the job start fast.

Run directory = Ray Train storage: `RunConfig(storage_path=run_dir.parent,
name=run_dir.name)`. Rank 0 writes the run directory contract there (config.yaml,
metrics.jsonl, eval.json, model/) and Ray copies each reported checkpoint into
`run_dir/checkpoint_<step>/`. Re-running with the same run directory resumes from
its latest checkpoint (Ray Train restores the checkpoint list from storage); a
worker that dies mid-run makes Ray restart the group from the latest checkpoint,
up to distributed.max_failures times.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from hyperscale.config import RunConfig, build_config
from hyperscale.errors import ConfigError, HyperscaleError, LaunchError
from hyperscale.rundir import RunDir

# Environment the workers need to behave like the driver (offline hub and wandb,
# fault injection in tests). Ray workers do not inherit the driver's environment.
FORWARD_ENV = ("WANDB_MODE", "WANDB_API_KEY", "WANDB_ENTITY", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
               "HF_DATASETS_OFFLINE", "HF_HOME", "TOKENIZERS_PARALLELISM", "HYPERSCALE_CACHE", "HYPERSCALE_FAULT",
               "TRITON_INTERPRET")
# Never upload these as a job's working directory (`.rayignore` holds the same list
# for `ray job submit --working-dir .`).
UPLOAD_EXCLUDES = [".git", ".venv", "runs", "wandb", "ray_results", ".pytest_cache", "**/__pycache__",
                   "*.egg-info", ".whl", "build", "dist"]
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray in the driver of a submitted job


class WorkerUserError(HyperscaleError):
    """A user error (bad data, config, checkpoint) raised inside a worker, as the driver sees it.

    The worker's own exception cannot always cross Ray's pickling (ConfigError's
    constructor takes three arguments), so its type name and message travel instead.
    """

    def __init__(self, kind: str, message: str):
        self.kind, self.message = kind, message
        super().__init__(kind, message)

    def __str__(self) -> str:
        return f"{self.message} (raised in a Ray worker as {self.kind})"


def _user_error(exc: BaseException) -> WorkerUserError | None:
    """The first WorkerUserError inside Ray Train's failure wrappers, if any."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, WorkerUserError):
            return e
        todo += [e.__cause__, getattr(e, "_base_exc", None), getattr(e, "controller_failure", None),
                 *getattr(e, "worker_failures", {}).values()]
    return None


class RayStore:
    """Checkpoints through Ray Train (the CheckpointStore of training/checkpoint.py).

    Each rank stages its files in a node-local temporary folder; `publish` reports it
    to Ray Train, which copies every rank's files into `run_dir/checkpoint_<step>/`
    and registers the checkpoint once all copies finished.
    """

    @contextmanager
    def staging(self, run_dir: Path, name: str, rank: int, world_size: int):
        stage = Path(tempfile.mkdtemp(prefix=f"hs-{name}-rank{rank}-"))
        try:
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def publish(self, stage: Path, run_dir: Path, name: str, rank: int, world_size: int, metrics: dict) -> None:
        import ray.train

        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(stage)), checkpoint_dir_name=name)

    def registered(self) -> Path | None:
        """Ray's latest registered checkpoint (a remote URI is downloaded once, to a local temp folder)."""
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        if ckpt.filesystem is None or ckpt.filesystem.type_name == "local":
            return Path(ckpt.path)
        return Path(ckpt.to_directory())


def train_loop_per_worker(loop_config: dict) -> None:
    """Body of every Ray Train worker: rebuild the config, then the one training loop."""
    os.environ.update(loop_config["env"])
    import torch

    # Ray sets OMP_NUM_THREADS=1 for a 1-CPU actor and leaves torch at that; use what was reserved.
    torch.set_num_threads(loop_config["threads"])
    from hyperscale.training.loop import run_training  # deepspeed and friends load here, in the worker

    try:
        run_training(build_config(loop_config["config"]), loop_config["run_dir"], store=RayStore())
    except HyperscaleError as e:
        raise WorkerUserError(type(e).__name__, str(e)) from None


def _launch_error(exc: BaseException, run_dir: Path) -> LaunchError:
    """A failure of the run's machinery, summarised in two lines; the full traceback goes to a file.

    A Ray failure prints pages of tracebacks and raylet state; what a user needs is what died,
    where the details are, and that the run directory kept its checkpoints."""
    import traceback

    log = run_dir / "launch_error.log"
    detail = "".join(traceback.format_exception(exc))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        log.write_text(detail)
        where = f"full traceback: {log}"
    except OSError:
        where = "the traceback could not be saved (the run directory is not writable)"
    causes, seen = [], exc
    while seen is not None:
        line = next((ln.strip() for ln in str(seen).splitlines() if ln.strip()), type(seen).__name__)
        causes.append(f"{type(seen).__name__}: {line[:200]}")
        seen = seen.__cause__ or seen.__context__
    hint = ""
    if any("Raylet" in c or "raylet" in c or "OutOfMemory" in c for c in causes):
        hint = (" Ray's own processes died: most often the machine ran out of memory (see `dmesg` / Ray's "
                "raylet.out under /tmp/ray/session_latest/logs) or another job starved it of CPU.")
    return LaunchError(f"the Ray run failed: {causes[-1]} (raised as {causes[0]}).{hint} {where}.")


def connect(cfg: RunConfig, address: str | None = None) -> int:
    """Join RAY_ADDRESS (or `address`); with neither, start a local Ray with this machine's CPUs.
    Returns the CPUs each worker gets (distributed.cpus_per_worker, resolved)."""
    import ray

    d = cfg.distributed
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address and RAY_JOB_ENV not in os.environ:
            # A driver outside `ray job submit` ships this folder itself.
            ray.init(address=address, runtime_env={"working_dir": os.getcwd(), "excludes": UPLOAD_EXCLUDES},
                     log_to_driver=True)
        elif address or RAY_JOB_ENV in os.environ:
            ray.init(address=address, log_to_driver=True)
        else:
            # "local": a fresh Ray even if `ray start` left one running (set RAY_ADDRESS to use that).
            ray.init(address="local", num_cpus=os.cpu_count(), num_gpus=None if d.use_gpu else 0, log_to_driver=True)
    have = ray.cluster_resources()
    cpus = d.cpus_per_worker or max(1, int(min(have.get("CPU", 0), _largest_node_cpus()) // d.num_workers))
    need_cpu = d.num_workers * cpus
    # Ray would wait forever for resources that do not exist; say so now instead.
    if have.get("CPU", 0) < need_cpu:
        raise ConfigError("distributed.num_workers", f"{d.num_workers} workers x {cpus} CPUs = {need_cpu} "
                          f"CPUs, but the Ray cluster has {have.get('CPU', 0):g}.",
                          "lower distributed.num_workers or distributed.cpus_per_worker, or add nodes.")
    if d.use_gpu and have.get("GPU", 0) < d.num_workers:
        raise ConfigError("distributed.use_gpu", f"{d.num_workers} GPU workers, but the cluster has "
                          f"{have.get('GPU', 0):g} GPUs.", "lower distributed.num_workers or set use_gpu=false.")
    return cpus


def _largest_node_cpus() -> float:
    import ray

    return max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)


def build_trainer(cfg: RunConfig, run_dir: Path, cpus_per_worker: int):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig as RayRunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    d = cfg.distributed
    env = {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg.to_dict(), "run_dir": str(run_dir), "env": env, "threads": cpus_per_worker},
        scaling_config=ScalingConfig(num_workers=d.num_workers, use_gpu=d.use_gpu,
                                     resources_per_worker={"CPU": cpus_per_worker}),
        torch_config=TorchConfig(backend="nccl" if d.use_gpu else "gloo"),
        run_config=RayRunConfig(storage_path=str(run_dir.parent), name=run_dir.name,
                                failure_config=FailureConfig(max_failures=d.max_failures),
                                checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints or None)),
    )


def with_local_paths_resolved(cfg: RunConfig) -> RunConfig:
    """`cfg` with relative local paths (a model folder, data files) made absolute: Ray Train workers do not
    run in the driver's working directory, where the config found them."""
    def local(p: str) -> bool:
        return not Path(p).is_absolute() and Path(p).exists()

    raw = cfg.to_dict()
    model, data = raw["model"], raw["data"]
    changed = local(model["name_or_path"])
    if changed:
        model["name_or_path"] = str(Path(model["name_or_path"]).resolve())
    for key in ("train_files", "eval_files"):
        if any(local(f) for f in data.get(key) or []):
            data[key] = [str(Path(f).resolve()) if local(f) else f for f in data[key]]
            changed = True
    return build_config(raw) if changed else cfg


def launch(cfg: RunConfig, run_dir: str | Path, *, address: str | None = None) -> dict:
    """Run `cfg` on Ray Train workers; returns the final eval metrics (eval.json)."""
    run_dir = Path(run_dir).resolve()
    cfg = with_local_paths_resolved(cfg)
    cpus = connect(cfg, address)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        build_trainer(cfg, run_dir, cpus).fit()  # raises TrainingFailedError once max_failures is spent
    except Exception as e:
        user = _user_error(e)
        if user is not None:  # bad data or config: say so, not a Ray traceback
            raise user from None
        raise _launch_error(e, run_dir) from None
    metrics = json.loads(RunDir(run_dir).eval.read_text())
    metrics["wall_time_s"] = time.perf_counter() - t0
    return metrics
