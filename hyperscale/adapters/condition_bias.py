"""hyper_lora's classifier conditioning, read off the hypernetwork's condition embedding e(c):
a per-condition logit bias (adapter.hypernet.condition_bias) and a conditioned dense-GELU branch
(adapter.hypernet.condition_head). Neither adds a parameter per annotator.

Why: annotators differ most in their base rate (how often they say "offensive"), and a rank-2 LoRA
on a few attention projections is a poor place to learn a base rate: it has to move the pooled
vector along the classifier's weight for one annotator and not the others. A bias on the class
logits computed from the condition embedding expresses it directly: bias_c = W e(c), (C,) per
condition, with W zero-initialised so the first forward is the unconditioned model. It adds no
per-annotator parameters (it reads the hypernetwork's tables) and cond_width x C shared ones.
"""

from __future__ import annotations

import torch
from torch import nn


class ConditionLogitBias(nn.Module):
    """(U, cond_width) condition embeddings -> (U, C) logit biases; zero at init."""

    def __init__(self, cond_width: int, n_classes: int):
        super().__init__()
        self.proj = nn.Linear(cond_width, n_classes, bias=False)  # the classifier has the global bias
        nn.init.zeros_(self.proj.weight)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.proj(cond)


class ConditionedBranch(nn.Module):
    """(pooled (B, H), e(c) (B, cond_width)) -> (B, C) logits added to the linear head's:
    out(gelu(D pooled + E e(c) + b)).

    AART's head (heads.AnnotatorEmbeddingHead: out(gelu(dense(pooled + e[annotator])))) with its
    per-annotator H-wide table replaced by a map E of the hypernetwork's condition embedding into
    a narrow hidden layer: a condition can switch features of the pooled vector on and off (the
    GELU's slope is ~1 where a unit fires), which a per-condition bias or a low-rank update of a
    few attention projections expresses poorly. E starts at zero, so the first forward is the
    perspective-blind model (D and out start as nn.Linear does, like AART's dense and out).
    """

    def __init__(self, hidden: int, cond_width: int, width: int, n_classes: int):
        super().__init__()
        self.dense = nn.Linear(hidden, width)
        self.cond = nn.Linear(cond_width, width, bias=False)
        nn.init.zeros_(self.cond.weight)
        self.out = nn.Linear(width, n_classes)

    def forward(self, pooled: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.dense(pooled.to(self.dense.weight.dtype)) + self.cond(cond.to(self.dense.weight.dtype))
        return self.out(nn.functional.gelu(h))
