"""Checkpoints that resume exactly, and that are never half-written when they look whole.

A checkpoint is one directory, `checkpoint_<step:06d>/`, holding

    engine/state/...            DeepSpeed: trainable weights (frozen base excluded), optimizer
                                (one shard per rank under ZeRO), LR scheduler, step counters
    rng_rank<r>.pt              python, numpy and torch (and CUDA) generator states, per rank
    sampler_rank<r>.json        the data position: epoch and batch index of the EpochSampler
    trainable.safetensors       the trainable weights gathered in one file (inspection, export)
    vocab.json, labels.json     the condition vocabulary and class names the weights index
    config.yaml                 the resolved config that wrote it
    trainer_state.json          step, world size, fingerprints, the open logging window
    MANIFEST.json               written LAST, by rank 0: every file of every rank, with its size

Why a manifest and not just a rename: under Ray every rank stages its files in its
own local folder and Ray Train copies them, rank by rank, into one storage folder;
no single rename covers them. A checkpoint counts as complete only if its manifest
exists and every file it lists is there at the listed size.

Where a checkpoint is staged and how it becomes visible is a `CheckpointStore`'s
job. `LocalStore` (here): the ranks write into `.checkpoint_<step>.partial/` and
rank 0 renames it into place after the manifest is fsynced. The Ray side
(hyperscale/cluster.py) has its own store that reports the staged folder to Ray
Train, which registers it only once every rank's copy finished. Nothing in this
file speaks Ray.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from hyperscale.config import RunConfig
from hyperscale.config.parse import config_changes
from hyperscale.data.vocab import ConditionVocab
from hyperscale.errors import CheckpointError
from hyperscale.rundir import RunDir, checkpoint_name, truncate_metrics, write_atomic
from hyperscale.training import faults
from hyperscale.training.distributed import barrier

MANIFEST = "MANIFEST.json"
STATE = "trainer_state.json"
ENGINE_TAG = "state"
# 2: the optimizer holds two parameter groups (shared weights, per-annotator tables at
#    train.annotator_lr_scale); a format-1 optimizer state has one and cannot be loaded.
# 3: parameters renamed with the package layout of 0.2 (`source.*` -> `lora.*`); the
#    DeepSpeed state of format 2 keys its tensors by the old names.
# 4: at ZeRO 0-2 the condition tables train outside DeepSpeed's optimizer (training/sparse_tables.py):
#    one parameter group fewer there, their AdamW state under the optimizer state's "row_tables".
FORMAT = 4


# -- RNG -------------------------------------------------------------------------------

def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- trainable weights (gathered under ZeRO-3) -------------------------------------------

def gathered_trainable_state(module: torch.nn.Module, zero_stage: int) -> dict[str, torch.Tensor]:
    """Full CPU copies of the trainable parameters. Collective under ZeRO-3: call on every rank."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if zero_stage == 3:
        import deepspeed  # only ever reached inside a worker

        # ZeRO-3 leaves each rank a 1/world slice (p.data is empty); gather, copy, release.
        with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
            return {n: p.detach().cpu().clone().contiguous() for n, p in named}
    return {n: p.detach().cpu().contiguous() for n, p in named}


# -- saving ----------------------------------------------------------------------------

def _fsync_tree(root: Path, files: list[Path]) -> None:
    for f in files:
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    for d in {f.parent for f in files} | {root}:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LocalStore:
    """Checkpoints written straight into the run directory (one process, or torchrun).

    Every rank writes into `.checkpoint_<step>.partial/`; once the manifest is on
    disk, rank 0 renames the folder to `checkpoint_<step>/` (an existing one of that
    name, left by a crashed attempt, is replaced).
    """

    @contextmanager
    def staging(self, run_dir: Path, name: str, rank: int, world_size: int):
        stage = run_dir / f".{name}.partial"
        if rank == 0 and stage.exists():
            shutil.rmtree(stage)  # left by a save that crashed; never complete
        barrier(world_size)
        stage.mkdir(parents=True, exist_ok=True)
        yield stage

    def __init__(self, keep: int = 0):
        self.keep = keep  # newest complete checkpoints to keep; 0: all

    def publish(self, stage: Path, run_dir: Path, name: str, rank: int, world_size: int, metrics: dict) -> None:
        barrier(world_size)
        if rank == 0:
            final = run_dir / name
            if final.exists():
                shutil.rmtree(final)
            os.replace(stage, final)
            _fsync_tree(run_dir, [])
            if self.keep:
                complete = [p for p in RunDir(run_dir).checkpoints() if not missing_files(p)]
                for old in complete[:-self.keep]:  # oldest first; the newest `keep` stay
                    shutil.rmtree(old)
        barrier(world_size)

    def registered(self) -> Path | None:
        """The newest checkpoint a launcher registered (none here: the run directory is the registry)."""
        return None


