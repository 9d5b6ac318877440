"""hyper_lora: the product. A hypernetwork generates each condition's LoRA (Ignatev et al. 2025;
Hyper-X's task x language conditions; Hyperdecoders' per-instance conditions)."""

from __future__ import annotations

from hyperscale.adapters.kinds import AdapterKind
from hyperscale.errors import ConfigError

CATEGORICAL = ("annotator", "task", "language")


class HyperLoRAKind(AdapterKind):
    name = "hyper_lora"
    summary = "hypernetwork (condition embeddings ⊕ module embedding -> MLP -> A, B) per condition"
    order = 0
    takes_conditions = True
    unknown_annotator = "the mean embedding"

    def validate(self, cfg) -> None:
        super().validate(cfg)
        h = cfg.adapter.hypernet
        for key, on, off in (("condition_bias", h.condition_bias, "condition_bias=false"),
                             ("condition_head", h.condition_head is not None, "leave condition_head unset")):
            if not on:
                continue
            if cfg.model.task != "classification":
                raise ConfigError(f"adapter.hypernet.{key}", f"conditions a trained classifier's logits; "
                                  f"model.task={cfg.model.task} reads the frozen LM head.",
                                  f"set model.task=classification or {off}.")
            if not any(c in CATEGORICAL for c in cfg.adapter.conditions):
                raise ConfigError(f"adapter.hypernet.{key}", "reads categorical condition embeddings; "
                                  f"adapter.conditions={cfg.adapter.conditions} has none.",
                                  f"add one of {list(CATEGORICAL)} to adapter.conditions or {off}.")

    def build_lora(self, cfg, specs, condition_sizes, backbone, n_classes):
        from hyperscale.adapters.condition_bias import (
            ConditionedBranch,
            ConditionLogitBias,
        )
        from hyperscale.adapters.hypernet import HyperNetwork
        from hyperscale.adapters.lora import HyperLoRA, SharedLoRA

        a, h = cfg.adapter, cfg.adapter.hypernet
        uses_instance = "instance" in a.conditions
        fields = [c for c in a.conditions if c in CATEGORICAL]
        hypernet = HyperNetwork(h, specs, a.rank, {f: condition_sizes[f] for f in fields},
                                instance_in=backbone.hidden_size if uses_instance else None)
        shared = SharedLoRA(specs, a.rank) if h.shared_base else None
        width = len(fields) * h.condition_dim
        bias = ConditionLogitBias(width, n_classes) if h.condition_bias else None
        branch = (ConditionedBranch(backbone.hidden_size, width, h.condition_head, n_classes)
                  if h.condition_head is not None else None)
        return HyperLoRA(hypernet, fields, uses_instance, shared, h.condition_dropout, bias, h.head_lr_scale, branch,
                         warmup_steps=int(h.shared_warmup * cfg.train.max_steps), shared_lr_scale=h.shared_lr_scale)


KIND = HyperLoRAKind()
