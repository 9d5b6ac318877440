"""A per-condition logit bias generated from the hypernetwork's condition embedding (hyper_lora's
adapter.hypernet.condition_bias).

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
