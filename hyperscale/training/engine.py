"""The DeepSpeed engine: optimizer (two parameter groups), LR schedule, ZeRO config."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import torch

from hyperscale.config import RunConfig


def lr_lambda(cfg: RunConfig):
    """Multiplier of the base LR at optimizer step `step`: linear warm-up, then the schedule."""
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


def skip_shm_comm_build() -> None:
    """Keep DeepSpeed from compiling its `deepspeed_shm_comm` C++ op on a CPU machine.

    DeepSpeed's torch communication backend builds that op (minutes of g++ on 2 cores,
    on a run's first start on a machine) for `inference_all_reduce`, a shared-memory
    all-reduce used by its CPU inference engine. Training here reduces gradients
    through gloo and never calls it, so the op is marked unavailable, which is the
    state DeepSpeed itself uses on platforms it cannot build for.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


class SkippableAdamW(torch.optim.AdamW):
    """AdamW that speaks DeepSpeed's overflow protocol, for ZeRO stage 0 (a plain optimizer).

    ZeRO stages 1-3 skip a step with non-finite gradients themselves and set
    `optimizer.overflow`, which the engine reads to leave the LR schedule alone and
    report `was_step_applied() == False`. A plain optimizer has no such check, so
    the non-finite policy (training/nonfinite.py) sets `overflow` here and the step
    does nothing: no weight, moment or step count moves.
    """

    overflow = False

    def step(self, closure=None):
        if self.overflow:
            return None
        return super().step(closure)


def table_optimizer(cfg: RunConfig) -> tuple[str, str]:
    """(`lazy` or `dense`, why) for the per-annotator tables' parameter group (training/optim.py)."""
    if cfg.train.table_optimizer == "dense":
        return "dense", "train.table_optimizer=dense"
    if cfg.distributed.offload_optimizer:
        return "dense", ("distributed.offload_optimizer runs DeepSpeedCPUAdam, which has no lazy row updates; "
                         "set train.table_optimizer=dense to silence this, or turn offload off for lazy updates")
    if cfg.distributed.zero_stage == 3:
        return "lazy", ("train.table_optimizer=lazy: only the table entries a step touched are updated "
                        "(ZeRO-3: found by a scan of the dense table gradient)")
    return "lazy", ("train.table_optimizer=lazy: only the rows a step's batches read are updated, from row "
                    "gradients outside DeepSpeed (no dense table gradient)")


def uses_row_gradients(cfg: RunConfig) -> bool:
    """Lazy tables at ZeRO 0-2 train from row gradients outside DeepSpeed (training/sparse_tables.py);
    ZeRO-3 partitions the tables, so they stay in its optimizer with dense gradients."""
    return table_optimizer(cfg)[0] == "lazy" and cfg.distributed.zero_stage <= 2


