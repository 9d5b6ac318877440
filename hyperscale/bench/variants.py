"""The variants `hyperscale bench train` times, each one real optimizer step per call.

Every variant is built on its own copy of one loaded backbone (the same quantized
weights and compute dtype for all of them) and steps through what a user of it
would run:
  hyper_lora, shared_lora, per_annotator_lora
                the training path itself: hyperscale.model.build_model and the
                DeepSpeed engine of training/engine.py (forward, engine.backward,
                engine.step);
  frozen_base   the floor: the same model and engine with the adapters removed,
                so only the head trains (no backward through the body);
  seed_loop     the seed method: one backbone pass per unique condition of the
                batch, each on that condition's rows with its own generated
                adapter (hyper_lora's hypernetwork at U = 1 per pass), same engine;
  peft_lora     peft's own LoRA (get_peft_model + LoraConfig: same targets, rank,
                alpha, layers) on the same quantized body, the same head, and a
                plain torch.optim.AdamW step with the same gradient clipping:
                what a user writes without hyperscale.

A runner's `step(batch)` returns the seconds of each phase: `hypernet` (the
LoRA module's forward: generating or gathering A and B), `forward` (the rest of
the forward: backbone, pooling, head, loss), `backward` and `optimizer`.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

VARIANTS = ("hyper_lora", "shared_lora", "per_annotator_lora", "frozen_base", "peft_lora", "seed_loop")
KINDS = {"hyper_lora": "hyper_lora", "shared_lora": "shared_lora", "per_annotator_lora": "per_annotator_lora",
         "frozen_base": "shared_lora", "seed_loop": "hyper_lora"}


class _Clock:
    """Seconds now: wall clock (perf_counter, after waiting for CUDA kernels), or with kind="cpu"
    this process's CPU time (time.process_time): on a CPU shared with other jobs, with one torch
    thread, that is what a step cost in compute, without the time spent waiting for a core."""

    def __init__(self, device: torch.device, kind: str = "wall"):
        self.cuda = device.type == "cuda"
        self._now = time.process_time if kind == "cpu" else time.perf_counter

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return self._now()


class _HookTimer:
    """Seconds spent inside one module's forward (summed over calls), by forward hooks."""

    def __init__(self, module: nn.Module, clock: _Clock):
        self.clock, self.total, self._t0 = clock, 0.0, None
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, module, args):
        self._t0 = self.clock()

    def _post(self, module, args, out):
        self.total += self.clock() - self._t0

    def take(self) -> float:
        total, self.total = self.total, 0.0
        return total


class NoAdapters(nn.Module):
    """A LoRA module that publishes nothing: every wrapped layer runs its frozen base alone."""

    def forward(self, batch: dict, instance=None):
        n = batch["input_ids"].shape[0]
        return {}, torch.zeros(n, dtype=torch.long, device=batch["input_ids"].device)

    def annotator_tables(self) -> list:
        return []


class SeedLoop(nn.Module):
    """The seed method's step: one pass of `inner` (a hyper_lora model) per unique condition.

    The loss is the mean over all rows, as in one batched pass (each pass's mean
    weighted by its row count), so the gradients are those of hyper_lora's step.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, batch: dict) -> dict:
        conditions = batch["cond_annotator"]
        total = 0.0
        for c in torch.unique(conditions):
            rows = (conditions == c).nonzero(as_tuple=True)[0]
            sub = {k: v[rows] for k, v in batch.items()}
            total = total + self.inner(sub)["loss"] * rows.numel()
        return {"loss": total / conditions.shape[0]}

    def param_groups(self, *args, **kwargs) -> list[dict]:
        return self.inner.param_groups(*args, **kwargs)  # whatever the engine asks of the model, as for hyper_lora

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.inner.trainable_parameters()

    def n_trainable(self) -> int:
        return self.inner.n_trainable()


class PeftClassifier(nn.Module):
    """peft LoRA on the body, then the same pooling and head as hyperscale's model."""

    def __init__(self, peft_body: nn.Module, head: nn.Module, pooling: str):
        super().__init__()
        self.body, self.head, self.pooling = peft_body, head, pooling

    def forward(self, batch: dict) -> dict:
        from hyperscale.model import pool

        hidden = self.body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           use_cache=False).last_hidden_state  # (B, T, H)
        pooled = pool(hidden, batch["attention_mask"], self.pooling)  # (B, H)
        logits = self.head(pooled, batch).float()  # (B, C)
        return {"loss": self.head.loss(pooled, logits, batch["labels"])}


