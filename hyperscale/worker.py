"""The training worker: one process, one rank, one DeepSpeed engine. Written once.

`hyperscale train` runs it in-process (world size 1) and the Ray launcher runs
it in every Ray Train worker; the code path is the same. One optimizer step:

    for each of grad_accum_steps micro-batches:
        rows -> batch (tokens + condition ids)
        hypernetwork (unique conditions only) -> A, B per target module
        frozen backbone with per-row low-rank updates -> pooled -> head -> loss
        engine.backward(loss); engine.step()   # DeepSpeed steps the optimizer,
                                               # clips and advances the LR at the
                                               # accumulation boundary only
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from hyperscale import checkpoint, faults
from hyperscale.config import RunConfig
from hyperscale.data import load_data
from hyperscale.data.batches import EncodedRows, EpochSampler, collate, encode_rows
from hyperscale.aggregation import label_distribution, prepare_train_frame
from hyperscale.evaluation import (majority_reference, majority_vote_metrics, per_annotator_nll, perspectivist_metrics,
                                   soft_label_metrics, write_per_annotator_csv)
from hyperscale.model import PerspectivistModel, build_model
from hyperscale.plots import run_plots
from hyperscale.tracking import RunLog


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_distributed(use_gpu: bool) -> DistContext:
    """Join the process group Ray Train (or torchrun) set up, or make a one-process one."""
    if not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ:
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=str(_free_port()))
        dist.init_process_group("nccl" if use_gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_gpu:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return DistContext(rank, world, local_rank, device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda(cfg: RunConfig):
    t = cfg.train

    def factor(step: int) -> float:
        if t.warmup_steps and step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        progress = (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps)
        if t.lr_schedule == "linear":
            return max(0.0, 1.0 - progress)
        if t.lr_schedule == "cosine":
            return 0.5 * (1.0 + np.cos(np.pi * min(1.0, progress)))
        return 1.0

    return factor


def deepspeed_config(cfg: RunConfig) -> dict:
    """The preset (distributed.deepspeed_config) if any, with the run's own settings on top."""
    t, d = cfg.train, cfg.distributed
    base = {"steps_per_print": 10**9, "wall_clock_breakdown": False}
    if d.deepspeed_config:
        with open(d.preset_path(), encoding="utf-8") as f:
            base.update(json.load(f))
    zero = dict(base.get("zero_optimization", {}), stage=d.zero_stage)
    if d.offload_optimizer:
        zero["offload_optimizer"] = dict(zero.get("offload_optimizer", {}), device="cpu", pin_memory=d.use_gpu)
    # Batch, accumulation and clipping belong to train.*: a preset never overrides them.
    return {**base, "train_micro_batch_size_per_gpu": t.micro_batch_size,
            "gradient_accumulation_steps": t.grad_accum_steps, "gradient_clipping": t.max_grad_norm,
            "zero_optimization": zero}


def build_engine(model: PerspectivistModel, cfg: RunConfig):
    import deepspeed  # heavy and platform-specific: only inside the worker

    params = model.param_groups(cfg.train.lr, cfg.train.annotator_lr_scale)
    if cfg.distributed.offload_optimizer:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    if cfg.distributed.zero_stage == 3:
        from hyperscale import zero3

        zero3.register_trainable_as_external(model)
        if not cfg.distributed.use_gpu:
            zero3.patch_cpu_zero_grad()
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg),
        dist_init_required=False)
    return engine, optimizer, scheduler


@torch.no_grad()
def predict(model: PerspectivistModel, rows: EncodedRows, batch_size: int, pad_id: int,
            device: torch.device, ctx: DistContext | None = None, return_probs: bool = False):
    """Class predictions (n_rows,) for every row; rows are split across ranks and gathered.

    With `return_probs`, returns (preds, probs (n_rows, C) softmax of the logits).
    """
    was_training = model.training
    model.eval()
    rank, world = (ctx.rank, ctx.world_size) if ctx else (0, 1)
    mine = np.arange(len(rows))[rank::world]
    preds = np.zeros(len(rows), dtype=np.int64)
    probs = None
    # ZeRO-3 gathers parameters collectively: every rank must run the same number of forwards.
    n_batches = int(np.ceil(int(np.ceil(len(rows) / world)) / batch_size))
    for b in range(n_batches):
        chunk = mine[b * batch_size:(b + 1) * batch_size]
        if len(chunk) == 0:
            chunk = mine[:1] if len(mine) else np.arange(1)
            model(collate(rows, chunk, pad_id, device))
            continue
        logits = model(collate(rows, chunk, pad_id, device))["logits"]
        preds[chunk] = logits.argmax(-1).cpu().numpy()
        if return_probs:
            if probs is None:
                probs = np.zeros((len(rows), logits.shape[-1]), dtype=np.float32)
            probs[chunk] = torch.softmax(logits.float(), -1).cpu().numpy()
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, (mine, preds[mine], probs[mine] if return_probs else None))
        for idx, p, q in gathered:
            preds[idx] = p
            if return_probs:
                probs[idx] = q
    model.train(was_training)
    return (preds, probs) if return_probs else preds


