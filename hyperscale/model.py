"""The trained model: frozen (quantized) backbone + LoRA module + head, assembled by the adapter kind.

One forward, top to bottom:
  1. (instance conditions only) encode the input with the frozen body, adapters
     off, and mean-pool it: the Hyperdecoders condition vector;
  2. the LoRA module turns the batch's conditions into A, B for every target
     module (for the unique conditions only) and each sequence's index;
  3. publish them on the shared AdapterState (adapters/inject.py) and run the
     body: every wrapped layer adds scale * B[idx] (A[idx] x) through the one
     batched op, with the backend resolved when the model was built;
  4. pool, head, and the head's loss.
Only the LoRA module and the head hold trainable parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from hyperscale.adapters.inject import AdapterState, inject_adapters
from hyperscale.adapters.kinds import get_kind
from hyperscale.config import RunConfig
from hyperscale.ops import resolve_backend, runtime_info


class PerspectivistModel(nn.Module):
    def __init__(self, backbone, lora: nn.Module, head: nn.Module, state: AdapterState, pooling: str,
                 uses_instance: bool, runtime: dict):
        super().__init__()
        self.body, self.lora, self.head = backbone.body, lora, head
        self.state, self.pooling, self.uses_instance = state, pooling, uses_instance
        self.backbone_params = backbone.n_params
        self.runtime = runtime  # resolved kernel backend, device, dtype, library versions
        self.flops_per_token: int | None = None  # training FLOPs per token (training_flops_per_token), set by build_model

    def begin_step(self, step: int) -> None:
        """Told by the training loop before each optimizer step (1-based): schedules that depend on
        the step, e.g. hyper_lora's shared_warmup, read it here."""
        fn = getattr(self.lora, "begin_step", None)
        if fn is not None:
            fn(step)

    def encode_instance(self, batch: dict) -> torch.Tensor:
        """(B, H) mean-pooled encoding of each input by the frozen body, adapters off."""
        self.state.enabled = False
        try:
            with torch.no_grad():
                hidden = self.body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        finally:
            self.state.enabled = True
        return pool(hidden, batch["attention_mask"], "mean").float()

    def forward(self, batch: dict) -> dict:
        if getattr(self.head, "generative", False):  # task=sft: the LM head over every completion token
            from hyperscale.completion import forward_completion

            return forward_completion(self, batch)
        instance = self.encode_instance(batch) if self.uses_instance else None
        weights, seq_index = self.lora(batch, instance)
        self.state.publish(weights, seq_index)
        hidden = self.body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           use_cache=False).last_hidden_state  # (B, T, H)
        pooled = pool(hidden, batch["attention_mask"], self.pooling)  # (B, H)
        logits = self.head(pooled, batch).float()  # (B, C)
        for extra in (self.logit_bias(batch), self.branch_logits(batch, pooled)):
            if extra is not None:
                logits = logits + extra.float()
        out = {"logits": logits}
        if "labels" in batch:
            out["loss"] = self.head.loss(pooled, logits, batch["labels"])
        return out

    def logit_bias(self, batch: dict) -> torch.Tensor | None:
        """(B, C) a per-condition class-logit bias from the LoRA module (hyper_lora's
        adapter.hypernet.condition_bias: adapters/condition_bias.py), or None."""
        fn = getattr(self.lora, "logit_bias_for", None)
        return fn(batch) if fn is not None else None

    def branch_logits(self, batch: dict, pooled: torch.Tensor) -> torch.Tensor | None:
        """(B, C) the logits of hyper_lora's conditioned classifier branch (adapter.hypernet.condition_head:
        adapters/condition_bias.py), or None."""
        fn = getattr(self.lora, "branch_logits_for", None)
        return fn(batch, pooled) if fn is not None else None

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, lr: float, annotator_lr_scale: float, lazy_tables: bool = False) -> list[dict]:
        """Optimizer groups: the per-annotator tables at lr * annotator_lr_scale, parameters the LoRA
        module lists in `lr_scales()` at lr * their scale (and hyper_lora's shared pair with the
        classifier head at lr * shared_lr_scale), the rest at lr.

        Each annotator's row gets a gradient only from that annotator's rows (1/n of a
        batch), so it moves about n times slower than the shared weights at the same lr.
        `lazy_tables`: mark the tables' group for row-wise lazy updates (training/optim.py).
        """
        from hyperscale.training.optim import LAZY

        table_ids = {id(getattr(m, a)) for m, a in self.annotator_tables()}
        trainable = self.trainable_parameters()
        tables = [p for p in trainable if id(p) in table_ids]
        rest = [p for p in trainable if id(p) not in table_ids]
        groups, scaled = [], list(getattr(self.lora, "lr_scales", list)())  # e.g. hyper_lora's head_lr_scale
        blind = getattr(self.lora, "shared_lr_scale", 1.0)  # hyper_lora's residual: shared pair + classifier head
        if blind != 1.0:
            scaled.append(([*self.lora.shared.parameters(), *self.head.parameters()], blind))
        for params, scale in scaled:
            ids = {id(p) for p in params}
            groups.append({"params": [p for p in rest if id(p) in ids], "lr": lr * scale})
            rest = [p for p in rest if id(p) not in ids]
        groups.insert(0, {"params": rest, "lr": lr})
        # An empty group breaks DeepSpeed's ZeRO optimizer (it reads each group's first parameter):
        # per_annotator_lora with an sft / causal_lm head has nothing trainable outside its tables.
        groups = [g for g in groups if g["params"]]
        if tables:
            groups.append({"params": tables, "lr": lr * annotator_lr_scale, **({LAZY: True} if lazy_tables else {})})
        return groups

    def n_trainable(self) -> int:
        # ZeRO-3 leaves an empty local tensor behind; ds_numel is the full size.
        return sum(getattr(p, "ds_numel", p.numel()) for p in self.trainable_parameters())

    def annotator_tables(self) -> list[tuple[nn.Module, str]]:
        """(module, attribute) of every parameter indexed by annotator on dim 0."""
        return self.lora.annotator_tables() + self.head.annotator_tables()

    def params_per_annotator(self) -> int:
        """Trainable parameters one more annotator adds (0 for the perspective-blind kinds)."""
        return sum(getattr(m, a)[0].numel() for m, a in self.annotator_tables())


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, H) hidden states, (B, T) attention mask (right-padded) -> (B, H)."""
    if how == "first":
        return hidden[:, 0]
    if how == "last":
        last = mask.sum(1).clamp(min=1) - 1  # (B,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if how == "mean":
        m = mask.to(hidden.dtype)[..., None]
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {how!r}")


def build_model(cfg: RunConfig, condition_sizes: dict[str, int], labels: list[str], backbone=None,
                device: torch.device | str = "cpu") -> PerspectivistModel:
    """Assemble backbone, injected adapters, LoRA module and head as `cfg.adapter.kind` says.

    `condition_sizes`: vocabulary size of each categorical condition field.
    `device`: where the model will run; the kernel backend is resolved for it, once.
    """
    if backbone is None:
        from hyperscale.backbones.load import load_backbone

        backbone = load_backbone(cfg.model, device=device)
    kind, a = get_kind(cfg.adapter.kind), cfg.adapter
    backend = resolve_backend(a.kernel, device)
    state, specs = inject_adapters(backbone.body, a.target_modules, a.scale, backend, a.deterministic, a.layers)
    state.compute_dtype = getattr(torch, backbone.dtype_choice.dtype)  # the body's dtype: A, B cast once per forward
    if cfg.model.gradient_checkpointing:
        # Non-reentrant: recomputation reads A and B from the AdapterState, which the
        # next forward alone replaces, and gradients reach the hypernetwork once.
        backbone.body.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = kind.build_lora(cfg, specs, condition_sizes, backbone, len(labels))
    head = kind.build_head(cfg, backbone, labels, condition_sizes)
    pooling = cfg.model.pooling
    if pooling == "auto":
        pooling = "first" if backbone.is_encoder else "last"
    uses_instance = kind.takes_conditions and "instance" in a.conditions
    runtime = runtime_info(backend, device, backbone.dtype_choice.dtype)
    runtime["compute_dtype_reason"] = backbone.dtype_choice.reason
    from hyperscale.training.engine import table_optimizer

    runtime["table_optimizer"] = dict(zip(("mode", "reason"), table_optimizer(cfg)))  # lazy or dense, and why
    model = PerspectivistModel(backbone, lora, head, state, pooling, uses_instance, runtime)
    model.flops_per_token = training_flops_per_token(backbone, specs, a.rank, uses_instance)
    return model


def training_flops_per_token(backbone, specs, rank: int, uses_instance: bool) -> int:
    """Model FLOPs of one training token (the numerator of MFU), counted explicitly:

        (4 + 2 * instance) * N_frozen  +  6 * N_lora

    N_frozen: the backbone's parameters without its input embedding (a lookup, no
    FLOPs); each costs 2 FLOPs per token forward (multiply + add) and 2 backward for
    the gradient of its input, but none for its own gradient, since it is frozen
    (a fully trained model's 6N would overcount by a third). instance: Hyperdecoders
    conditions run one more forward (no grad) to encode the input. N_lora: the rank-r
    update's parameters per token, sum of r * (d_in + d_out) over adapted modules, at
    6 FLOPs each (forward, input gradient, weight gradient). Left out: attention's
    score and value products (4 * layers * T * hidden per token forward, small while
    T << 6 * hidden), the hypernetwork (per unique condition, not per token), the
    head, and gradient checkpointing's recomputation (MFU counts model FLOPs, not
    the hardware's).
    """
    from hyperscale.adapters.lora import lora_param_count

    embed = backbone.body.get_input_embeddings()
    n_frozen = backbone.n_params - (embed.weight.numel() if embed is not None else 0)
    return (4 + 2 * int(uses_instance)) * n_frozen + 6 * lora_param_count(specs, rank)
