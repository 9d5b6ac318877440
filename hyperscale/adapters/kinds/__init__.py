"""The registry of adapter kinds: one file per kind in this folder, one small protocol.

A kind decides three things and nothing else:
  validate(cfg)   config-only checks, run when the YAML is read (before data or a model loads)
  build_lora      which A and B exist for a batch and which one each row uses (adapters/lora.py)
  build_head      what reads the pooled representation (adapters/heads.py); the head owns the loss
and, optionally, `train_frame` (the rows it trains on: shared_lora may aggregate them).
Its per-annotator tables are whatever its LoRA module and head list in
`annotator_tables()`; the optimizer's annotator_lr_scale and onboarding use exactly those.

Adding a kind = adding one file here that defines `KIND = <an AdapterKind>` whose
`name` is the file's name; `adapter.kind: <name>` then works everywhere (train,
compare, predict, onboard). Discovery is lazy and imports no torch: kind files
import their modules inside `build_*`.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import ClassVar

from hyperscale.errors import ConfigError


class AdapterKind:
    name: ClassVar[str]
    summary: ClassVar[str]
    """One line, shown by `hyperscale config adapter.kind`."""
    order: ClassVar[int] = 100
    """Position in listings (the product first, then the baselines)."""
    takes_conditions: ClassVar[bool] = False
    """Accepts adapter.conditions other than [annotator] (task, language, instance)."""
    own_classifier: ClassVar[bool] = False
    """Trains its own classifier over the pooled vector (so it cannot read a frozen LM head)."""
    can_aggregate: ClassVar[bool] = False
    """May train on per-item majority labels (adapter.aggregate_labels)."""
    unknown_annotator: ClassVar[str] = "the mean of its annotator tables"
    """What an annotator unseen in training gets (adapters/fallback.py); predict says so."""
    no_sft: ClassVar[str | None] = None
    """Why this kind cannot train model.task=sft (None: it can)."""

    def validate(self, cfg) -> None:
        """Config-only checks; every failure a ConfigError naming the key and the fix."""
        a = cfg.adapter
        if not self.takes_conditions and a.conditions != ["annotator"]:
            raise ConfigError("adapter.conditions", f"only hyper_lora takes conditions; {self.name} is per annotator.",
                              "set adapter.kind=hyper_lora or drop adapter.conditions.")
        if a.aggregate_labels and not self.can_aggregate:
            raise ConfigError("adapter.aggregate_labels", f"is true with adapter.kind={self.name}: a majority label "
                              "has no annotator, so per-annotator parameters would never train.",
                              "use adapter.kind=shared_lora with aggregate_labels, or set it false.")
        if self.no_sft and cfg.model.task == "sft":
            raise ConfigError("adapter.kind", f"{self.name} cannot train model.task=sft: {self.no_sft}",
                              "use hyper_lora, shared_lora, per_annotator_lora or annotator_embedding for sft.")
        if self.own_classifier and cfg.model.task == "causal_lm":
            raise ConfigError("adapter.kind", f"{self.name} trains its own classifier over the pooled representation; "
                              f"model.task={cfg.model.task} reads the frozen LM head instead.",
                              "set model.task=classification for this baseline.")

    def build_lora(self, cfg, specs, condition_sizes: dict[str, int], backbone, n_classes: int):
        """-> an nn.Module called as lora(batch, instance) -> ({name: (A, B)}, seq_index).

        Default: one LoRA shared by every row (the kinds whose perspective lives in the head);
        kinds with per-condition adapters override it."""
        from hyperscale.adapters.lora import SharedLoRA

        return SharedLoRA(specs, cfg.adapter.rank)

    def build_head(self, cfg, backbone, labels: list[str], condition_sizes: dict[str, int]):
        """-> a Head. Default: a linear classifier, or the frozen LM head for causal_lm and sft."""
        from hyperscale.adapters.heads import ClassHead, CompletionHead, VerbalizerHead

        if cfg.model.task == "sft":
            return CompletionHead(backbone.lm_head)
        if cfg.model.task == "causal_lm":
            words = cfg.model.verbalizers or labels
            if len(words) != len(labels):
                raise ConfigError("model.verbalizers", f"{len(words)} words for {len(labels)} labels {labels}.",
                                  "give one word per label, in label order.")
            return VerbalizerHead(backbone.lm_head, verbalizer_ids(backbone.tokenizer, words))
        return ClassHead(backbone.hidden_size, len(labels))

    def train_frame(self, frame, labels: list[str], cfg):
        """The rows this kind trains on (default: every annotation as loaded)."""
        return frame


def verbalizer_ids(tokenizer, words: list[str]) -> list[int]:
    """First token of ' word' for each label; distinct first tokens are required."""
    ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in words]
    if len(set(ids)) != len(ids):
        raise ConfigError("model.verbalizers", f"{words} do not start with distinct tokens ({ids}).",
                          "choose label words whose first tokens differ, e.g. [no, yes].")
    return ids


_REGISTRY: dict[str, AdapterKind] | None = None


def registry() -> dict[str, AdapterKind]:
    """{name: kind} of every file in this folder, in listing order."""
    global _REGISTRY
    if _REGISTRY is None:
        found = {}
        for info in pkgutil.iter_modules(__path__):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{__name__}.{info.name}")
            kind = getattr(module, "KIND", None)
            if not isinstance(kind, AdapterKind) or kind.name != info.name:
                raise TypeError(f"{module.__name__} must define KIND, an AdapterKind named {info.name!r}")
            found[kind.name] = kind
        _REGISTRY = dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))
    return _REGISTRY


def kind_names() -> list[str]:
    return list(registry())


def get_kind(name: str) -> AdapterKind:
    kinds = registry()
    if name not in kinds:
        close = difflib.get_close_matches(name, kinds, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError("adapter.kind", f"unknown kind {name!r}.", f"{hint}Registered kinds: {', '.join(kinds)}.")
    return kinds[name]
