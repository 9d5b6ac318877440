"""Heads: pooled representation (B, H) -> class logits (B, C), and the training loss.

- `ClassHead`: a trainable linear layer over the labels (task=classification).
- `VerbalizerHead`: the frozen LM head read at the first token of each label's
  verbalizer (task=causal_lm: prompt -> one-token completion). Its loss is the LM
  loss over the whole vocabulary, as in training any causal LM; the C-way logits
  are what evaluation and prediction read.
- `AnnotatorEmbeddingHead` (adapter.kind=annotator_embedding, AART / Deng et al.
  style): a learned annotator embedding added to the pooled representation, then
  a dense + GELU + linear classifier.
- `MultiHead` (adapter.kind=multi_head, Davani et al. style): one linear head per
  annotator, stored as one (n_annotators, H, C) tensor and gathered per row.
- `CompletionHead` (task=sft): the frozen LM head over every completion position;
  `AnnotatorEmbeddingCompletionHead` (annotator_embedding with sft) adds a learned
  annotator embedding to each position's hidden state before it. Their `completion`
  (hidden (B, T, H) -> loss over completion tokens) replaces pool + forward + loss.
Unknown annotators (index -1) get the mean embedding / the mean head
(adapters/fallback.py); `annotator_tables()` lists what onboarding may grow.
Every head owns its loss, so training and onboarding compute the same one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyperscale.adapters.fallback import gather_rows


class Head(nn.Module):
    """(pooled (B, H), batch) -> logits (B, C); `loss` is cross-entropy over the C classes."""

    def annotator_tables(self) -> list[tuple[nn.Module, str]]:
        return []

    def loss(self, pooled: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)


class ClassHead(Head):
    def __init__(self, hidden: int, n_classes: int):
        super().__init__()
        self.proj = nn.Linear(hidden, n_classes)

    def forward(self, pooled: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.proj(pooled.to(self.proj.weight.dtype))


class AnnotatorEmbeddingHead(Head):
    """logits = out(gelu(dense(pooled + e[annotator]))).

    Why a hidden layer: with a bare linear head the embedding would only add a
    per-annotator bias to the logits, which cannot express "this annotator cares
    about another word"; AART adds its embedding to RoBERTa's [CLS] vector, whose
    head is dense -> tanh -> out_proj. Why GELU, not tanh: tanh' is even, so at the
    perspective-blind start an annotator's residuals are uncorrelated with the slope
    each unit has on an item and the embedding gets almost no first-order gradient;
    a (G)ELU unit's slope is ~1 exactly where its feature fires, so e[annotator]
    learns to switch feature detectors on and off per annotator.
    Measured on configs/synthetic.yaml (warm-up 10), lr 3e-3, annotator_lr_scale 10,
    mean per-annotator macro-F1: GELU 0.839 and ReLU 0.821 at 600 steps (shared_lora
    0.639), tanh only 0.70 even at 1500 steps; GELU 0.675 at 300 steps.
    The table starts at zero, so the first forward is the perspective-blind model.
    """

    def __init__(self, hidden: int, n_classes: int, n_annotators: int):
        super().__init__()
        self.annotator = nn.Embedding(n_annotators, hidden)
        nn.init.zeros_(self.annotator.weight)
        self.dense = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, n_classes)

    def annotator_tables(self) -> list[tuple[nn.Module, str]]:
        return [(self.annotator, "weight")]

    def forward(self, pooled: torch.Tensor, batch: dict) -> torch.Tensor:
        emb = gather_rows(self.annotator.weight, batch["cond_annotator"])  # (B, H)
        h = pooled.to(emb.dtype) + emb
        return self.out(nn.functional.gelu(self.dense(h)))  # (B, C)


class MultiHead(Head):
    """One linear head per annotator over the shared pooled representation.

    weight (n, H, C), bias (n, C). Every annotator's head starts as the same
    nn.Linear initialisation, so the first forward is one shared head.
    """

    def __init__(self, hidden: int, n_classes: int, n_annotators: int):
        super().__init__()
        init = nn.Linear(hidden, n_classes)
        self.weight = nn.Parameter(init.weight.detach().t().clone()[None].repeat(n_annotators, 1, 1))  # (n, H, C)
        self.bias = nn.Parameter(init.bias.detach().clone()[None].repeat(n_annotators, 1))  # (n, C)

    def annotator_tables(self) -> list[tuple[nn.Module, str]]:
        return [(self, "weight"), (self, "bias")]

    def forward(self, pooled: torch.Tensor, batch: dict) -> torch.Tensor:
        ids = batch["cond_annotator"]
        W = gather_rows(self.weight, ids)  # (B, H, C)
        b = gather_rows(self.bias, ids)  # (B, C)
        return torch.einsum("bh,bhc->bc", pooled.to(W.dtype), W) + b


class VerbalizerHead(Head):
    def __init__(self, lm_head: nn.Module, token_ids: list[int]):
        super().__init__()
        self.lm_head = lm_head  # frozen
        self.register_buffer("token_ids", torch.tensor(token_ids, dtype=torch.long), persistent=False)

    def loss(self, pooled: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """LM loss of the one-token completion over the whole vocabulary."""
        return F.cross_entropy(self.lm_logits(pooled), self.token_ids[labels])

    def lm_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.lm_head(pooled).float()  # (B, vocab)

    def forward(self, pooled: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.lm_logits(pooled)[:, self.token_ids]  # (B, C)


class CompletionHead(Head):
    """task=sft: the frozen LM head read at every position whose next token is a completion token.

    `completion` returns the mean next-token NLL over those tokens (the loss), and each token's
    NLL with its row, for per-annotator completion loss. `token_logits` is what generation reads.
    """

    generative = True

    def __init__(self, lm_head: nn.Module):
        super().__init__()
        self.lm_head = lm_head  # frozen

    def token_logits(self, hidden: torch.Tensor, batch: dict, rows: torch.Tensor) -> torch.Tensor:
        """(N, H) hidden states of tokens from rows `rows` (N,) -> (N, vocab) float logits."""
        return self.lm_head(hidden).float()

    def completion(self, hidden: torch.Tensor, batch: dict, token_rows: torch.Tensor) -> dict:
        """(B, T, H) hidden states, batch["lm_targets"] (B, T) (-100: not read), (B, T) row of each token."""
        targets = batch["lm_targets"]
        sel = targets != -100  # (B, T)
        rows = token_rows[sel]  # (N,)
        logits = self.token_logits(hidden[sel], batch, rows)  # (N, vocab)
        nll = F.cross_entropy(logits, targets[sel], reduction="none")  # (N,)
        return {"loss": nll.mean(), "token_nll": nll.detach(), "token_row": rows}


class AnnotatorEmbeddingCompletionHead(CompletionHead):
    """annotator_embedding with task=sft: e[annotator] (zero-initialised, so the first forward is the
    shared model) added to each position's final hidden state before the frozen LM head: AART's
    "annotator embedding added to the representation the output layer reads", for generation."""

    def __init__(self, lm_head: nn.Module, hidden: int, n_annotators: int):
        super().__init__(lm_head)
        self.annotator = nn.Embedding(n_annotators, hidden)
        nn.init.zeros_(self.annotator.weight)

    def annotator_tables(self) -> list[tuple[nn.Module, str]]:
        return [(self.annotator, "weight")]

    def token_logits(self, hidden: torch.Tensor, batch: dict, rows: torch.Tensor) -> torch.Tensor:
        emb = gather_rows(self.annotator.weight, batch["cond_annotator"][rows])  # (N, H)
        return self.lm_head((hidden.to(emb.dtype) + emb).to(hidden.dtype)).float()