def evaluate(model, rows: EncodedRows, labels: list[str], train_majority: int, cfg: RunConfig, pad_id: int,
             device, ctx: DistContext | None = None, train_prior: np.ndarray | None = None) -> dict:
    preds, probs = predict(model, rows, cfg.eval.batch_size, pad_id, device, ctx, return_probs=True)
    m = cfg.eval.min_items_per_annotator
    metrics = perspectivist_metrics(rows.labels, preds, rows.annotators, labels, m, majority_class=train_majority)
    metrics.update(soft_label_metrics(rows.labels, probs, rows.item_ids, len(labels)))
    metrics.update(majority_vote_metrics(rows.labels, preds, rows.item_ids, len(labels), train_majority))
    known = set(rows.annotators[rows.conditions["annotator"] >= 0]) if "annotator" in rows.conditions else set()
    for ann, nll in per_annotator_nll(rows.labels, probs, rows.annotators).items():
        metrics["per_annotator"][ann].update(nll=nll, known=ann in known)
    metrics["params_per_annotator"] = model.params_per_annotator()
    metrics["majority_baseline"] = majority_reference(rows.labels, rows.annotators, labels, train_majority, m,
                                                      item_ids=rows.item_ids, prior=train_prior)
    metrics["n_unknown_annotators"] = int(len(np.unique(rows.annotators[rows.conditions["annotator"] < 0])))
    return metrics


def subsample(frame, max_rows: int | None, seed: int):
    if max_rows is None or len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).sort_index()


