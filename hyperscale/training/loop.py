"""The training loop: one process, one rank, one DeepSpeed engine. Written once.

`hyperscale train --no-ray` runs it in-process (world size 1) and every Ray Train
worker runs it too (hyperscale/cluster.py); the code path is the same. It only
calls components; one optimizer step reads top to bottom:

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
from pathlib import Path

from hyperscale.config import RunConfig
from hyperscale.data.batches import EpochSampler, collate
from hyperscale.eval.evaluate import Evaluator, headline
from hyperscale.eval.report import write_results
from hyperscale.rundir import RunDir, save_trainable
from hyperscale.training import faults, hooks, run_state
from hyperscale.training.checkpoint import Checkpointer, gathered_trainable_state
from hyperscale.training.distributed import setup_distributed
from hyperscale.training.engine import build_engine
from hyperscale.training.logger import RunLog
from hyperscale.training.meter import StepMeter, peak_flops
from hyperscale.training.nonfinite import NonFiniteGuard
from hyperscale.training.prepare import prepare


def run_training(cfg: RunConfig, run_dir: str | Path, *, store=None) -> dict:
    """Train and evaluate per `cfg`, writing the run-directory contract; returns the eval metrics.

    `store`: where checkpoints go (training.checkpoint.LocalStore unless a launcher passes its own).
    """
    ctx, run, t = setup_distributed(cfg.distributed.use_gpu), RunDir(run_dir), cfg.train
    state = run_state.inspect(run.path, cfg)  # refuses a run of other settings before anything is written
    if state.kind == "complete":
        return json.loads(run.eval.read_text())
    if state.kind == "extend" and ctx.is_main:
        run_state.keep_finished_results(state)
    p = prepare(cfg, run, ctx, store)
    engine, _, scheduler = build_engine(p.model, cfg)
    sampler = EpochSampler(len(p.train_rows), t.micro_batch_size, t.seed, ctx.rank, ctx.world_size)
    checkpoints = Checkpointer(run, cfg, p.vocab, p.labels, ctx, store)
    start_step, window = checkpoints.resume(p.resume_from, engine, sampler)
    meter = StepMeter(t, ctx.world_size, window, p.model.flops_per_token, peak_flops(p.model.runtime))
    guard = NonFiniteGuard(cfg, ctx.world_size, p.model.trainable_parameters())
    log = RunLog(cfg, run.path, ctx.is_main, resumed_step=start_step)
    log.write({"step": start_step, "split": "resume", "checkpoint": p.resume_from.name, "runtime": p.model.runtime}
              if p.resume_from else {"step": 0, "split": "start", "runtime": p.model.runtime})
    evaluator = _evaluator(cfg, p, ctx)
    to_batch = _batcher(cfg, p, ctx.device)
    last_record: dict = {}

    engine.train()
    for step in range(start_step + 1, t.max_steps + 1):
        meter.begin_step()
        engine.module.begin_step(step)  # step-dependent schedules (hyper_lora's shared_warmup)
        for micro in range(t.grad_accum_steps):
            rows = sampler.next_batch()
            batch = to_batch(rows)
            loss = faults.on_loss(ctx.rank, step, run.path, engine(batch)["loss"])
            engine.backward(loss)
            meter.add(loss.item(), len(rows), int(batch["attention_mask"].sum()))
            if micro == t.grad_accum_steps - 1:
                guard.before_optimizer_step(engine, meter.step_finite)  # every rank agrees whether to skip this step
            engine.step()
        meter.end_step(skipped=guard.after_optimizer_step(engine, step, meter.step_loss))
        log.progress(meter.mean_loss)
        if meter.should_log(step):
            last_record = meter.record(step, scheduler.get_last_lr()[0], sampler.epoch)
            log.write(last_record)
        faults.after_step(ctx.rank, step, run.path)
        if checkpoints.due(step):
            checkpoints.save(step, engine, sampler, meter.window, last_record)
        if evaluator.due(step):
            mid = evaluator.evaluate(engine.module)
            log.write({"step": step, "split": "eval", **headline(mid)})
            hooks.on_eval(step, mid)  # a Tune trial reports it (ASHA); nothing otherwise

    metrics = evaluator.evaluate(engine.module)
    metrics.update(step=t.max_steps, trainable_params=p.model.n_trainable(), backbone_params=p.model.backbone_params,
                   adapter_kind=cfg.adapter.kind, labels=p.labels, runtime=p.model.runtime,
                   scored_split=cfg.eval.split)  # "validation": a tuning run; the eval split was never scored
    if p.sft_data:
        metrics["sft_data"] = p.sft_data  # rows truncated to model.max_length (data.overflow), per split
    log.write({"step": t.max_steps, "split": "eval", **headline(metrics)})
    trainable = gathered_trainable_state(engine.module, cfg.distributed.zero_stage)  # collective under ZeRO-3
    log.finish(headline(metrics))
    if ctx.is_main:
        save_trainable(trainable, run.trainable)
        write_results(run, metrics, cfg.eval.min_items_per_annotator, evaluator.predictions())
    return metrics


def _evaluator(cfg: RunConfig, p, ctx):
    if cfg.model.task == "sft":
        from hyperscale.eval.sft import SFTEvaluator

        return SFTEvaluator(p.eval_rows, p.labels, p.train_majority, cfg, p.tokenizer, ctx.device, ctx.rank,
                            ctx.world_size)
    return Evaluator(p.eval_rows, p.labels, p.train_majority, p.train_prior, cfg, p.pad_id, ctx.device,
                     ctx.rank, ctx.world_size, decision_rows=p.decision_rows)


def _batcher(cfg: RunConfig, p, device):
    """Sampled row indices -> a training batch: padded rows, or packed sequences (train.packing, sft)."""
    if cfg.train.packing:
        from hyperscale.data.packing import collate_packed

        return lambda rows: collate_packed(p.train_rows, rows, p.pad_id, cfg.model.max_length, device)
    return lambda rows: collate(p.train_rows, rows, p.pad_id, device)
