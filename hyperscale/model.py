"""The trained model: frozen (quantized) backbone + adapter source + head.

One forward, top to bottom:
  1. (instance conditions only) encode the input with the frozen body, adapters
     off, and mean-pool it: the Hyperdecoders condition vector;
  2. the adapter source turns the batch's conditions into A, B for every target
     module (for the unique conditions only) and each sequence's index;
  3. publish them on the shared AdapterState and run the body: every wrapped
     layer adds scale * B[idx] (A[idx] x) through the one batched op;
  4. pool, head, loss.
Only the adapter source and the head hold trainable parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyperscale.backbones import Backbone, load_backbone
from hyperscale.config import RunConfig
from hyperscale.heads import ClassHead, VerbalizerHead, pool
from hyperscale.hypernet import HyperNetwork
from hyperscale.inject import AdapterState, ModuleSpec, inject_adapters
from hyperscale.sources import HyperLoRASource, SharedLoRASource

CATEGORICAL = ("annotator", "task", "language")


class PerspectivistModel(nn.Module):
    def __init__(self, backbone: Backbone, source: nn.Module, head: nn.Module, state: AdapterState,
                 specs: list[ModuleSpec], pooling: str, uses_instance: bool, task: str):
        super().__init__()
        self.body, self.source, self.head = backbone.body, source, head
        self.state, self.specs, self.pooling = state, specs, pooling
        self.uses_instance, self.task = uses_instance, task
        self.backbone_params = backbone.n_params

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
        instance = self.encode_instance(batch) if self.uses_instance else None
        weights, seq_index = self.source(batch, instance)
        self.state.publish(weights, seq_index)
        hidden = self.body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           use_cache=False).last_hidden_state  # (B, T, H)
        pooled = pool(hidden, batch["attention_mask"], self.pooling)  # (B, H)
        logits = self.head(pooled, batch).float()  # (B, C)
        out = {"logits": logits}
        if "labels" in batch:
            if isinstance(self.head, VerbalizerHead):
                # LM loss on the one-token completion, over the whole vocabulary.
                target = self.head.token_ids[batch["labels"]]
                out["loss"] = F.cross_entropy(self.head.lm_logits(pooled), target)
            else:
                out["loss"] = F.cross_entropy(logits, batch["labels"])
        return out

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())


def verbalizer_ids(tokenizer, words: list[str]) -> list[int]:
    """First token of ' word' for each label; distinct first tokens are required."""
    ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in words]
    if len(set(ids)) != len(ids):
        from hyperscale.errors import ConfigError

        raise ConfigError("model.verbalizers", f"{words} do not start with distinct tokens ({ids}).",
                          "choose label words whose first tokens differ, e.g. [no, yes].")
    return ids


def build_model(cfg: RunConfig, condition_sizes: dict[str, int], labels: list[str],
                backbone: Backbone | None = None) -> PerspectivistModel:
    """Assemble backbone, injected adapters, adapter source and head from the config.

    `condition_sizes`: vocabulary size of each categorical condition field.
    """
    backbone = backbone or load_backbone(cfg.model)
    a = cfg.adapter
    state, specs = inject_adapters(backbone.body, a.target_modules, a.scale, a.kernel, a.deterministic)
    if cfg.model.gradient_checkpointing:
        # Non-reentrant: recomputation reads A and B from the AdapterState, which the
        # next forward alone replaces, and gradients reach the hypernetwork once.
        backbone.body.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    uses_instance = a.kind == "hyper_lora" and "instance" in a.conditions
    if a.kind == "hyper_lora":
        fields = [c for c in a.conditions if c in CATEGORICAL]
        hypernet = HyperNetwork(a.hypernet, specs, a.rank, {f: condition_sizes[f] for f in fields},
                                instance_in=backbone.hidden_size if uses_instance else None)
        source = HyperLoRASource(hypernet, fields, uses_instance)
    elif a.kind == "shared_lora":
        source = SharedLoRASource(specs, a.rank)
    else:
        raise NotImplementedError(f"adapter.kind={a.kind} is not built yet")

    if cfg.model.task == "causal_lm":
        words = cfg.model.verbalizers or labels
        if len(words) != len(labels):
            from hyperscale.errors import ConfigError

            raise ConfigError("model.verbalizers", f"{len(words)} words for {len(labels)} labels {labels}.")
        head = VerbalizerHead(backbone.lm_head, verbalizer_ids(backbone.tokenizer, words))
    else:
        head = ClassHead(backbone.hidden_size, len(labels))
    pooling = cfg.model.pooling
    if pooling == "auto":
        pooling = "first" if backbone.is_encoder else "last"
    return PerspectivistModel(backbone, source, head, state, specs, pooling, uses_instance, cfg.model.task)