def save_checkpoint(run_dir: Path, step: int, *, cfg: RunConfig, vocab: ConditionVocab, labels: list[str],
                    engine, sampler, rank: int, world_size: int, window: dict, metrics: dict,
                    store=None) -> str:
    """Write the complete state after optimizer step `step` (collective: every rank calls it)."""
    store = store or LocalStore()
    name = checkpoint_name(step)
    rng = rng_state()  # first: nothing below may consume randomness before it is recorded
    with store.staging(Path(run_dir), name, rank, world_size) as stage:
        engine.save_checkpoint(str(stage / "engine"), tag=ENGINE_TAG, exclude_frozen_parameters=True)
        torch.save(rng, stage / f"rng_rank{rank}.pt")
        (stage / f"sampler_rank{rank}.json").write_text(json.dumps(sampler.state_dict()))
        faults.during_save(rank, step, Path(run_dir))
        trainable = gathered_trainable_state(engine.module, cfg.distributed.zero_stage)
        if rank == 0:
            from safetensors.torch import save_file

            save_file(trainable, str(stage / "trainable.safetensors"))
            vocab.save(str(stage / "vocab.json"))
            (stage / "labels.json").write_text(json.dumps(labels))
            cfg.save(str(stage / "config.yaml"))
            (stage / STATE).write_text(json.dumps({
                "format": FORMAT, "step": step, "world_size": world_size, "zero_stage": cfg.distributed.zero_stage,
                "config_fingerprint": cfg.fingerprint(), "vocab_fingerprint": vocab.fingerprint(),
                "window": window}, indent=2))
        mine = sorted(p for p in stage.rglob("*") if p.is_file() and p.name != MANIFEST)
        _fsync_tree(stage, mine)
        listing = {str(p.relative_to(stage)): p.stat().st_size for p in mine}
        everyone = [listing]
        if world_size > 1:
            everyone = [None] * world_size
            dist.all_gather_object(everyone, listing)  # also the barrier: all ranks' files are on disk
        if rank == 0:
            files = {}
            for part in everyone:
                files.update(part)
            write_atomic(stage / MANIFEST, json.dumps({"format": FORMAT, "step": step, "world_size": world_size,
                                                       "files": files}, indent=1, sort_keys=True), fsync=True)
            _fsync_tree(stage, [])
        store.publish(stage, Path(run_dir), name, rank, world_size, {**metrics, "step": step})
    return name


# -- finding and checking --------------------------------------------------------------