class Runner:
    """One built variant: `step(batch)` -> {phase: seconds} of one optimizer step."""

    def __init__(self, variant: str, module: nn.Module, clock: _Clock, lora: nn.Module | None,
                 engine=None, optimizer=None, max_grad_norm: float = 0.0, runtime: dict | None = None):
        self.variant, self.module, self.clock = variant, module, clock
        self.engine, self.optimizer, self.max_grad_norm = engine, optimizer, max_grad_norm
        self.hypernet = _HookTimer(lora, clock) if lora is not None else None
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.n_trainable = sum(getattr(p, "ds_numel", p.numel()) for p in self.params)
        self.runtime = runtime or {}

    def step(self, batch: dict) -> dict[str, float]:
        clock = self.clock
        if self.engine is not None:  # hyperscale's path: the DeepSpeed engine owns backward and step
            t0 = clock()
            loss = self.engine(batch)["loss"]
            t1 = clock()
            self.engine.backward(loss)
            t2 = clock()
            self.engine.step()
            t3 = clock()
        else:  # peft as a user writes it: plain torch
            self.optimizer.zero_grad(set_to_none=True)
            t0 = clock()
            loss = self.module(batch)["loss"]
            t1 = clock()
            loss.backward()
            t2 = clock()
            if self.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
            self.optimizer.step()
            t3 = clock()
        hyper = self.hypernet.take() if self.hypernet is not None else 0.0
        return {"hypernet": hyper, "forward": t1 - t0 - hyper, "backward": t2 - t1, "optimizer": t3 - t2,
                "step": t3 - t0, "loss": float(loss.detach())}


def variant_config(cfg, variant: str, rank: int, zero_stage: int | None = None):
    """The run config of a hyperscale variant: its adapter kind at `rank`, one micro-batch a step
    (`zero_stage`: the DeepSpeed stage, None keeps the config's)."""
    from hyperscale.config import build_config
    from hyperscale.config.parse import to_dict

    stage = [] if zero_stage is None else [f"distributed.zero_stage={zero_stage}"]
    return build_config(to_dict(cfg), [f"adapter.kind={KINDS[variant]}", f"adapter.rank={rank}",
                                       "train.grad_accum_steps=1", "train.warmup_steps=0", *stage])


def build_runner(variant: str, cfg, master_backbone, perspectives: int, rank: int, labels: list[str],
                 device: torch.device, clock: str = "wall", zero_stage: int | None = None) -> Runner:
    """Build `variant` at `perspectives` annotators and `rank` on a copy of `master_backbone`.

    Raises ConfigError when the variant refuses the size (per_annotator_lora's bound).
    """
    from hyperscale.model import build_model
    from hyperscale.training.engine import build_engine

    clock = _Clock(device, clock)
    backbone = copy.deepcopy(master_backbone)
    sizes = {"annotator": perspectives}
    torch.manual_seed(0)
    if variant == "peft_lora":
        return _build_peft(cfg, backbone, rank, labels, sizes, device, clock)
    vcfg = variant_config(cfg, variant, rank, zero_stage)
    model = build_model(vcfg, sizes, labels, backbone, device=device)
    if variant == "frozen_base":
        model.lora = NoAdapters()
    model.to(device)
    lora = model.lora if variant != "frozen_base" else None
    module = SeedLoop(model) if variant == "seed_loop" else model
    engine, _, _ = build_engine(module, vcfg)
    engine.train()
    return Runner(variant, module, clock, lora, engine=engine, runtime=model.runtime)


def _build_peft(cfg, backbone, rank: int, labels, sizes, device, clock) -> Runner:
    import re

    from peft import LoraConfig, get_peft_model

    from hyperscale.adapters.base_layers import layer_dims
    from hyperscale.adapters.inject import _layer_number, _matches, _n_blocks
    from hyperscale.adapters.kinds import get_kind

    a = cfg.adapter
    n_blocks = _n_blocks(backbone.body)
    keep = None if a.layers is None else {i + n_blocks if i < 0 else i for i in a.layers}
    # Exactly the modules hyperscale's injection wraps (its matching rules), named for peft as one
    # full-match regex: peft's own layers_to_transform needs a prefix before "layers." that a bare body lacks.
    names = [name for k, (name, m) in enumerate(backbone.body.named_modules())
             if layer_dims(m) is not None and any(_matches(name, t) for t in a.target_modules)
             and (keep is None or _layer_number(name, k) in keep)]
    # Same alpha, so the same scale alpha / r as hyperscale's variants; no dropout, as there.
    peft_cfg = LoraConfig(r=rank, lora_alpha=a.alpha, target_modules="|".join(map(re.escape, names)),
                          lora_dropout=0.0, bias="none")
    body = get_peft_model(backbone.body, peft_cfg)
    head = get_kind("shared_lora").build_head(cfg, backbone, labels, sizes)
    pooling = cfg.model.pooling if cfg.model.pooling != "auto" else ("first" if backbone.is_encoder else "last")
    module = PeftClassifier(body, head, pooling).to(device)
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    return Runner("peft_lora", module, clock, None, optimizer=optimizer, max_grad_norm=cfg.train.max_grad_norm)