def run_training(cfg: RunConfig, run_dir: str | Path) -> dict:
    """Train and evaluate per `cfg`, writing the run directory contract; returns eval metrics."""
    run_dir = Path(run_dir)
    ctx = setup_distributed(cfg.distributed.use_gpu)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(str(run_dir / "config.yaml"))
    seed_everything(cfg.train.seed)

    # Rank 0 writes data_report.json and bad_rows.jsonl, before any DataError is raised.
    data = load_data(cfg.data, run_dir=str(run_dir) if ctx.is_main else None)
    fields = data.condition_fields()
    vocab = data.condition_vocab()  # train ids only: eval-only annotators get the fallback
    # After the vocab: aggregated rows have no annotator, but eval rows keep theirs.
    data.train = prepare_train_frame(data.train, data.labels, cfg.adapter.kind, cfg.adapter.aggregate_labels)
    if ctx.is_main:
        vocab.save(run_dir / "vocab.json")
        (run_dir / "labels.json").write_text(json.dumps(data.labels))
    # Before the backbone loads: an incompatible checkpoint fails in seconds.
    resume_from = checkpoint.resume_dir(run_dir)
    if resume_from is not None:
        checkpoint.check_compatible(resume_from, cfg, vocab, data.labels, ctx.world_size)

    from hyperscale.backbones import load_backbone

    backbone = load_backbone(cfg.model)
    tok = backbone.tokenizer
    template = cfg.model.prompt_template if cfg.model.task == "causal_lm" else None
    train_rows = encode_rows(data.train, tok, vocab, data.labels, fields, cfg.model.max_length, template)
    eval_frame = subsample(data.eval, cfg.eval.max_examples, cfg.train.seed)
    eval_rows = encode_rows(eval_frame, tok, vocab, data.labels, fields, cfg.model.max_length, template)
    train_majority = int(np.bincount(train_rows.labels, minlength=len(data.labels)).argmax())
    train_prior = label_distribution(data.train, data.labels)  # the majority reference's soft prediction

    seed_everything(cfg.train.seed)  # identical trainable init on every rank, whatever loading consumed
    model = build_model(cfg, {f: vocab.size(f) for f in fields}, data.labels, backbone)
    model.to(ctx.device)
    engine, optimizer, scheduler = build_engine(model, cfg)
    n_trainable = model.n_trainable()

    sampler = EpochSampler(len(train_rows), cfg.train.micro_batch_size, cfg.train.seed, ctx.rank, ctx.world_size)
    start_step, window = 0, _new_window()
    if resume_from is not None:
        # Weights, optimizer, scheduler, data position and RNG as they were after that step.
        state = checkpoint.load_checkpoint(resume_from, engine=engine, sampler=sampler, rank=ctx.rank)
        start_step, window = state["step"], state["window"]
        if ctx.is_main:
            checkpoint.truncate_metrics(run_dir / "metrics.jsonl", start_step)
            print(f"resumed from {resume_from} at step {start_step}", flush=True)
    log = RunLog(cfg, run_dir, ctx.is_main, resumed_step=start_step)
    if resume_from is not None:
        log.write({"step": start_step, "split": "resume", "checkpoint": Path(resume_from).name})
    pad_id = tok.pad_token_id
    t = cfg.train
    progress = None
    # A live bar only on a terminal: in a log file (ray job logs, CI) its redraws are
    # noise, and the per-log-step line (step i/n, loss, throughput) already shows progress.
    if ctx.is_main and t.progress_bar and sys.stderr.isatty():
        from tqdm.auto import tqdm

        progress = tqdm(total=t.max_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    engine.train()
    last_record: dict = {}
    for step in range(start_step + 1, t.max_steps + 1):
        t0 = time.perf_counter()
        for _ in range(t.grad_accum_steps):
            rows = sampler.next_batch()
            batch = collate(train_rows, rows, pad_id, ctx.device)
            loss = engine(batch)["loss"]
            engine.backward(loss)
            engine.step()
            window["loss"] += loss.item()
            window["n"] += 1
            window["samples"] += len(rows)
            window["tokens"] += int(batch["attention_mask"].sum())
        window["time"] += time.perf_counter() - t0
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{window['loss'] / max(1, window['n']):.4f}")
        if step % t.log_every == 0 or step == t.max_steps:
            # Ranks' batches differ in length: count every rank's samples and tokens.
            counts = torch.tensor([window["samples"], window["tokens"]], dtype=torch.float64)
            if ctx.world_size > 1:
                dist.all_reduce(counts)
            samples, tokens = counts.tolist()
            record = {"step": step, "split": "train", "loss": window["loss"] / window["n"],
                      "lr": scheduler.get_last_lr()[0], "epoch": sampler.epoch,
                      "samples_per_s": samples / window["time"], "tokens_per_s": tokens / window["time"],
                      "samples_per_s_per_worker": samples / ctx.world_size / window["time"],
                      "tokens_per_s_per_worker": tokens / ctx.world_size / window["time"],
                      "world_size": ctx.world_size,
                      "step_time_s": window["time"] / (window["n"] / t.grad_accum_steps)}
            log.write(record)
            last_record = record
            window = _new_window()
        faults.after_step(ctx.rank, step, run_dir)
        if (t.save_every and step % t.save_every == 0) or step == t.max_steps:
            checkpoint.save_checkpoint(run_dir, step, cfg=cfg, vocab=vocab, labels=data.labels, engine=engine,
                                       sampler=sampler, rank=ctx.rank, world_size=ctx.world_size, window=window,
                                       metrics={k: v for k, v in last_record.items() if isinstance(v, (int, float))})
        if t.eval_every and step % t.eval_every == 0 and step != t.max_steps:
            metrics = evaluate(engine.module, eval_rows, data.labels, train_majority, cfg, pad_id, ctx.device, ctx,
                               train_prior=train_prior)
            log.write({"step": step, "split": "eval", **_headline(metrics)})
    if progress is not None:
        progress.close()

    metrics = evaluate(engine.module, eval_rows, data.labels, train_majority, cfg, pad_id, ctx.device, ctx,
                               train_prior=train_prior)
    metrics.update(step=t.max_steps, trainable_params=n_trainable, backbone_params=model.backbone_params,
                   adapter_kind=cfg.adapter.kind, labels=data.labels)
    log.write({"step": t.max_steps, "split": "eval", **_headline(metrics)})
    trainable = checkpoint.gathered_trainable_state(engine.module, cfg.distributed.zero_stage)  # collective
    log.finish(_headline(metrics))
    if ctx.is_main:
        save_trainable(engine.module, run_dir / "model", state=trainable)
        _write_json(run_dir / "eval.json", metrics)
        write_per_annotator_csv(run_dir / "per_annotator.csv", metrics["per_annotator"])
        run_plots(run_dir, metrics)
    return metrics


def _new_window() -> dict:
    """Sums over the steps since the last logged one (saved in checkpoints: exact resume)."""
    return {"loss": 0.0, "n": 0, "samples": 0, "tokens": 0, "time": 0.0}


def _headline(metrics: dict) -> dict:
    keys = ("macro_f1", "micro_f1", "accuracy", "pos_f1", "n_annotators", "n_examples")
    return {k: metrics[k] for k in keys if k in metrics}


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def save_trainable(model: PerspectivistModel, out_dir: Path, state: dict | None = None) -> None:
    """Trainable weights only (the backbone is frozen and reloaded from its source).

    Under ZeRO-3 pass `state` from checkpoint.gathered_trainable_state: the parameters
    themselves hold only this rank's slice.
    """
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    if state is None:
        state = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    tmp = out_dir / "trainable.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, out_dir / "trainable.safetensors")