def missing_files(ckpt_dir: Path) -> list[str]:
    """What a checkpoint lacks to be complete ([] when it is complete)."""
    ckpt_dir = Path(ckpt_dir)
    try:
        manifest = json.loads((ckpt_dir / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return [MANIFEST]
    missing = []
    for rel, size in manifest["files"].items():
        p = ckpt_dir / rel
        if not p.is_file() or p.stat().st_size != size:
            missing.append(rel)
    return missing


def latest_complete(run_dir: Path) -> Path | None:
    """The newest complete `checkpoint_*` under a run directory (incomplete ones are skipped)."""
    for p in reversed(RunDir(run_dir).checkpoints()):
        if not missing_files(p):
            return p
    return None


def check_compatible(ckpt_dir: Path, cfg: RunConfig, vocab: ConditionVocab, labels: list[str], world_size: int) -> dict:
    """Raise CheckpointError unless this run can resume `ckpt_dir` exactly; returns its trainer state."""
    ckpt_dir = Path(ckpt_dir)
    missing = missing_files(ckpt_dir)
    if missing:
        raise CheckpointError(f"checkpoint {ckpt_dir} is incomplete (missing or truncated: {missing[:5]}). "
                              f"Fix: delete that folder; the run resumes from the previous complete checkpoint.")
    state = json.loads((ckpt_dir / STATE).read_text())
    if state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {ckpt_dir} has format {state.get('format')}; this version of hyperscale "
                              f"reads format {FORMAT} (its optimizer state is laid out differently). Fix: resume it "
                              f"with the hyperscale version that wrote it, or start a new run directory; a finished "
                              f"run's model/trainable.safetensors still loads for predict and onboard.")
    if state["config_fingerprint"] != cfg.fingerprint():
        saved = json.loads(state["config_fingerprint"])
        changes = [f"{k}: {a!r} in the checkpoint, {b!r} now"
                   for k, (a, b) in config_changes(saved, json.loads(cfg.fingerprint())).items()]
        raise CheckpointError(f"checkpoint {ckpt_dir} was written with other model/adapter settings "
                              f"({'; '.join(changes[:6])}). Fix: resume with the settings in {ckpt_dir / 'config.yaml'}, "
                              f"or start a new run directory for the new settings.")
    saved_vocab = ConditionVocab.load(str(ckpt_dir / "vocab.json"))
    if saved_vocab != vocab:
        if not saved_vocab.is_prefix_of(vocab):
            raise CheckpointError(f"checkpoint {ckpt_dir} condition vocabulary {saved_vocab!r} is not a prefix of "
                                  f"this run's {vocab!r}: the same condition id would map to another embedding row. "
                                  f"Fix: resume with the training data the checkpoint was trained on "
                                  f"(vocabulary fingerprint {saved_vocab.fingerprint()}), or start a new run directory.")
        raise CheckpointError(f"checkpoint {ckpt_dir} vocabulary {saved_vocab!r} is a prefix of this run's {vocab!r}: "
                              f"the data gained condition ids. Exact resume needs the same embedding tables and "
                              f"optimizer shards. Fix: resume with the original training data, or onboard the new "
                              f"annotators from the finished run instead of resuming it.")
    saved_labels = json.loads((ckpt_dir / "labels.json").read_text())
    if saved_labels != labels:
        raise CheckpointError(f"checkpoint {ckpt_dir} was trained on labels {saved_labels}, this run has {labels}. "
                              f"Fix: use the original data, or a new run directory.")
    if state["world_size"] != world_size:
        raise CheckpointError(f"checkpoint {ckpt_dir} was written by {state['world_size']} workers, this run has "
                              f"{world_size}: ZeRO optimizer shards and the data order are per rank. "
                              f"Fix: set distributed.num_workers={state['world_size']} to resume.")
    if state["zero_stage"] != cfg.distributed.zero_stage:
        raise CheckpointError(f"checkpoint {ckpt_dir} holds ZeRO stage {state['zero_stage']} optimizer state, this run "
                              f"uses stage {cfg.distributed.zero_stage}. Fix: set "
                              f"distributed.zero_stage={state['zero_stage']} to resume.")
    return state


def resume_dir(run_dir: Path, store=None) -> Path | None:
    """The newest complete checkpoint: the launcher's latest registered one or the run directory's,
    whichever is later.

    A launcher can register a checkpoint late (Ray registers a reported one when its
    controller next polls the workers; a worker killed right after reporting can
    take the last one with it), so the run directory is scanned too; the manifest
    says whether what it holds is whole.
    """
    found = latest_complete(run_dir)
    registered = store.registered() if store is not None else None
    if registered is not None and (found is None or registered.name >= found.name):
        return registered
    return found


def load_checkpoint(ckpt_dir: Path, *, engine, sampler, rank: int) -> dict:
    """Restore engine, data position and RNG; returns the trainer state (step, logging window)."""
    ckpt_dir = Path(ckpt_dir)
    state = json.loads((ckpt_dir / STATE).read_text())
    path, _ = engine.load_checkpoint(str(ckpt_dir / "engine"), tag=ENGINE_TAG, load_module_strict=False,
                                     load_optimizer_states=True, load_lr_scheduler_states=True)
    if path is None:
        raise CheckpointError(f"DeepSpeed found no engine state under {ckpt_dir / 'engine'}. "
                              f"Fix: delete {ckpt_dir}; the run resumes from the previous complete checkpoint.")
    sampler.load_state_dict(json.loads((ckpt_dir / f"sampler_rank{rank}.json").read_text()))
    set_rng_state(torch.load(ckpt_dir / f"rng_rank{rank}.pt", weights_only=False))  # last: loading uses none
    return state


class Checkpointer:
    """The loop's view of checkpoints: resume once, save on cadence (every train.save_every and at the end)."""

    def __init__(self, run: RunDir, cfg: RunConfig, vocab: ConditionVocab, labels: list[str], ctx, store=None):
        self.run, self.cfg, self.vocab, self.labels, self.ctx = run, cfg, vocab, labels, ctx
        self.store = store or LocalStore(keep=cfg.train.keep_checkpoints)

    def resume(self, ckpt_dir: Path | None, engine, sampler) -> tuple[int, dict | None]:
        """(step to continue after, the saved logging window); (0, None) for a fresh run."""
        if ckpt_dir is None:
            return 0, None
        # Weights, optimizer, scheduler, data position and RNG as they were after that step.
        state = load_checkpoint(ckpt_dir, engine=engine, sampler=sampler, rank=self.ctx.rank)
        if self.ctx.is_main:
            truncate_metrics(self.run.metrics, state["step"])
            print(f"resumed from {ckpt_dir} at step {state['step']}", flush=True)
        return state["step"], state["window"]

    def due(self, step: int) -> bool:
        every = self.cfg.train.save_every
        return bool(every and step % every == 0) or step == self.cfg.train.max_steps

    def save(self, step: int, engine, sampler, window: dict, metrics: dict) -> str:
        return save_checkpoint(self.run.path, step, cfg=self.cfg, vocab=self.vocab, labels=self.labels,
                               engine=engine, sampler=sampler, rank=self.ctx.rank, world_size=self.ctx.world_size,
                               window=window, metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                               store=self.store)
