"""Heads: pooled representation (B, H) -> class logits (B, C).

- `ClassHead`: a trainable linear layer over the labels (task=classification).
- `VerbalizerHead`: the frozen LM head read at the first token of each label's
  verbalizer (task=causal_lm: prompt -> one-token completion). Its `lm_logits`
  gives the full-vocabulary logits the LM loss is computed on.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassHead(nn.Module):
    def __init__(self, hidden: int, n_classes: int):
        super().__init__()
        self.proj = nn.Linear(hidden, n_classes)

    def forward(self, pooled: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.proj(pooled.to(self.proj.weight.dtype))


class VerbalizerHead(nn.Module):
    def __init__(self, lm_head: nn.Module, token_ids: list[int]):
        super().__init__()
        self.lm_head = lm_head  # frozen
        self.register_buffer("token_ids", torch.tensor(token_ids, dtype=torch.long), persistent=False)

    def lm_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.lm_head(pooled).float()  # (B, vocab)

    def forward(self, pooled: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.lm_logits(pooled)[:, self.token_ids]  # (B, C)


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