def build_engine(model, cfg: RunConfig, row_gradients: bool | None = None):
    """(engine, optimizer, scheduler) for a PerspectivistModel; the engine owns the step.

    `row_gradients`: None = uses_row_gradients(cfg); False keeps the tables in DeepSpeed's optimizer with
    dense gradients (the reference the row-gradient path is tested against)."""
    import deepspeed  # heavy and platform-specific: only inside the worker

    if not cfg.distributed.use_gpu:
        skip_shm_comm_build()
    mode, reason = table_optimizer(cfg)  # also in model.runtime (build_model): config.yaml, start record, eval.json
    if mode != cfg.train.table_optimizer:
        sys.stderr.write(f"hyperscale: per-annotator tables use {mode} AdamW: {reason}\n")
    params = model.param_groups(cfg.train.lr, cfg.train.annotator_lr_scale, lazy_tables=mode == "lazy")
    rows = uses_row_gradients(cfg) if row_gradients is None else row_gradients and uses_row_gradients(cfg)
    preset = deepspeed_config(cfg)
    mixed = any(preset.get(k, {}).get("enabled") for k in ("fp16", "bf16"))
    if mixed:
        # DeepSpeed's fp16 / bf16 optimizers clip and skip steps in their own code paths, which the
        # row-gradient hooks (sparse_tables.py) do not reach: keep the tables in its optimizer.
        rows = False
    row_tables = None
    if rows and len(params) > 1:
        from hyperscale.training.sparse_tables import RowGradTables

        table_group = params.pop()  # model.param_groups puts the tables' group last
        row_tables = RowGradTables(table_group["params"], table_group["lr"], cfg.train.weight_decay, lr_lambda(cfg))
    if cfg.distributed.offload_optimizer:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    elif mode == "lazy":
        from hyperscale.training.optim import LazyTableAdamW

        optimizer = LazyTableAdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        optimizer.row_tables = row_tables
    else:
        adamw = SkippableAdamW if cfg.distributed.zero_stage == 0 else torch.optim.AdamW
        optimizer = adamw(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    if cfg.distributed.zero_stage == 3:
        from hyperscale.training import zero3

        zero3.register_trainable_as_external(model)
        if not cfg.distributed.use_gpu:
            zero3.patch_cpu_zero_grad()
    ds_config = deepspeed_config(cfg)
    if mode == "lazy" and cfg.distributed.zero_stage > 0:
        # ZeRO steps our AdamW subclass on its flat fp32 partitions (optim.py handles them);
        # DeepSpeed accepts optimizers outside its own list only when told.
        ds_config["zero_allow_untested_optimizer"] = True
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config,
        dist_init_required=False)
    import torch.distributed as dist

    if cfg.distributed.zero_stage == 0 and not mixed:
        rows_apart = {id(t) for t in row_tables.tables} if row_tables is not None else set()
        lean_stage0(engine, [p for p in model.trainable_parameters() if id(p) not in rows_apart],
                    dist.get_world_size(), row_tables.clip_holders if row_tables is not None else None)
    if row_tables is not None:
        row_tables.install(engine, scheduler, cfg.distributed.zero_stage, dist.get_world_size())
    return engine, optimizer, scheduler


def lean_stage0(engine, trainable: list[torch.nn.Parameter], world_size: int, extra=None) -> None:
    """Cut the per-step work DeepSpeed's stage-0 engine does for nothing here (instance attributes only).

    Profiled on the tiny fp32 Llama (shared_lora, 16 x 48 tokens, one thread, 16.6 ms a step), three
    pieces cost ~2 ms of a step that peft's loop does not pay:
    - one worker: every gradient is flattened, all-reduced over a one-rank gloo group, divided by 1
      and copied back (0.8 ms). Skipped; a trainable parameter without a gradient gets the zeros
      that reduce would have filled in, so the optimizer sees the same gradients.
    - clipping: DeepSpeed's clip_grad_norm_ walks every module parameter, the frozen backbone's
      included, takes one norm per tensor and all-reduces the total (0.8 ms). torch's clip over the
      trainable parameters computes the same global norm (after the reduce every rank holds the same
      gradients) and the same coefficient, max_norm / (norm + 1e-6) when below 1.
    - zero_grad walks every named parameter to set .grad = None; only trainable ones have one.
    Any worker count: clipping and zero_grad. One worker: the reduce. fp16 / bf16 presets keep
    DeepSpeed's own paths (their optimizers clip and skip steps themselves).
    `trainable`: the parameters DeepSpeed's optimizer steps (row-gradient tables apart: they have no
    .grad); `extra`: () -> more tensors whose .grad joins the clip (the tables' gathered rows).
    """
    max_norm = engine.gradient_clipping()

    def clip_fp32_gradients(self):
        clip_trainable(trainable + (extra() if extra is not None else []), max_norm)

    def zero_grad(self):
        for p in trainable:
            p.grad = None

    engine.clip_fp32_gradients = types.MethodType(clip_fp32_gradients, engine)
    engine.zero_grad = types.MethodType(zero_grad, engine)
    if world_size == 1:
        ds_epilogue = engine._backward_epilogue

        def backward_epilogue(self, *args, **kwargs):
            if self.is_gradient_accumulation_boundary():
                for p in trainable:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
            return ds_epilogue(*args, **kwargs)

        engine.enable_backward_allreduce = False
        engine._backward_epilogue = types.MethodType(backward_epilogue, engine)


def clip_trainable(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale the gradients of `params` so their global L2 norm is at most `max_norm` (DeepSpeed's rule:
    coefficient max_norm / (norm + 1e-6), applied when below 1); returns the norm."""
    return torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], max_norm)
