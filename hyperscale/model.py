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
from hyperscale.errors import ConfigError
from hyperscale.heads import AnnotatorEmbeddingHead, ClassHead, MultiHead, VerbalizerHead, pool
from hyperscale.hypernet import HyperNetwork
from hyperscale.inject import AdapterState, ModuleSpec, inject_adapters
from hyperscale.sources import HyperLoRASource, PerAnnotatorLoRASource, SharedLoRASource, lora_param_count

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

    def param_groups(self, lr: float, annotator_lr_scale: float) -> list[dict]:
        """Optimizer groups: the per-annotator tables at lr * annotator_lr_scale, the rest at lr.

        Each annotator's row gets a gradient only from that annotator's rows (1/n of a
        batch), so it moves about n times slower than the shared weights at the same lr.
        """
        table_ids = {id(getattr(m, a)) for m, a in self.annotator_tables()}
        trainable = self.trainable_parameters()
        tables = [p for p in trainable if id(p) in table_ids]
        rest = [p for p in trainable if id(p) not in table_ids]
        groups = [{"params": rest, "lr": lr}]
        if tables:
            groups.append({"params": tables, "lr": lr * annotator_lr_scale})
        return groups

    def n_trainable(self) -> int:
        # ZeRO-3 leaves an empty local tensor behind; ds_numel is the full size.
        return sum(getattr(p, "ds_numel", p.numel()) for p in self.trainable_parameters())

    def annotator_tables(self) -> list[tuple[nn.Module, str]]:
        """(module, attribute) of every parameter indexed by annotator on dim 0."""
        return self.source.annotator_tables() + self.head.annotator_tables()

    def params_per_annotator(self) -> int:
        """Trainable parameters one more annotator adds (0 for the perspective-blind kinds)."""
        return sum(getattr(m, a)[0].numel() for m, a in self.annotator_tables())


def verbalizer_ids(tokenizer, words: list[str]) -> list[int]:
    """First token of ' word' for each label; distinct first tokens are required."""
    ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in words]
    if len(set(ids)) != len(ids):
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
    state, specs = inject_adapters(backbone.body, a.target_modules, a.scale, a.kernel, a.deterministic, a.layers)
    if cfg.model.gradient_checkpointing:
        # Non-reentrant: recomputation reads A and B from the AdapterState, which the
        # next forward alone replaces, and gradients reach the hypernetwork once.
        backbone.body.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    uses_instance = a.kind == "hyper_lora" and "instance" in a.conditions
    if a.kind in ANNOTATOR_HEAD_KINDS and cfg.model.task != "classification":
        raise ConfigError("adapter.kind", f"{a.kind} trains its own classifier over the pooled representation; "
                          f"model.task={cfg.model.task} reads the frozen LM head instead.",
                          "set model.task=classification for this baseline.")
    source = SOURCE_BUILDERS[a.kind](cfg, specs, condition_sizes, backbone, len(labels))
    head = HEAD_BUILDERS[a.kind](cfg, backbone, labels, condition_sizes)
    pooling = cfg.model.pooling
    if pooling == "auto":
        pooling = "first" if backbone.is_encoder else "last"
    return PerspectivistModel(backbone, source, head, state, specs, pooling, uses_instance, cfg.model.task)


# -- dispatch: adapter.kind -> adapter source and head --------------------------------

def _hyper_source(cfg, specs, sizes, backbone, n_classes):
    a = cfg.adapter
    uses_instance = "instance" in a.conditions
    fields = [c for c in a.conditions if c in CATEGORICAL]
    hypernet = HyperNetwork(a.hypernet, specs, a.rank, {f: sizes[f] for f in fields},
                            instance_in=backbone.hidden_size if uses_instance else None)
    return HyperLoRASource(hypernet, fields, uses_instance)


def _shared_source(cfg, specs, sizes, backbone, n_classes):
    return SharedLoRASource(specs, cfg.adapter.rank)


def _per_annotator_source(cfg, specs, sizes, backbone, n_classes):
    a, n = cfg.adapter, sizes["annotator"]
    # Checked before any table is allocated: 100,000 annotators x r=8 on SmolLM2's
    # q/v would be ~11 G parameters, which must fail in a second, not in an OOM.
    need = n * lora_param_count(specs, a.rank) + (backbone.hidden_size + 1) * n_classes
    if need > a.max_trainable_params:
        raise ConfigError(
            "adapter.max_trainable_params",
            f"per_annotator_lora needs {need:,} trainable parameters ({n:,} annotators x "
            f"{lora_param_count(specs, a.rank):,} per LoRA at rank {a.rank}), over the bound {a.max_trainable_params:,}.",
            f"raise adapter.max_trainable_params to at least {need:,}, lower adapter.rank or "
            f"adapter.target_modules, or use adapter.kind=hyper_lora, whose size does not grow with annotators.")
    return PerAnnotatorLoRASource(specs, a.rank, n)


def _plain_head(cfg, backbone, labels, sizes):
    if cfg.model.task == "causal_lm":
        words = cfg.model.verbalizers or labels
        if len(words) != len(labels):
            raise ConfigError("model.verbalizers", f"{len(words)} words for {len(labels)} labels {labels}.")
        return VerbalizerHead(backbone.lm_head, verbalizer_ids(backbone.tokenizer, words))
    return ClassHead(backbone.hidden_size, len(labels))


def _embedding_head(cfg, backbone, labels, sizes):
    return AnnotatorEmbeddingHead(backbone.hidden_size, len(labels), sizes["annotator"])


def _multi_head(cfg, backbone, labels, sizes):
    return MultiHead(backbone.hidden_size, len(labels), sizes["annotator"])


SOURCE_BUILDERS = {"hyper_lora": _hyper_source, "shared_lora": _shared_source,
                   "annotator_embedding": _shared_source, "multi_head": _shared_source,
                   "per_annotator_lora": _per_annotator_source}
HEAD_BUILDERS = {"hyper_lora": _plain_head, "shared_lora": _plain_head, "per_annotator_lora": _plain_head,
                 "annotator_embedding": _embedding_head, "multi_head": _multi_head}
ANNOTATOR_HEAD_KINDS = ("annotator_embedding", "multi_head")
